"""How far each measure can be trusted in a study: its negative controls, its reliability across
seeds and its power. Frames in, frames out.

- Controls (Binder et al. 2023; Song et al. 2023): maps that are not explanations (a random map, a
  Sobel edge map, the input, a blurred input, a constant map; reglens.measures.CONTROLS) are scored
  by every per-method measure like a method. A measure that rates a control at least as well as the
  median real method fails that control in the panel.
- Reliability: the one-way intra-class correlation ICC(1) of the measure's cell values with the
  regularizers as classes and the seeds as replicates (Shrout & Fleiss 1979), with its F-based
  interval and the F test's p: a measure whose between-regularizer variance does not exceed its
  between-seed variance cannot tell regularizers apart in this study.
- Power: the paired seeds the largest observed difference from the baseline would need at 80 %
  power (reglens.stats.seeds_needed, as on the scorecard)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from reglens import measures
from reglens.measures import CONTROLS
from reglens.stats import MIN_PAIRS

PANEL = ["study", "arch"]
MIN_SEEDS_PER_CLASS = 2


def method_values(tidy: pd.DataFrame, card: list) -> pd.DataFrame:
    """One row per cell, per-method scorecard measure and attribution method (controls included):
    study, arch, reg, seed, measure, method, control (bool), value."""
    present = sorted(set(tidy.metric))
    frames = []
    for m in card:
        if not m.per_method:
            continue
        names = {metric: m.method_of(metric) for metric in present if m.method_of(metric)}
        if not names:
            continue
        d = tidy[tidy.metric.isin(names)]
        frames.append(d.assign(measure=m.name, method=d.metric.map(names))
                      [["study", "arch", "reg", "seed", "measure", "method", "value"]])
    cols = ["study", "arch", "reg", "seed", "measure", "method", "control", "value"]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)
    return out.assign(control=out.method.isin(CONTROLS))[cols]


CONTROL_COLUMNS = PANEL + ["measure", "methods", "methods_median", "control", "control_mean", "cells", "fails"]


def control_check(values: pd.DataFrame, card: list) -> pd.DataFrame:
    """Per panel, per-method measure and control: the control's mean over the panel's cells against
    the median over real methods of their means, both oriented by the measure's direction; `fails`
    when the control scores at least as well (NaN means: an undefined control, not failed, counted in
    `cells` as 0)."""
    rows = []
    for (study, arch, name), group in values.groupby(PANEL + ["measure"]):
        better = measures.by_name(name, card).better
        means = group.groupby("method").value.mean()
        cells = group.dropna(subset=["value"]).groupby("method").size()
        real = means[~means.index.isin(CONTROLS)].dropna()
        median = float(real.median()) if len(real) else float("nan")
        for control in [c for c in CONTROLS if c in means.index]:
            value = float(means[control])
            fails = bool(len(real) and np.isfinite(value) and better * value >= better * median)
            rows.append({"study": study, "arch": arch, "measure": name, "methods": len(real), "methods_median": median,
                         "control": control, "control_mean": value, "cells": int(cells.get(control, 0)),
                         "fails": fails})
    return pd.DataFrame(rows, columns=CONTROL_COLUMNS)


def icc_oneway(groups, confidence: float = 0.95) -> dict:
    """ICC(1) of one-way random-effects ANOVA over `groups` (arrays of replicates), with k0 the
    (unbalanced) mean group size: (MSB - MSW) / (MSB + (k0 - 1) MSW) = (F - 1) / (F + k0 - 1); its
    F-based interval (Shrout & Fleiss 1979) and the F test's p. `status`: 'ok', 'too few seeds'
    (fewer than 2 classes with 2 finite values each) or 'constant' (no variance at all)."""
    groups = [np.asarray(g, dtype=float) for g in groups]
    groups = [g[np.isfinite(g)] for g in groups]
    groups = [g for g in groups if len(g) >= MIN_SEEDS_PER_CLASS]
    out = {"icc": float("nan"), "icc_low": float("nan"), "icc_high": float("nan"), "icc_p": float("nan"),
           "classes": len(groups), "replicates": float("nan"), "status": "ok"}
    if len(groups) < 2:
        out["status"] = "too few seeds"
        return out
    a = len(groups)
    sizes = np.array([len(g) for g in groups], dtype=float)
    total = sizes.sum()
    k0 = (total - (sizes ** 2).sum() / total) / (a - 1)
    grand = np.concatenate(groups).mean()
    msb = float((sizes * (np.array([g.mean() for g in groups]) - grand) ** 2).sum() / (a - 1))
    msw = float(sum(((g - g.mean()) ** 2).sum() for g in groups) / (total - a))
    out["replicates"] = float(k0)
    scale = max(1.0, abs(grand))
    if msw <= 1e-24 * scale ** 2:
        if msb <= 1e-24 * scale ** 2:
            out["status"] = "constant"
            return out
        out.update(icc=1.0, icc_low=1.0, icc_high=1.0, icc_p=0.0)
        return out
    f = msb / msw
    df1, df2 = a - 1, total - a
    lo_f = f / stats.f.ppf(0.5 + confidence / 2, df1, df2)
    hi_f = f * stats.f.ppf(0.5 + confidence / 2, df2, df1)
    out.update(icc=(f - 1) / (f + k0 - 1), icc_low=(lo_f - 1) / (lo_f + k0 - 1), icc_high=(hi_f - 1) / (hi_f + k0 - 1),
               icc_p=float(stats.f.sf(f, df1, df2)))
    return out


RELIABILITY_COLUMNS = PANEL + ["measure", "icc", "icc_low", "icc_high", "icc_p", "classes", "replicates", "status"]


def reliability(seed_values: pd.DataFrame) -> pd.DataFrame:
    """ICC(1) per panel and measure from reglens.measures.seed_values (one value per cell)."""
    rows = []
    for (study, arch, name), group in seed_values.groupby(PANEL + ["measure"]):
        result = icc_oneway([g.value.to_numpy() for _, g in group.groupby("reg")])
        rows.append({"study": study, "arch": arch, "measure": name, **result})
    return pd.DataFrame(rows, columns=RELIABILITY_COLUMNS)


def power(card_table: pd.DataFrame) -> pd.DataFrame:
    """Per panel and measure from the scorecard: the seeds it ran (most pairs), whether any difference
    is significant, and the fewest paired seeds the observed differences would need at 80 % power."""
    tested = card_table[card_table.group != "cost"]
    rows = []
    for (study, arch, name), group in tested.groupby(PANEL + ["measure"]):
        needed = group.seeds_needed.dropna()
        rows.append({"study": study, "arch": arch, "measure": name, "pairs": int(group.n_pairs.max()),
                     "significant": bool(group.significant.any()),
                     "seeds_needed": float(needed.min()) if len(needed) else float("nan")})
    return pd.DataFrame(rows, columns=PANEL + ["measure", "pairs", "significant", "seeds_needed"])


META_COLUMNS = PANEL + ["measure", "label", "group", "trusted", "reason", "failed_controls", "controls", "icc",
                        "icc_low", "icc_high", "icc_p", "icc_status", "pairs", "significant", "seeds_needed"]


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.3g}"


def metaeval(tidy: pd.DataFrame, card: list, card_table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per panel and tested scorecard measure: the controls it fails, its ICC, its power, and
    `trusted` with the `reason` when not: fails a control, seed noise not exceeded (ICC's F test at
    `alpha`), reliability unknown (fewer than 2 seeds per regularizer), or no significant difference
    with the seeds it ran (the seeds it would need). Leave untrained cells out first."""
    checks = control_check(method_values(tidy, card), card)
    rel = reliability(measures.seed_values(tidy, card)).set_index(PANEL + ["measure"])
    pw = power(card_table).set_index(PANEL + ["measure"])
    labels = card_table.drop_duplicates(PANEL + ["measure"]).set_index(PANEL + ["measure"])
    rows = []
    for key in labels.index:
        if labels.loc[key, "group"] == "cost":
            continue
        mine = checks[(checks.study == key[0]) & (checks.arch == key[1]) & (checks.measure == key[2])]
        failed = sorted(mine[mine.fails].control)
        controls = "; ".join(f"{r.control} {_fmt(r.control_mean)}" for r in mine.itertuples())
        if len(mine):
            controls += f" (methods' median {_fmt(mine.methods_median.iloc[0])})"
        r = rel.loc[key] if key in rel.index else None
        p = pw.loc[key]
        reasons = []
        if failed:
            reasons.append("rates " + ", ".join(failed) + " as well as the methods")
        if r is None or r.status != "ok":
            reasons.append("reliability unknown: fewer than 2 seeds per regularizer" if r is None or r.status == "too few seeds"
                           else "constant over every cell")
        elif not r.icc_p < alpha:
            reasons.append(f"seed noise not exceeded (ICC {_fmt(r.icc)}, p {_fmt(r.icc_p)})")
        if not p.significant and p.pairs >= MIN_PAIRS:
            need = p.seeds_needed
            extra = (" (over 1000 needed)" if math.isinf(need) else
                     f" (the largest difference would need {int(need)})" if np.isfinite(need) else "")
            reasons.append(f"lacks power: no difference shown with {p.pairs} seeds{extra}")
        rows.append({"study": key[0], "arch": key[1], "measure": key[2], "label": labels.loc[key, "label"],
                     "group": labels.loc[key, "group"], "trusted": not reasons, "reason": "; ".join(reasons),
                     "failed_controls": ", ".join(failed), "controls": controls,
                     "icc": r.icc if r is not None else float("nan"),
                     "icc_low": r.icc_low if r is not None else float("nan"),
                     "icc_high": r.icc_high if r is not None else float("nan"),
                     "icc_p": r.icc_p if r is not None else float("nan"),
                     "icc_status": r.status if r is not None else "too few seeds",
                     "pairs": int(p.pairs), "significant": bool(p.significant), "seeds_needed": p.seeds_needed})
    return pd.DataFrame(rows, columns=META_COLUMNS)


def mark_trust(card_table: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """The scorecard with `trusted` and `trust_reason` per row from the meta-evaluation (cost rows,
    never tested, are neither trusted nor distrusted: True, no reason)."""
    keys = PANEL + ["measure"]
    marks = meta[keys + ["trusted", "reason"]].rename(columns={"reason": "trust_reason"})
    out = card_table.drop(columns=["trusted", "trust_reason"], errors="ignore").merge(marks, on=keys, how="left")
    out["trusted"] = out.trusted.fillna(True).astype(bool)
    out["trust_reason"] = out.trust_reason.fillna("")
    return out


def pilot_seeds(meta: pd.DataFrame) -> pd.DataFrame:
    """From a finished pilot's meta-evaluation: per panel and measure the seeds it ran, its ICC, the
    paired seeds its largest observed difference would need at 80 % power, and what that rests on."""
    def verdict(r) -> str:
        if r.icc_status == "too few seeds":
            return "unknown: run at least 2 seeds per regularizer"
        if r.icc_status == "constant":
            return "unknown: the measure is constant"
        if not np.isfinite(r.seeds_needed):
            return "unknown: no difference with a spread to size"
        if math.isinf(r.seeds_needed):
            return "over 1000 seeds"
        return f"{int(r.seeds_needed)} seeds" + (" (already significant)" if r.significant else "")

    out = meta[PANEL + ["measure", "pairs", "icc", "seeds_needed"]].copy()
    out["needs"] = [verdict(r) for r in meta.itertuples()]
    failed = meta.failed_controls.astype(object).fillna("").astype(str)
    out["controls"] = np.where(failed != "", "fails " + failed, "")
    return out


def controls_table(controls: pd.DataFrame) -> pd.DataFrame:
    """Per panel and per-method measure: the methods' median and each control's mean, a failed control
    marked with '!' (it scores at least as well as the median method)."""
    if controls.empty:
        return controls
    cell = controls.assign(v=[f"{m:.3g}{' !' if bool(f) else ''}" if np.isfinite(m) else "undefined"
                              for m, f in zip(controls.control_mean, controls.fails)])
    wide = cell.pivot_table(index=["study", "arch", "measure", "methods_median"], columns="control", values="v",
                            aggfunc="first").reset_index()
    wide.columns.name = None
    return wide
