"""Statistics across seeds: means with confidence intervals, paired comparisons against a baseline,
Holm's correction, rankings. Frames in, frames out."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from scipy import stats

from reglens import data, measures


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


MIN_PAIRS = 3  # no test, star or finding from fewer paired seeds
UNTRAINED_MARGIN = 0.05  # a cell within this of chance accuracy did not train


def untrained(tidy: pd.DataFrame, margin: float = UNTRAINED_MARGIN) -> pd.DataFrame:
    """Cells (study, arch, reg, seed) whose test accuracy is within `margin` of chance (1 / classes):
    models that did not train, flagged and counted, never compared or averaged in."""
    acc = tidy[tidy.metric == "test_acc"]
    chance = acc.dataset.map(lambda name: 1 / data.spec(name).num_classes)
    return acc[acc.value <= chance + margin][["study", "arch", "reg", "seed"]].reset_index(drop=True)


def without_cells(tidy: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """`tidy` less every row of the given cells (study, arch, reg, seed)."""
    keys = ["study", "arch", "reg", "seed"]
    if cells.empty:
        return tidy
    marked = tidy.merge(cells[keys].drop_duplicates().assign(_drop=True), on=keys, how="left")
    return marked[marked._drop.isna()].drop(columns="_drop")


def sign_flip_p(diff) -> float:
    """Two-sided exact sign-flip permutation p-value of paired differences (H0: symmetric about 0):
    the share of the 2^n sign patterns whose |mean| reaches the observed one. Its smallest value with
    n pairs is 2^(1-n). NaN with no pairs; above 16 pairs, 2^16 seeded random patterns."""
    d = np.asarray(diff, dtype=float)
    n = len(d)
    if n == 0:
        return float("nan")
    if n <= 16:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = np.random.default_rng(0).choice([-1, 1], size=(2 ** 16, n))
    observed = abs(d.mean())
    means = np.abs(signs @ d) / n
    return float(np.mean(means >= observed * (1 - 1e-12) - 1e-15))


def constant(diff: np.ndarray) -> bool:
    """Differences equal up to rounding: a t statistic has no variance to stand on."""
    return len(diff) > 0 and np.ptp(diff) <= 1e-9 * max(1.0, float(np.abs(diff).max()))


def paired_test(reg: pd.Series, base: pd.Series) -> dict:
    """Paired comparison over shared seeds (index): n, mean and SD of the differences, the paired
    t-test's p (only from MIN_PAIRS pairs with differences that vary), the exact sign-flip p (from
    MIN_PAIRS pairs) and `test`: 'ok', 'too few pairs' or 'constant difference'."""
    paired = pd.concat([reg, base], axis=1, keys=["reg", "base"]).dropna()
    diff = (paired["reg"] - paired["base"]).to_numpy(dtype=float)
    n = len(diff)
    out = {"n_pairs": n, "mean_diff": float(diff.mean()) if n else float("nan"),
           "sd_diff": float(diff.std(ddof=1)) if n > 1 else float("nan"), "p_value": float("nan"),
           "p_sign_flip": float("nan"), "test": "ok"}
    if n < MIN_PAIRS:
        out["test"] = "too few pairs"
    elif constant(diff):
        out["test"], out["sd_diff"] = "constant difference", 0.0
        out["p_sign_flip"] = sign_flip_p(diff)
    else:
        out["p_value"] = float(stats.ttest_rel(paired["reg"], paired["base"]).pvalue)
        out["p_sign_flip"] = sign_flip_p(diff)
    return out


def t_interval(mean: float, sd: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of a mean from n values with SD `sd`; NaN below MIN_PAIRS values."""
    if n < MIN_PAIRS or not np.isfinite(sd):
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def seeds_needed(mean_diff: float, sd_diff: float, alpha: float, power: float = 0.8, most: int = 1000) -> float:
    """Paired seeds a two-sided paired t-test at level `alpha` needs to detect a true mean difference
    `mean_diff` with SD `sd_diff` of the differences, with probability `power` (the noncentral t).
    NaN without an effect or a spread; inf above `most`."""
    if not (np.isfinite(mean_diff) and np.isfinite(sd_diff)) or sd_diff <= 0 or mean_diff == 0:
        return float("nan")
    d = abs(mean_diff) / sd_diff
    for n in range(2, most + 1):
        crit = stats.t.ppf(1 - alpha / 2, n - 1)
        nc = d * math.sqrt(n)
        lower = stats.nct.cdf(-crit, n - 1, nc)  # the far tail: SciPy gives NaN where it underflows
        if stats.nct.sf(crit, n - 1, nc) + (lower if np.isfinite(lower) else 0.0) >= power:
            return float(n)
    return float("inf")


def _holm_within(out: pd.DataFrame, family: list[str]) -> pd.Series:
    adjusted = pd.Series(float("nan"), index=out.index)
    for _, idx in out.groupby(family).groups.items():
        adjusted.loc[idx] = holm(out.loc[idx, "p_value"].tolist())
    return adjusted


COMPARISON_COLUMNS = ["n_pairs", "mean_diff", "sd_diff", "p_value", "p_sign_flip", "test"]


def compare_to_baseline(tidy: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """Each regularizer against `baseline` on the same study, architecture, metric and seeds
    (paired_test), with Holm's correction within each (study, metric) family. Cost metrics (time,
    throughput) get their differences but no test (`test` 'cost')."""
    rows = []
    keys = ["study", "dataset", "arch", "stage", "metric"]
    for key, group in tidy.groupby(keys):
        base = group[group.reg == baseline].set_index("seed").value
        if base.empty:
            continue
        for reg, other in group[group.reg != baseline].groupby("reg"):
            result = paired_test(other.set_index("seed").value, base)
            if measures.is_cost(key[-1]):
                result.update(p_value=float("nan"), p_sign_flip=float("nan"), test="cost")
            rows.append({**dict(zip(keys, key)), "reg": reg, "baseline": baseline, **result})
    out = pd.DataFrame(rows, columns=keys + ["reg", "baseline"] + COMPARISON_COLUMNS)
    out["p_holm"] = _holm_within(out, ["study", "metric"])
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
    return pd.DataFrame(rows, columns=["study", "arch", "metric", "rank", "reg", "mean", "accuracy", "accuracy_vs_none"])


def scorecard(tidy: pd.DataFrame, card: list, baseline: str = "none", alpha: float = 0.05,
              baselines: dict | None = None, power: float = 0.8) -> pd.DataFrame:
    """Per study x arch x regularizer x scorecard measure: the mean paired difference from the study's
    baseline (`baselines[study]`, else `baseline`) over shared seeds, that difference in units of the
    measure's standard deviation over all cells of the panel (`effect`), oriented so that positive is
    better (`gain`), paired_test's p-values and Holm's correction within each panel (study x arch,
    all regularizers and tested measures). Cost measures are shown, never tested. `seeds_needed`: the
    paired seeds the observed difference would need to reach Holm's first threshold in this panel
    with probability `power`. `card`: the scorecard's measures (reglens.analyses.scorecard()). A
    panel without its baseline has no rows. Leave untrained cells out first (untrained, without_cells)."""
    values = measures.seed_values(tidy, card)
    present = set(tidy.metric)
    rows = []
    for (study, arch, name), group in values.groupby(["study", "arch", "measure"]):
        m = measures.by_name(name, card)
        label = f"{m.label} at eps {m.metrics(present)[0].rsplit('@', 1)[1]}" if m.middle_eps else m.label
        base_name = (baselines or {}).get(study, baseline)
        if base_name not in set(group.reg):
            continue
        base = group[group.reg == base_name].set_index("seed").value
        spread = group.value.std(ddof=1)
        for reg, other in group[group.reg != base_name].groupby("reg"):
            result = paired_test(other.set_index("seed").value, base)
            if m.group == "cost":
                result.update(p_value=float("nan"), p_sign_flip=float("nan"), test="cost")
            effect = result["mean_diff"] / spread if spread > 0 else float("nan")
            rows.append({"study": study, "arch": arch, "baseline": base_name, "reg": reg, "measure": name,
                         "label": label, "group": m.group, "better": m.better, **result, "effect": effect,
                         "gain": effect * m.better})
    cols = ["study", "arch", "baseline", "reg", "measure", "label", "group", "better", "n_pairs", "mean_diff", "sd_diff",
            "effect", "gain", "test", "p_value", "p_sign_flip", "p_holm", "significant", "seeds_needed"]
    out = pd.DataFrame(rows, columns=[c for c in cols if c not in ("p_holm", "significant", "seeds_needed")])
    out["p_holm"] = _holm_within(out, ["study", "arch"])
    out["significant"] = (out.p_holm < alpha) & (out.n_pairs >= MIN_PAIRS) & (out.test == "ok")
    tested = out.groupby(["study", "arch"]).p_value.transform(lambda p: max(int(p.notna().sum()), 1))
    out["seeds_needed"] = [seeds_needed(r.mean_diff, r.sd_diff, alpha / k) if r.test == "ok" else float("nan")
                           for r, k in zip(out.itertuples(), tested)]
    order = {m.name: i for i, m in enumerate(card)}
    return out.sort_values(["study", "arch", "measure"], key=lambda c: c.map(order) if c.name == "measure" else c,
                           kind="stable").reset_index(drop=True)[cols]


def mark_masking(card: pd.DataFrame, tidy: pd.DataFrame) -> pd.DataFrame:
    """The scorecard with, per robustness row, `masking_flagged` of `masking_cells`: the cells of the
    regularizer and of its baseline whose gradient-masking checks failed (reglens.worstcase), so that
    a robustness difference is read with its caveat; 0 of 0 on the other rows."""
    flags = tidy[tidy.metric == "gradient_masking_suspected"].groupby(["study", "arch", "reg"]).value
    flagged, cells = flags.sum(), flags.size()
    out = card.copy()
    robust = out.group == "robustness"

    def count(table, row):
        return sum(float(table.get((row.study, row.arch, reg), 0)) for reg in (row.reg, row.baseline))

    out["masking_flagged"] = [int(count(flagged, r)) if is_robust else 0 for r, is_robust in zip(out.itertuples(), robust)]
    out["masking_cells"] = [int(count(cells, r)) if is_robust else 0 for r, is_robust in zip(out.itertuples(), robust)]
    return out


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
    raw = tidy[tidy.metric.map(lambda m: any(re.fullmatch(p, m) for p in measures.AGREEMENT_METRICS)
                               and not measures.is_control(m)).astype(bool)]
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
