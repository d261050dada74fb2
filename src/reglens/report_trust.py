"""The report's sections on whether to trust what it measured: which measures can answer the question
in each panel (negative controls, reliability, power, resilience and reactivity) and the known results
of the literature set beside this run's."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from reglens import meta_consistency, metaeval, replication, stats, worstcase
from reglens.io import read_csv


def table_html(frame: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    if frame.empty:
        return "<p><em>(empty)</em></p>"
    return frame.to_html(index=False, border=0, classes="t", float_format=lambda v: floatfmt.format(v), na_rep="–")


def trust_sentences(meta: pd.DataFrame) -> list[str]:
    """Per panel: the measures that can answer the question in this study, and those that cannot, with why."""
    out = []
    for (study, arch), panel in meta.groupby(["study", "arch"], sort=False):
        good = [html.escape(r.label) for r in panel.itertuples() if bool(r.trusted)]
        bad = [f"{html.escape(r.label)} ({html.escape(r.reason)})" for r in panel.itertuples() if not bool(r.trusted)]
        out.append(f"<b>{study}/{arch}</b>: can answer: {', '.join(good) if good else 'none'}. "
                   f"Cannot: {'; '.join(bad) if bad else 'none'}.")
    return out


def trust_section(tables_dir: Path) -> str:
    """The meta-evaluation: which measures can answer the question in each panel, and the controls."""
    if not (tables_dir / "metaeval.csv").exists():
        return ""
    meta, controls = read_csv(tables_dir / "metaeval.csv"), read_csv(tables_dir / "controls.csv")
    if meta.empty:
        return '<h2 id="trust">Which measures can answer the question here</h2><p>No tested measure.</p>'
    return ('<h2 id="trust">Which measures can answer the question here</h2>'
            "<p class='caption'>Each tested scorecard measure is checked in each panel. <b>Negative controls</b>: maps "
            "that are not explanations (a random map, a Sobel edge map of the input, the input itself, a blurred input, "
            "a constant map) are scored like a method; a measure that rates a control at least as well as the median "
            "real method (marked !) cannot tell explanations from it here. <b>Reliability</b>: the intra-class "
            "correlation ICC(1) of the measure over cells, regularizers as classes and seeds as replicates, with its F "
            "test: a measure whose differences between regularizers do not exceed its seed-to-seed spread cannot rank "
            "them; with one seed per regularizer this is unknown. <b>Power</b>: with no difference shown, the paired "
            "seeds the largest observed one would need at 80% power. Greyed on the scorecard; every number in "
            '<a href="tables/metaeval.csv">tables/metaeval.csv</a> and <a href="tables/controls.csv">tables/controls.csv</a>.'
            "</p><ul>" + "".join(f"<li>{t}</li>" for t in trust_sentences(meta)) + "</ul>"
            + ("<h3>Negative controls</h3><div class='scroll'>" + table_html(metaeval.controls_table(controls)) + "</div>"
               if len(controls) else "<p>No per-method measure ran a control.</p>") + resilience_part(tables_dir))


def resilience_part(tables_dir: Path) -> str:
    path = tables_dir / "meta_consistency.csv"
    table = meta_consistency.summary(read_csv(path)) if path.exists() else pd.DataFrame()
    if table.empty:
        return ""
    return ("<h3>Resilience and reactivity (MetaQuantus)</h3><p class='caption'>Each measure's per-image scores "
            "under perturbations of the model (every weight times N(1, std)) or of the input (uniform noise): small "
            "ones that keep the prediction should not move them (noise resilience: IAC<sub>NR</sub>, the Wilcoxon p "
            "of the scores before and after; IEC<sub>NR</sub>, the share of the methods' ranking kept), disruptive "
            "ones that change it should (adaptive reactivity: IAC<sub>AR</sub> = 1 − p; IEC<sub>AR</sub>, the share "
            "of scores that got worse). MC is their mean, in [0, 1], higher better, averaged over the panel's cells; "
            "no threshold is published, so compare measures with each other: MC 0.5 with both AR near 0 is a "
            "measure blind to that perturbation. Hedström et al. 2023, ported from their code; every cell: "
            '<a href="tables/meta_consistency.csv">tables/meta_consistency.csv</a>.</p>'
            "<div class='scroll'>" + table_html(table, "{:.3g}") + "</div>")


def replication_section(tables_dir: Path) -> str:
    """Known results of the literature beside this run's (tables/replication.csv); '' when none is configured."""
    path = tables_dir / "replication.csv"
    if not path.exists() or read_csv(path).empty:
        return ""
    rep = read_csv(path)
    curve = read_csv(tables_dir / "replication_curve.csv")
    contrasts, swept = replication.display_tables(rep, curve)
    settings = "".join(f"<li><b>{html.escape(k.source)}</b>: {html.escape(k.claim)}. Here: {html.escape(k.setting)}.</li>"
                       for k in replication.KNOWN if k.name in set(rep.result))
    not_run = "".join(f"<li><b>{html.escape(src)}</b>: {html.escape(claim)}. Not run: {html.escape(why)}.</li>"
                      for src, claim, why in replication.NOT_RUN)
    counts = rep.verdict.value_counts()
    tally = ", ".join(f"{n} {v}" for v, n in counts.items())
    return ('<h2 id="replication">Known results, reproduced</h2>'
            "<p class='caption'>Each published result is a few paired contrasts over the seeds both sides ran: the "
            "mean difference and its 95% t-interval. <b>reproduced</b>: the interval lies on the published side of "
            "zero; <b>opposite</b>: on the other side; <b>inconclusive</b>: it holds zero; a published &quot;no better "
            f"than&quot; is <b>consistent</b> unless the interval lies above zero; fewer than {stats.MIN_PAIRS} paired "
            "seeds give no verdict. Cells that did not train are left out and counted, except in the swept "
            "penalty's contrasts and curve, where a model driven to chance by a strong penalty is part of the published "
            "claim: there they count, and the count is shown. What the run gave is what is shown; nothing was tuned toward the papers. The "
            "settings differ from the papers' (below): a direction reproduced here does not reproduce their numbers. "
            f'Every row: <a href="tables/replication.csv">tables/replication.csv</a>.</p><p>{html.escape(tally)}.</p>'
            "<div class='scroll'>" + table_html(contrasts) + "</div>"
            + ("<h3>The swept weight</h3><p class='caption'>The metric per weight of the regularizer, mean over seeds "
               "[95% t-interval], beside the published value at the same weight.</p><div class='scroll'>"
               + table_html(swept, "{:.3g}") + "</div>" if len(swept) else "")
            + f"<h3>Settings</h3><ul>{settings}</ul><h3>Not run here</h3><ul>{not_run}</ul>")


def masking_section(tables_dir: Path) -> str:
    """The gradient-masking checks (reglens.worstcase) per cell: how many cells each check flags, and
    every flagged cell with what was found."""
    path = Path(tables_dir) / "masking.csv"
    table = read_csv(path) if path.exists() else pd.DataFrame()
    if table.empty:
        return ""
    cells = ["study", "arch", "reg", "seed"]
    table["passed"] = table.passed.astype(bool)
    flagged = table.groupby(cells).passed.all().eq(False)
    counts = table.groupby("check").passed.agg(failed=lambda p: int((~p).sum()), cells="size").reset_index()
    counts.insert(1, "meaning", counts.check.map(worstcase.CHECKS))
    bad = table[~table.passed][cells + ["check", "detail"]]
    return ("<h3>Gradient masking</h3><p class='caption'>Carlini et al.'s (2019) checks on every cell's curves: "
            "accuracy must not rise with the budget or with PGD's steps; must fall near 0 at an eps "
            "covering the pixel range; and neither the black-box Square attack nor one-step FGSM may beat the "
            f"iterative white-box attacks. <b>{int(flagged.sum())} of {len(flagged)} cells</b> fail a check"
            + (": their robustness may be the attack's failure, not the model's strength (marked † on the scorecard "
               "and counted after each robustness finding)." if flagged.any() else ".") + "</p>" + table_html(counts)
            + ("<div class='scroll'>" + table_html(bad) + "</div>" if len(bad) else ""))
