"""The study report: one self-contained HTML page (images embedded) drawn from results/tables."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd
import yaml

from reglens.dissect import COUNTING
from reglens.io import atomic_path, read_csv

QUESTION = ("How do regularizers change what a CNN learns, how explainable it is, and how robust it is?")

# metrics shown in the headline table when present: (metric, column title, higher is better)
HEADLINE = [("test_acc", "test accuracy", True), ("ece", "ECE", False), ("tv_isotropic_random", "boundary TV (random planes)", False)]


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    if frame.empty:
        return "<p><em>(empty)</em></p>"
    return frame.to_html(index=False, border=0, classes="t", float_format=lambda v: floatfmt.format(v), na_rep="–")


def headline_metrics(summary: pd.DataFrame) -> list[str]:
    """The headline metrics plus the strongest PGD accuracy column and the explainability scores."""
    metrics = [m for m, _, _ in HEADLINE if m in set(summary.metric)]
    pgd = sorted(m for m in summary.metric.unique() if m.startswith("pgd") and "_acc@" in m)
    if pgd:
        metrics.append(sorted(pgd, key=lambda m: float(m.split("@")[1]))[len(pgd) // 2])
    metrics += sorted(m for m in summary.metric.unique() if m.startswith("roar_score_") and not m.endswith("random"))
    metrics += sorted(m for m in summary.metric.unique() if m.endswith("_gini") and m.split("_gini")[0] in ("saliency", "integrated_gradients", "gradcam"))
    metrics += [m for m in ("method_agreement_mean", "saliency_mprt_all_layers") if m in set(summary.metric)]
    metrics += [m for m in ("dissect_unique_concepts", "dissect_unique_concepts_per_category")
                if m in set(summary.metric)]
    return metrics


def findings(comparisons: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """Sentences: which regularizers raised or lowered each explainability and robustness measure,
    significant after Holm's correction; where none did, say so and with how many seeds."""
    out = []
    if comparisons.empty:
        return ["No comparisons against the unregularized baseline could be made (is `none` in the grid?)."]
    stages = {"explain": "explainability", "roar": "explainability (ROAR/KAR)", "dissect": "interpretability",
              "attack": "robustness", "boundary": "boundary smoothness", "train": "accuracy", "calibration": "calibration"}
    for (study, arch, stage), group in comparisons.groupby(["study", "arch", "stage"]):
        if stage not in stages:
            continue
        sig = group[group.p_holm < alpha]
        n = int(group.n_pairs.max()) if len(group) else 0
        if sig.empty:
            out.append(f"<b>{study}/{arch}</b>, {stages[stage]}: no regularizer changed any of its "
                       f"{group.metric.nunique()} measures significantly (Holm-corrected p < {alpha}, "
                       f"{n} paired seeds).")
            continue
        parts = [f"{row.reg} {'raised' if row.mean_diff > 0 else 'lowered'} {row.metric} by {row.mean_diff:+.3g} "
                 f"(p<sub>Holm</sub> = {row.p_holm:.2g})" for row in sig.sort_values("p_holm").itertuples()]
        out.append(f"<b>{study}/{arch}</b>, {stages[stage]}: " + "; ".join(parts) + f" ({n} paired seeds).")
    return out


def dissection_note(summary: pd.DataFrame) -> str:
    """How Network Dissection's unique concepts are counted, when its metrics are present."""
    if not summary.metric.str.startswith("dissect_").any():
        return ""
    items = "".join(f"<li><code>dissect_{k}</code>: {html.escape(v)}</li>" for k, v in COUNTING.items())
    return ("<h2>Network Dissection: how concepts are counted</h2><p>A unit is a detector when the IoU of its "
            "best Broden concept exceeds the threshold in the configuration. Both counts from the literature "
            f"are reported:</p><ul>{items}</ul>")


def build(tables_dir, figures_dir, config: dict, out_path) -> None:
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    summary = read_csv(tables_dir / "summary.csv")
    comparisons = read_csv(tables_dir / "comparisons.csv")
    ranking = read_csv(tables_dir / "ranking.csv")
    missing = read_csv(tables_dir / "missing.csv")
    metrics = headline_metrics(summary)
    head = summary[summary.metric.isin(metrics)].assign(
        cell=lambda d: d["mean"].map("{:.3f}".format) + d.apply(
            lambda r: "" if pd.isna(r.ci_low) else f" ± {(r.ci_high - r.ci_low) / 2:.3f}", axis=1))
    pivot = head.pivot_table(index=["study", "arch", "reg"], columns="metric", values="cell", aggfunc="first")
    pivot = pivot.reindex(columns=[m for m in metrics if m in pivot.columns]).reset_index()
    pivot.columns.name = None
    n_seeds = int(summary["n"].max()) if len(summary) else 0
    caution = ("" if n_seeds >= 3 else f"<p><b>Only {n_seeds} seed(s) per cell:</b> a paired t-test then has "
               f"{max(0, n_seeds - 1)} degree(s) of freedom; treat these p-values as indicative, not as evidence.</p>")
    sig = comparisons[comparisons.p_holm < 0.05].sort_values(["study", "arch", "stage", "p_holm"])
    figures = sorted(p for p in figures_dir.glob("*.png"))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>reglens report</title><style>",
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table.t{border-collapse:collapse;font-size:12px;margin:1em 0}"
        "table.t td,table.t th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}"
        "img{max-width:100%;margin:1em 0;border:1px solid #eee} pre{background:#f6f6f6;padding:1em;font-size:11px}",
        "</style></head><body>",
        "<h1>reglens report</h1>",
        f"<p><em>{html.escape(QUESTION)}</em></p>",
        "<h2>Findings</h2>" + caution + "<ul>" + "".join(f"<li>{s}</li>" for s in findings(comparisons)) + "</ul>",
        "<h2>Headline metrics</h2><p>Mean over seeds ± half the 95% Student-t confidence interval.</p>",
        _table(pivot),
        "<h2>Significant differences from <code>none</code></h2>"
        "<p>Paired t-test across seeds, Holm-corrected within each study and metric.</p>",
        _table(sig[["study", "arch", "stage", "metric", "reg", "n_pairs", "mean_diff", "p_value", "p_holm"]])
        if len(sig) else f"<p>None at p<sub>Holm</sub> &lt; 0.05 ({n_seeds} seed(s) per cell; the paired test needs "
                         "at least two seeds with differing differences).</p>",
        dissection_note(summary),
        "<h2>Best regularizer per explainability metric</h2>"
        "<p>Highest mean over seeds, with the test accuracy it costs or gains against <code>none</code> "
        "(the full ranking is <code>results/tables/ranking.csv</code>).</p>",
        _table(ranking[ranking["rank"] == 1].drop(columns="rank")),
        "<h2>Figures</h2>",
        *[f"<h3>{html.escape(p.stem.replace('_', ' '))}</h3>{_img(p)}" for p in figures],
        "<h2>Missing outputs</h2>",
        _table(missing) if len(missing) else "<p>None: every configured cell and stage is present.</p>",
        "<h2>Configuration</h2><pre>" + html.escape(yaml.safe_dump(config, sort_keys=False)) + "</pre>",
        "</body></html>",
    ]
    with atomic_path(out_path) as tmp:
        tmp.write_text("\n".join(parts))
