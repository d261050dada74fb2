"""Statistics across seeds: means with confidence intervals, paired comparisons against a baseline,
Holm's correction, rankings. Frames in, frames out."""
from __future__ import annotations

import math

import pandas as pd
from scipy import stats


GROUP = ["study", "dataset", "arch", "reg"]
EXPLAINABILITY_STAGES = ("explain", "roar", "dissect")


def summarize(tidy: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per study x arch x regularizer x metric: mean over seeds, standard deviation, n, and the
    two-sided Student-t confidence interval of the mean (NaN with a single seed)."""
    grouped = tidy.groupby(GROUP + ["stage", "metric"]).value
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    sem = out["std"] / out["n"] ** 0.5
    half = stats.t.ppf(0.5 + confidence / 2, (out["n"] - 1).clip(lower=1)) * sem
    out["ci_low"] = (out["mean"] - half).where(out["n"] > 1)
    out["ci_high"] = (out["mean"] + half).where(out["n"] > 1)
    return out


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
