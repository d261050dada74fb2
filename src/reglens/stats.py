"""Statistics across seeds: means with confidence intervals, paired comparisons against a baseline,
Holm's correction, rankings. Frames in, frames out."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from scipy import stats

from reglens import measures


GROUP = ["study", "dataset", "arch", "reg"]
EXPLAINABILITY_STAGES = ("explain", "roar", "dissect")


MIN_SEEDS_FOR_INTERVAL = 3
BOOTSTRAP_RESAMPLES = 4000


def bootstrap_interval(values, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded, so the same values give the same interval);
    NaN with fewer than MIN_SEEDS_FOR_INTERVAL finite values. It never leaves [min, max] of the
    values, so it respects any bounded measure's range."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < MIN_SEEDS_FOR_INTERVAL:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def summarize(tidy: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per study x arch x regularizer x metric: mean over seeds, standard deviation, n, the seeds'
    min and max, and the percentile-bootstrap interval of the mean (NaN with fewer than 3 seeds: then
    the seeds themselves are the honest summary)."""
    keys = GROUP + ["stage", "metric"]
    rows = []
    for key, values in tidy.groupby(keys).value:
        v = values.to_numpy(dtype=float)
        finite = v[np.isfinite(v)]
        lo, hi = bootstrap_interval(finite, confidence)
        rows.append((*key, finite.mean() if len(finite) else np.nan, finite.std(ddof=1) if len(finite) > 1 else np.nan,
                     len(finite), finite.min() if len(finite) else np.nan, finite.max() if len(finite) else np.nan, lo, hi))
    return pd.DataFrame(rows, columns=keys + ["mean", "std", "n", "min", "max", "ci_low", "ci_high"])


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(indexed)
    adjusted = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def compare_to_baseline(tidy: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """Each regularizer against `baseline` on the same study, architecture, metric and seeds: the mean
    paired difference, a paired t-test across seeds, and Holm's correction within each
    (study, metric) family."""
    rows = []
    keys = ["study", "dataset", "arch", "stage", "metric"]
    for key, group in tidy.groupby(keys):
        base = group[group.reg == baseline].set_index("seed").value
        if base.empty:
            continue
        for reg, other in group[group.reg != baseline].groupby("reg"):
            paired = pd.concat([other.set_index("seed").value, base], axis=1, keys=["reg", "base"]).dropna()
            diff = paired["reg"] - paired["base"]
            p = float("nan")
            if len(diff) > 1 and diff.std() > 0:  # else the t statistic is undefined: p stays NaN
                p = float(stats.ttest_rel(paired["reg"], paired["base"]).pvalue)
            rows.append({**dict(zip(keys, key)), "reg": reg, "baseline": baseline, "n_pairs": len(diff),
                         "mean_diff": float(diff.mean()) if len(diff) else float("nan"), "p_value": p})
    out = pd.DataFrame(rows, columns=keys + ["reg", "baseline", "n_pairs", "mean_diff", "p_value"])
    out["p_holm"] = float("nan")
    for _, idx in out.groupby(["study", "metric"]).groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_value"].tolist())
    return out


def ranking(summary: pd.DataFrame, accuracy_metric: str = "test_acc") -> pd.DataFrame:
    """Per study x arch x explainability metric: regularizers ranked by their mean (1 = highest),
    with the test accuracy each costs (-) or gains (+) against `none`."""
    acc = summary[summary.metric == accuracy_metric].set_index(["study", "arch", "reg"])["mean"]
    rows = []
    explain = summary[summary.stage.isin(EXPLAINABILITY_STAGES)]
    for (study, arch, metric), group in explain.groupby(["study", "arch", "metric"]):
        group = group.sort_values("mean", ascending=False)
        base_acc = acc.get((study, arch, "none"), float("nan"))
        for rank, row in enumerate(group.itertuples(), start=1):
            rows.append({"study": study, "arch": arch, "metric": metric, "rank": rank, "reg": row.reg,
                         "mean": row.mean, "accuracy": acc.get((study, arch, row.reg), float("nan")),
                         "accuracy_vs_none": acc.get((study, arch, row.reg), float("nan")) - base_acc})
    return pd.DataFrame(rows)


def scorecard(tidy: pd.DataFrame, card: list, baseline: str = "none", alpha: float = 0.05,
              baselines: dict | None = None) -> pd.DataFrame:
    """Per study x arch x regularizer x scorecard measure: the mean paired difference from the study's
    baseline (`baselines[study]`, else `baseline`) over shared seeds, that difference in units of the
    measure's standard deviation over all cells of the panel (`effect`), oriented so that positive is
    better (`gain`), a paired t-test and Holm's correction within each panel (study x arch, all
    regularizers and measures). `card`: the scorecard's measures (reglens.analyses.scorecard()). A
    panel without its baseline has no rows."""
    values = measures.seed_values(tidy, card)
    rows = []
    for (study, arch, name), group in values.groupby(["study", "arch", "measure"]):
        m = measures.by_name(name, card)
        base_name = (baselines or {}).get(study, baseline)
        if base_name not in set(group.reg):
            continue
        base = group[group.reg == base_name].set_index("seed").value
        spread = group.value.std(ddof=1)
        for reg, other in group[group.reg != base_name].groupby("reg"):
            paired = pd.concat([other.set_index("seed").value, base], axis=1, keys=["reg", "base"]).dropna()
            diff = paired["reg"] - paired["base"]
            p = float(stats.ttest_rel(paired["reg"], paired["base"]).pvalue) if len(diff) > 1 and diff.std() > 0 \
                else float("nan")
            mean = float(diff.mean()) if len(diff) else float("nan")
            effect = mean / spread if spread > 0 else float("nan")
            rows.append({"study": study, "arch": arch, "baseline": base_name, "reg": reg, "measure": name,
                         "label": m.label, "group": m.group,
                         "better": m.better, "n_pairs": len(diff), "mean_diff": mean, "effect": effect,
                         "gain": effect * m.better, "p_value": p})
    cols = ["study", "arch", "baseline", "reg", "measure", "label", "group", "better", "n_pairs", "mean_diff", "effect",
            "gain", "p_value", "p_holm", "significant"]
    out = pd.DataFrame(rows, columns=cols[:-2])
    out["p_holm"] = float("nan")
    for _, idx in out.groupby(["study", "arch"]).groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_value"].tolist())
    out["significant"] = out.p_holm < alpha
    order = {m.name: i for i, m in enumerate(card)}
    return out.sort_values(["study", "arch", "measure"], key=lambda c: c.map(order) if c.name == "measure" else c,
                           kind="stable").reset_index(drop=True)[cols]


def spearman_interval(rho: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval of a Spearman correlation with Bonett & Wright's (2000) standard error
    sqrt((1 + rho^2 / 2) / (n - 3)); NaN for n < 4, an undefined rho, or |rho| = 1 (Fisher's z is
    infinite there: the interval would collapse to the point, which a few cells cannot support)."""
    if n < 4 or not np.isfinite(rho) or abs(rho) >= 1 - 1e-12:
        return float("nan"), float("nan")
    z = math.atanh(rho)
    half = stats.norm.ppf(0.5 + confidence / 2) * math.sqrt((1 + rho ** 2 / 2) / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def agreement_wide(tidy: pd.DataFrame, card: list) -> pd.DataFrame:
    """One row per cell (study, arch, reg, seed), one column per measure compared in `agreement`."""
    keys = ["study", "arch", "reg", "seed"]
    raw = tidy[[any(re.fullmatch(p, m) for p in measures.AGREEMENT_METRICS) and not measures.is_random_method(m)
                for m in tidy.metric]]
    derived = measures.seed_values(tidy, [measures.by_name(n, card) for n in measures.AGREEMENT_MEASURES])
    derived = derived.rename(columns={"measure": "metric"}).replace({"metric": {"gini": "gini_mean"}})
    both = pd.concat([raw[keys + ["metric", "value"]], derived[keys + ["metric", "value"]]], ignore_index=True)
    if both.empty:
        return pd.DataFrame(columns=keys)
    return both.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean").reset_index()


def agreement(tidy: pd.DataFrame, card: list) -> pd.DataFrame:
    """Across the cells of each study: the Spearman correlation of every pair of explainability and
    robustness measures, its number of cells and 95% interval. `defined` is False where a measure is
    constant over the shared cells or fewer than 4 cells share both (rho NaN, counted, never averaged)."""
    rows = []
    wide = agreement_wide(tidy, card)
    for study, group in wide.groupby("study"):
        names = sorted(c for c in group.columns if c not in ("study", "arch", "reg", "seed") and group[c].notna().any())
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                pair = group[[a, b]].dropna()
                n = len(pair)
                rho = float("nan")
                if n >= 4 and pair[a].nunique() > 1 and pair[b].nunique() > 1:
                    rho = float(stats.spearmanr(pair[a], pair[b]).statistic)
                lo, hi = spearman_interval(rho, n)
                rows.append({"study": study, "measure_a": a, "measure_b": b, "n_cells": n, "rho": rho,
                             "ci_low": lo, "ci_high": hi, "defined": bool(np.isfinite(rho))})
    return pd.DataFrame(rows, columns=["study", "measure_a", "measure_b", "n_cells", "rho", "ci_low", "ci_high",
                                       "defined"])


SHORTCUT_COLUMNS = ["study", "method", "score", "n_cells", "mean", "chance", "rho", "ci_low", "ci_high", "defined"]


def shortcut_detection(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per planted-shortcut study, attribution method and score (mass inside the mark, pointing game):
    the mean over cells, the chance level (the mark's share of the image: what a random map scores),
    and the Spearman correlation across cells of the score with the cell's reliance on the mark (does
    the method tell reliant models from the others?), with n and a 95% interval. `defined` is False
    (rho NaN, counted) with fewer than 4 cells or a constant score or reliance."""
    rows = []
    for study, group in tidy[tidy.metric.str.startswith("shortcut_")].groupby("study"):
        wide = group.pivot_table(index=["arch", "reg", "seed"], columns="metric", values="value", aggfunc="mean")
        if "shortcut_reliance" not in wide:
            continue
        chance = float(wide["shortcut_area"].mean()) if "shortcut_area" in wide else float("nan")
        for column in sorted(wide.columns):
            match = re.fullmatch(r"shortcut_(mass|pointing)_(.+)", column)
            if not match:
                continue
            pair = wide[["shortcut_reliance", column]].dropna()
            n = len(pair)
            rho = float("nan")
            if n >= 4 and pair.iloc[:, 0].nunique() > 1 and pair.iloc[:, 1].nunique() > 1:
                rho = float(stats.spearmanr(pair.iloc[:, 0], pair.iloc[:, 1]).statistic)
            lo, hi = spearman_interval(rho, n)
            rows.append({"study": study, "method": match.group(2), "score": match.group(1), "n_cells": n,
                         "mean": float(pair.iloc[:, 1].mean()) if n else float("nan"), "chance": chance,
                         "rho": rho, "ci_low": lo, "ci_high": hi, "defined": bool(np.isfinite(rho))})
    return pd.DataFrame(rows, columns=SHORTCUT_COLUMNS)
