"""The study report: one self-contained HTML page (images embedded) drawn from results/tables."""
from __future__ import annotations

import base64
import fnmatch
import html
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from reglens import analyses, measures, stats
from reglens.report_trust import masking_section, replication_section, table_html as _table, trust_section
from reglens.dissect import COUNTING
from reglens.io import atomic_path, read_csv
from reglens.layout import cell_path

QUESTION = ("How do regularizers change what a CNN learns, how explainable it is, and how robust it is?")


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    return f'<img alt="{html.escape(path.stem)}" src="data:{mime};base64,{data}">'


def _distrust(row) -> str:
    """A scorecard row's meta-evaluation flag and its gradient-masking count, as caveats after its finding."""
    out = ""
    if not bool(getattr(row, "trusted", True)):
        out += f" [but this measure cannot answer here: {html.escape(str(row.trust_reason))}]"
    if int(getattr(row, "masking_flagged", 0) or 0):
        out += (f" [gradient masking suspected in {int(row.masking_flagged)} of {int(row.masking_cells)} cells of "
                f"{html.escape(str(row.reg))} and {html.escape(str(row.baseline))}]")
    return out


def findings(card: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """Sentences per scorecard panel (study x arch): the differences from its baseline marked
    significant (paired t-test from MIN_PAIRS paired seeds, Holm within the panel); where none, say so
    and how many paired seeds the largest observed effect would need; with fewer pairs, no test.
    Cost measures (time, throughput) are never findings."""
    if card.empty:
        return ["No scorecard: no regularizer shares seeds with its study's baseline."]
    out = []
    for (study, arch), panel in card[card.group != "cost"].groupby(["study", "arch"], sort=False):
        n = int(panel.n_pairs.max())
        base = panel.baseline.iloc[0]
        if n < stats.MIN_PAIRS:
            out.append(f"<b>{study}/{arch}</b>: {n} paired seed(s) per regularizer, fewer than {stats.MIN_PAIRS}: "
                       f"differences from {base} are shown, none is tested.")
            continue
        sig = panel[panel.significant.astype(bool)]
        tested = int((panel.test == "ok").sum())
        flagged = int((panel.test == "constant difference").sum())
        note = f"; {flagged} untested: a constant difference over seeds" if flagged else ""
        if sig.empty:
            need = panel[panel.test == "ok"].dropna(subset=["seeds_needed"]).sort_values("seeds_needed")
            power = (f"; the largest observed effect ({need.reg.iloc[0]}, {need.label.iloc[0]}, "
                     f"{need.mean_diff.iloc[0]:+.3g}) would need about {need.seeds_needed.iloc[0]:.0f} paired seeds "
                     "to be detected with 80% power" if len(need) else "")
            out.append(f"<b>{study}/{arch}</b>: no difference from {base} is significant (Holm-corrected p &lt; "
                       f"{alpha} over {tested} tests, {n} paired seeds{note}){power}.")
            continue
        parts = [f"{r.reg} {'raised' if r.mean_diff > 0 else 'lowered'} {html.escape(r.label)} by {r.mean_diff:+.3g} "
                 f"({r.n_pairs} pairs, p<sub>Holm</sub> = {r.p_holm:.2g}){_distrust(r)}"
                 for r in sig.sort_values("p_holm").itertuples()]
        out.append(f"<b>{study}/{arch}</b> against {base}: " + "; ".join(parts) + f" ({len(sig)} of {tested} tests{note}).")
    return out


def headline(card: pd.DataFrame, declared: dict | None, alpha: float = 0.05) -> str:
    """The comparison the config declares before the run (`headline`: study, arch, reg, measure):
    its difference, t-interval and Holm p, or that it is not significant and the seeds it would need."""
    if not declared:
        return ""
    row = card[(card.study == declared["study"]) & (card.arch == declared["arch"]) & (card.reg == declared["reg"])
               & (card.measure == declared["measure"])]
    where = f"{declared['study']}/{declared['arch']}, {declared['reg']}"
    if row.empty:
        return f"<p><b>Headline</b> ({where}, {html.escape(declared['measure'])}): not in these tables.</p>"
    text = html.escape(headline_sentence(row.iloc[0], alpha)).replace("p_Holm", "p<sub>Holm</sub>")
    return f"<p class='headline'><b>Headline</b> (declared in the configuration): {text}{_distrust(row.iloc[0])}</p>"


def untrained_note(failed: pd.DataFrame) -> str:
    if failed.empty:
        return "<p>Every cell trained (test accuracy more than 0.05 above chance).</p>"
    cells = ", ".join(cell_path(r._asdict()) for r in failed.itertuples())
    return (f"<p><b>{len(failed)} cell(s) did not train</b> (test accuracy within {stats.UNTRAINED_MARGIN} of chance): "
            f"{html.escape(cells)}. They are in the tables, flagged, and left out of the scorecard, the findings and "
            "the agreement of measures.</p>")


def headline_sentence(r, alpha: float = 0.05) -> str:
    """One scorecard row as the sentence the report and README lead with."""
    what = f"{r.study}/{r.arch}: {r.reg} against {r.baseline}, {r.label}"
    if r.n_pairs < stats.MIN_PAIRS:
        return f"{what}: {r.n_pairs} paired seed(s), fewer than {stats.MIN_PAIRS}; not tested."
    lo, hi = stats.t_interval(r.mean_diff, r.sd_diff, r.n_pairs)
    text = f"{what}: difference {r.mean_diff:+.3g} (95% t-interval [{lo:+.3g}, {hi:+.3g}], {r.n_pairs} paired seeds)"
    if bool(r.significant):
        return text + f"; significant after Holm (p_Holm = {r.p_holm:.2g}, paired t-test)."
    need = (f"; the observed effect would need about {r.seeds_needed:.0f} paired seeds for 80% power"
            if np.isfinite(r.seeds_needed) else "")
    return text + f"; not significant after Holm (p_Holm = {r.p_holm:.2g}){need}."


def dissection_note(summary: pd.DataFrame) -> str:
    """How Network Dissection's unique concepts are counted, when its metrics are present."""
    if not summary.metric.str.startswith("dissect_").any():
        return ""
    items = "".join(f"<li><code>dissect_{k}</code>: {html.escape(v)}</li>" for k, v in COUNTING.items())
    return ("<h2>Network Dissection: how concepts are counted</h2><p>A unit is a detector when the IoU of its "
            "best Broden concept exceeds the threshold in the configuration. Both counts from the literature "
            f"are reported:</p><ul>{items}</ul>")


def groups_note(tables_dir: Path) -> str:
    """Do filter groups learn one concept? Per study, arch and regularizer: the share of a group's units
    that share its most common concept, against random groups of the same sizes (chance)."""
    path = tables_dir / "dissect_groups.csv"
    table = read_csv(path) if path.exists() else pd.DataFrame()
    if table.empty:
        return ""
    per_seed = table.groupby(["study", "arch", "reg", "seed"])[["agreement", "chance", "detecting"]].mean()
    shown = per_seed.groupby(["study", "arch", "reg"]).agg(
        seeds=("agreement", "size"), agreement=("agreement", lambda v: " / ".join(f"{x:.3f}" for x in v)),
        chance=("chance", "mean"), detecting=("detecting", "mean")).reset_index()
    shown["chance"] = shown.chance.map(lambda v: f"{v:.3f}")
    shown["detecting"] = shown.detecting.map(lambda v: f"{v:.3f}")
    return ("<h3>Filter groups: one concept each?</h3><p class='caption'>Each named layer's filters split into the "
            "groups of the study's group regularizers; per group, the share of its filters whose best Broden concept "
            "is the group's most common one (agreement, each seed's mean over layers and groups), the share that "
            "detect it, and the agreement of random groups of the same sizes (chance). Concept Group Learning "
            "intends agreement well above chance; <code>tables/dissect_groups.csv</code> names each group's concept."
            "</p><div class='scroll'>" + _table(shown) + "</div>")


# the report's sections, in the order of the question: (id, title, caption, figure-name patterns)
SECTIONS = [
    ("accuracy", "Accuracy and cost",
     "Test accuracy on clean images (higher is better), the wall-clock time to train a cell (lower is cheaper), "
     "and the learning curves with the generalization gap (test minus training loss; smaller: less overfitting).",
     ["test_acc", "train_seconds", "learning_curves", "gap_final"]),
    ("robustness", "Robustness and decision boundaries",
     "Robust accuracy as the per-point worst case over the attack set (APGD-CE, APGD-T and Square, as AutoAttack) "
     "under L∞ and L2 budgets first, then accuracy under FGSM and PGD as the L∞ budget grows (higher is more "
     "robust; per cell: each attack's curve, and PGD against its steps and restarts); the total variation of the "
     "predicted class over 2-D planes through test images (lower: smoother decision regions) and the distance to "
     "the nearest boundary along adversarial planes (higher: farther); for the 2-D toy study, the decision "
     "regions over the whole plane, exactly (per cell, an animation over epochs).",
     ["worst_case_curves", "robustness_curves", "regions_*", "tv_*", "boundary_*"]),
    ("calibration", "Calibration",
     "Expected calibration error and negative log-likelihood on the test set (lower is better calibrated).",
     ["ece", "nll"]),
    ("where", "Where the network looks: attribution maps, faithfulness, sanity",
     "Maps of each attribution method on fixed test images; faithfulness by ROAR/KAR (retrain on ablated data; "
     "higher score: removing the ranked pixels hurts more than random; the leakage controls: class accuracy from the "
     "removal mask alone and from the masks a detector finds in the filled images, and that detector's pixel "
     "accuracy against the majority rate) and ROAD (the cell's own model with "
     "imputation; higher: more faithful); the randomization check (Spearman between maps of the trained and the "
     "randomized model; lower: the map depends on what was learned); complexity (Gini of |map|, higher: "
     "sparser; entropy, lower: more concentrated); agreement between methods; and where internal units look (per "
     "cell, captum's neuron gradient and Integrated Gradients of the units activation maximization draws, laid over "
     "the figure images; a map whose completeness error exceeds 5% is counted).",
     ["maps_*", "neurons_*", "roar_curves", "roar_score", "kar_score", "road_score", "*mprt*", "method_agreement_mean", "gini",
      "entropy"]),
    ("what", "What it has learned: activation maximization and concepts",
     "Images that maximize each class logit (each stretched to its own range for display: optimization leaves the "
     "data range), and Network Dissection: units whose thresholded activation matches a Broden concept "
     "(more unique concepts and detectors: more units aligned with human concepts); the feature maps of the first "
     "and last named layers on a test image, and each layer's weight distribution (L1 and elastic net should "
     "pile weights at zero). Beyond single units: Net2Vec concept embeddings (weights over a layer's units "
     "that segment a Broden concept; held-out IoU against the best single unit, and how many units a concept "
     "needs: more is more distributed) and lesions (each class's accuracy with its most important units of the "
     "last layer zeroed, minus with random ones: higher, more concentrated decisions). How the penultimate layer "
     "arranges the classes: a t-SNE map per cell, with its trustworthiness (1: no false neighbours in the map) and "
     "the kNN accuracy in the map (higher: classes more separated; read a map only as far as it is trustworthy).",
     ["actmax_*", "dissect_*", "features_*", "weights_*", "net2vec_*", "lesion_*", "embedding_*"]),
    ("shortcut", "Ground truth: a planted shortcut",
     "Studies that plant a class-specific mark in their training images. Reliance: accuracy on clean test images "
     "minus accuracy with a wrong class's mark (higher: the model follows the mark; lower is better). Per attribution "
     "method, on test images carrying their own class's mark: the share of attribution mass inside the mark and the "
     "pointing game (the map's maximum inside the mark); a random map scores the mark's share of the image (chance). "
     "A method that reveals the shortcut scores higher on models that rely on it: its Spearman correlation with "
     "reliance across cells is positive.",
     ["shortcut_*"]),
    ("agreement", "Do the measures agree?",
     "Spearman correlation across all cells of a study between every explainability and robustness measure, "
     "with the number of cells and a 95% interval (Fisher z, Bonett–Wright standard error).",
     ["agreement_*"]),
]
EMBED_BYTES = 3_000_000  # per-cell figures are embedded up to this many bytes of PNG in all, linked beyond


def _section_of(stem: str) -> str | None:
    for sid, _, _, patterns in SECTIONS:
        if any(fnmatch.fnmatch(stem, p) for p in patterns):
            return sid
    return None


def seeds_sentence(summary: pd.DataFrame, warn: bool = True) -> str:
    if summary.empty:
        return "No results yet."
    measured = summary[summary.n > 0]
    if measured.empty:
        return "No results yet."
    lo, hi = int(measured.n.min()), int(measured.n.max())
    count = f"{hi}" if lo == hi else f"{lo} to {hi}"
    text = (f"Seeds per cell: {count}. Points are individual seeds; a tick is their mean; a line is the percentile "
            f"bootstrap 95% interval of the mean, drawn only with {stats.MIN_SEEDS_FOR_INTERVAL} or more seeds.")
    if warn and hi < stats.MIN_SEEDS_FOR_INTERVAL:
        text += (f" <b>Every difference in this report rests on fewer than {stats.MIN_SEEDS_FOR_INTERVAL} seeds</b>: "
                 "no interval is shown, and no difference should be read as established.")
    return text


def value_cell(row) -> str:
    """A summary row as text: the mean and its bootstrap interval, or each seed's value when n < 3."""
    if row.n >= stats.MIN_SEEDS_FOR_INTERVAL and pd.notna(row.ci_low):
        return f"{row.mean:.3g} [{row.ci_low:.3g}, {row.ci_high:.3g}]"
    if row.n == 2:
        return f"{getattr(row, 'min'):.3g} / {getattr(row, 'max'):.3g}"
    return f"{row.mean:.3g}"


def headline_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per study x arch x regularizer: each scorecard measure (value_cell)."""
    card = analyses.scorecard()
    values = measures.seed_values(tidy, card)
    if values.empty:
        return pd.DataFrame()
    per = stats.summarize(values.assign(stage="scorecard", metric=values.measure).drop(columns="measure"))
    per["cell"] = [value_cell(r) for r in per.itertuples()]
    order = [m.name for m in card]
    table = per.pivot_table(index=["study", "arch", "reg"], columns="metric", values="cell", aggfunc="first")
    cols = [m for m in order if m in table.columns]
    table = table[cols]
    table.columns = [f"{measures.by_name(m, card).label} {'↑' if measures.by_name(m, card).better > 0 else '↓'}" for m in cols]
    table = table.reset_index()
    return table.sort_values(["study", "arch", "reg"], key=lambda c: c.map(lambda r: (r != "none", r))
                             if c.name == "reg" else c)


def best_per_measure(card: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per study x arch x scorecard measure: the regularizer that moves it most in the better
    direction, its difference from the study's baseline and Holm p-value."""
    if card.empty:
        return pd.DataFrame()
    rows = []
    for (study, arch, measure), d in card.groupby(["study", "arch", "measure"], sort=False):
        d = d.dropna(subset=["gain"])
        if d.empty:
            continue
        best = d.loc[d.gain.idxmax()]
        rows.append({"study": study, "arch": arch, "measure": best.label, "group": best.group,
                     "best": best.reg, "baseline": best.get("baseline", "none"),
                     "difference": f"{best.mean_diff:+.3g}",
                     "p_Holm": f"{best.p_holm:.2g}" if pd.notna(best.p_holm) else "–",
                     "significant": "yes" if best.p_holm < alpha else "no"})
    return pd.DataFrame(rows)


def agreement_sentences(table: pd.DataFrame) -> list[str]:
    """Which measures tell the same story (interval above 0) and which contradict (below 0)."""
    if table.empty:
        return ["No two measures were present in enough cells to be compared."]
    out = []
    for study, d in table.groupby("study"):
        defined = d[d.defined.astype(bool)]
        undefined = len(d) - len(defined)
        agree = defined[defined.ci_low > 0].sort_values("rho", ascending=False)
        contra = defined[defined.ci_high < 0].sort_values("rho")

        def pairs(f):
            return ", ".join(f"{r.measure_a} ~ {r.measure_b} (ρ = {r.rho:+.2f}, n = {r.n_cells})"
                             for r in f.head(8).itertuples()) + (f" and {len(f) - 8} more" if len(f) > 8 else "")
        text = (f"<b>{study}</b>: {len(defined)} pairs of measures compared across cells "
                f"({undefined} undefined: a measure constant or present in fewer than 4 shared cells; counted, not "
                f"shown). Same story (interval above 0): {pairs(agree) if len(agree) else 'none'}. Contradicting "
                f"(interval below 0): {pairs(contra) if len(contra) else 'none'}. With {len(defined)} intervals at 95%, "
                f"about {0.05 * len(defined):.0f} would exclude 0 by chance alone; cells of one study share data and "
                "architecture, so these are associations across regularizers and seeds, not causal links.")
        out.append(text)
    return out


def shortcut_section(tables_dir: Path) -> str:
    """The detection table: per study, method and score, the mean, chance, and the correlation with
    reliance across cells (interval; undefined ones counted)."""
    path = tables_dir / "shortcut.csv"
    table = read_csv(path) if path.exists() else pd.DataFrame()
    if table.empty:
        return "<p><em>No planted-shortcut study in this configuration.</em></p>"
    shown = table.assign(
        rho=[f"{r.rho:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]" if np.isfinite(r.ci_low) else
             (f"{r.rho:+.2f} (no interval: n < 4 or |rho| = 1)" if np.isfinite(r.rho) else "undefined")
             for r in table.itertuples()],
        mean=table["mean"].map(lambda v: f"{v:.3f}"), chance=table.chance.map(lambda v: f"{v:.3f}"))
    undefined = int((~table.defined.astype(bool)).sum())
    return ("<div class='scroll'>" + _table(shown[["study", "method", "score", "n_cells", "mean", "chance", "rho"]])
            + "</div><p class='caption'>rho: Spearman correlation across cells between the method's score and the "
            f"cell's reliance, with a 95% interval (Fisher z, Bonett–Wright). {undefined} undefined (fewer than 4 "
            "cells, or a score or reliance constant over cells), counted here and never averaged. Cells of one study "
            "differ by regularizer and seed only, so a correlation says which methods track reliance across these "
            "models; it does not show the method would on other data.</p>")


def _cells_section(figures_dir: Path) -> str:
    cell_dirs = sorted({p.parent for p in (figures_dir / "cells").rglob("*.png")})
    shown = ("*.png", "*.gif")
    if not cell_dirs:
        return "<p>No per-cell figures.</p>"
    embed = sum(p.stat().st_size for d in cell_dirs for pattern in shown for p in d.glob(pattern)) <= EMBED_BYTES
    parts = [f"<p>{len(cell_dirs)} cells." + ("" if embed else f" Their figures exceed {EMBED_BYTES / 1e6:.0f} MB, so "
                                                               "they are linked (under <code>figures/cells/</code>, "
                                                               "next to this report), not embedded.") + "</p>"]
    for d in cell_dirs:
        rel = d.relative_to(figures_dir / "cells")
        body = "".join(f"<h4>{html.escape(p.stem)}</h4>{_img(p)}" if embed else
                       f'<a href="figures/cells/{html.escape(str(rel))}/{html.escape(p.name)}">{html.escape(p.stem)}</a> '
                       for p in sorted(p for pattern in shown for p in d.glob(pattern)))
        parts.append(f"<details><summary>{html.escape(str(rel))}</summary>{body}</details>")
    return "".join(parts)


STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
         ".scroll{overflow-x:auto;max-width:100%}"
         "table.t{border-collapse:collapse;font-size:12px;margin:1em 0}"
         "table.t td,table.t th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}"
         "img{max-width:100%;height:auto;margin:1em 0;border:1px solid #eee}"
         "pre{background:#f6f6f6;padding:1em;font-size:11px;overflow-x:auto}"
         "p.caption{color:#444;max-width:60em} nav ol{columns:2} details{margin:.3em 0}")


def build(tables_dir, figures_dir, config: dict, out_path) -> None:
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    summary = read_csv(tables_dir / "summary.csv")
    tidy = read_csv(tables_dir / "metrics.csv")
    comparisons = read_csv(tables_dir / "comparisons.csv")
    card = read_csv(tables_dir / "scorecard.csv")
    agree = read_csv(tables_dir / "agreement.csv")
    missing = read_csv(tables_dir / "missing.csv")
    failed = read_csv(tables_dir / "untrained.csv") if (tables_dir / "untrained.csv").exists() else pd.DataFrame()
    seeds = seeds_sentence(summary)
    seeds_short = seeds_sentence(summary, warn=False)
    sig = comparisons[(comparisons.p_holm < 0.05) & (comparisons.test == "ok")].sort_values(["study", "arch", "stage", "p_holm"])
    figures = sorted(figures_dir.glob("*.png"))
    by_section = {sid: sorted((p for p in figures if _section_of(p.stem) == sid),  # in the patterns' order
                              key=lambda p, pats=pats: next(i for i, pat in enumerate(pats) if fnmatch.fnmatch(p.stem, pat)))
                  for sid, _, _, pats in SECTIONS}
    others = [p for p in figures if _section_of(p.stem) is None and p.stem != "scorecard"]
    directions = "".join(f"<li><b>{html.escape(m.label)}</b> ({m.group}, {'higher' if m.better > 0 else 'lower'} is "
                         f"better): {html.escape(m.text)}</li>" for m in analyses.scorecard()
                         if len(card) and m.name in set(card.measure))
    toc = [("scorecard", "Scorecard"), ("trust", "Which measures can answer"), ("findings", "Findings")] + [(sid, title) for sid, title, *_ in SECTIONS] + [
        ("tables", "Tables"), ("cells", "Per-cell drill-down"), ("missing", "Missing outputs"),
        ("configuration", "Configuration")]
    if others:
        toc.insert(-3, ("other", "Other figures"))
    known = replication_section(tables_dir)
    if known:
        toc.insert(3, ("replication", "Known results, reproduced"))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>reglens report</title><style>", STYLE,
        "</style></head><body>",
        "<h1>reglens report</h1>",
        f"<p><em>{html.escape(QUESTION)}</em></p>",
        headline(card, config.get("headline"), 0.05),
        "<nav><ol>" + "".join(f'<li><a href="#{sid}">{html.escape(t)}</a></li>' for sid, t in toc) + "</ol></nav>",
        '<h2 id="scorecard">Scorecard: what each regularizer moves</h2>',
        (_img(figures_dir / "scorecard.png") if (figures_dir / "scorecard.png").exists()
         else "<p>No scorecard: no regularizer shares seeds with <code>none</code>.</p>"),
        "<p class='caption'>Each cell is a regularizer's mean paired difference from the study's baseline (the panel "
        "title names it: <code>none</code>, or the study's first regularizer where it has no <code>none</code>) over shared "
        "seeds (the number printed, in the measure's own units), coloured by that difference in standard deviations "
        "of the measure over the panel's cells, turned so that green is better; * marks p<sub>Holm</sub> &lt; 0.05 "
        f"(paired t-test, only from {stats.MIN_PAIRS} or more paired seeds, Holm within each panel; time and "
        "throughput are cost, never tested). Cells that did not train are left out (listed below). Measures that average over attribution methods leave out the "
        f"negative controls. Greyed: the measure cannot answer the question in this panel (next section). {seeds}</p><ul class='caption'>{directions}</ul>",
        untrained_note(failed),
        trust_section(tables_dir),
        '<h2 id="findings">Findings</h2><ul>' + "".join(f"<li>{s}</li>" for s in findings(card)) + "</ul>",
        known,
    ]
    for sid, title, caption, _ in SECTIONS:
        parts.append(f'<h2 id="{sid}">{html.escape(title)}</h2><p class="caption">{html.escape(caption)} {seeds_short}</p>')
        if sid == "accuracy":
            parts.append("<div class='scroll'>" + _table(headline_table(tidy)) + "</div>"
                         "<p class='caption'>Every scorecard measure per regularizer: mean [bootstrap 95% interval] "
                         "with 3 or more seeds, each seed's value (a / b) with 2.</p>")
        if sid == "what":
            parts.append(dissection_note(summary))
            parts.append(groups_note(tables_dir))
        if sid == "shortcut":
            parts.append(shortcut_section(tables_dir))
        if sid == "robustness":
            parts.append(masking_section(tables_dir))
        if sid == "agreement":
            parts.append("<ul>" + "".join(f"<li>{s}</li>" for s in agreement_sentences(agree)) + "</ul>")
        parts += [f"<h3>{html.escape(p.stem.replace('_', ' '))}</h3>{_img(p)}" for p in by_section[sid]]
        if not by_section[sid]:
            parts.append("<p><em>No figure: this stage did not run in this study.</em></p>")
    parts += [
        '<h2 id="tables">Tables</h2>',
        "<h3>Best regularizer per measure</h3><p class='caption'>The regularizer that moves each scorecard "
        "measure most in its better direction; every regularizer's rank on every explainability metric is in "
        '<a href="tables/ranking.csv">tables/ranking.csv</a>, every value in '
        '<a href="tables/metrics.csv">tables/metrics.csv</a>.</p>',
        "<div class='scroll'>" + _table(best_per_measure(card)) + "</div>",
        "<h3>Every metric against <code>none</code> (exploratory)</h3>"
        f"<p class='caption'>Paired t-test across seeds (from {stats.MIN_PAIRS} pairs), Holm-corrected within each "
        "study and metric only, not across the many metrics: a screen, not findings "
        '(all comparisons: <a href="tables/comparisons.csv">tables/comparisons.csv</a>).</p>',
        "<div class='scroll'>" + (_table(sig[["study", "arch", "stage", "metric", "reg", "n_pairs", "mean_diff",
                                              "p_value", "p_holm"]]) if len(sig) else
                                  "<p>None at p<sub>Holm</sub> &lt; 0.05.</p>") + "</div>",
    ]
    if others:
        parts += ['<h2 id="other">Other figures</h2>'] + [
            f"<h3>{html.escape(p.stem.replace('_', ' '))}</h3>{_img(p)}" for p in others]
    parts += [
        '<h2 id="cells">Per-cell drill-down</h2>', _cells_section(figures_dir),
        '<h2 id="missing">Missing outputs</h2>',
        _table(missing) if len(missing) else "<p>None: every configured cell and stage is present.</p>",
        '<h2 id="configuration">Configuration</h2><pre>' + html.escape(yaml.safe_dump(config, sort_keys=False)) + "</pre>",
        "</body></html>",
    ]
    with atomic_path(out_path) as tmp:
        tmp.write_text("\n".join(parts))
