"""README sections regenerated from results/tables (`python -m reglens readme`): every number and
sentence about results between `<!-- generated:NAME -->` and `<!-- end:NAME -->` comes from the
tables of a run, with its number of seeds and an interval, never typed by hand."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from reglens import replication, report, stats
from reglens.io import atomic_path, read_csv
from reglens.layout import cell_path, seed_folder


def describe(values, digits: int = 3) -> str:
    """Finite values as text: each value (a / b) when fewer than 3, else the mean and its percentile
    bootstrap 95% interval, which stays inside the values' range."""
    v = [float(x) for x in values if np.isfinite(x)]
    if not v:
        return "–"
    if len(v) < stats.MIN_SEEDS_FOR_INTERVAL:
        return " / ".join(f"{x:.{digits}f}" for x in v)
    lo, hi = stats.bootstrap_interval(v)
    return f"{np.mean(v):.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


HEADLINE = [("test_acc", "test acc"), ("fgsm_linf_acc@0.1", "FGSM acc ε=0.1"), ("pgd10_linf_acc@0.1", "PGD-10 acc ε=0.1"),
            ("ece", "ECE"), ("tv_isotropic_random", "boundary TV (random planes)"), ("saliency_gini", "saliency Gini"),
            ("saliency_mprt_all_layers", "saliency vs randomized model"), ("method_agreement_mean", "method agreement"),
            ("road_score_saliency", "ROAD saliency"), ("road_score_integrated_gradients", "ROAD IG")]


def headline(tidy: pd.DataFrame, columns=HEADLINE) -> str:
    """Per study, architecture and regularizer: each measure over seeds (`describe`, seeds in order);
    measures a study does not have are left out of its rows (–)."""
    present = [(m, t) for m, t in columns if m in set(tidy.metric)]
    lines = ["| study / arch | reg | seeds | " + " | ".join(t for _, t in present) + " |",
             "|---" * (len(present) + 3) + "|"]
    for (study, arch), group in tidy.groupby(["study", "arch"]):
        for reg in sorted(group.reg.unique(), key=lambda r: (r != "none", r)):
            rows = group[group.reg == reg]
            cells = [describe(rows[rows.metric == metric].sort_values("seed").value) for metric, _ in present]
            lines.append(f"| {study} / {arch} | {reg} | {rows.seed.nunique()} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def roar(curves: pd.DataFrame, leakage: pd.DataFrame, detector: pd.DataFrame | None = None) -> str:
    """The ROAR table (accuracy of the retrained learner per base cell, method and fraction: mean
    over the runs that fitted (`describe`), runs that did not fit counted; at 50 % the leakage
    controls: the mask alone, the detector's pixel accuracy and the learner on the masks it
    recovered) and sentences drawn from it."""
    if curves.empty:
        return "_No ROAR run in these tables._"
    mode = "roar" if "roar" in set(curves["mode"]) else curves["mode"].iloc[0]
    d = curves[curves["mode"] == mode]
    fractions = sorted(f for f in d.fraction.unique() if f > 0)
    bases = d[["reg", "seed"]].drop_duplicates().sort_values(["reg", "seed"])
    found = pd.DataFrame() if detector is None or detector.empty else detector[detector["mode"] == mode]
    extra = ["leakage (mask only, 0.5)"] + (["removed pixels found (0.5; majority rate)",
                                             "leakage (masks found, 0.5)"] if len(found) else [])
    header = "| base cell | method | " + " | ".join(f"{f:g} removed" for f in fractions) + " | " + " | ".join(extra) + " |"
    lines = [header, "|---" * (len(fractions) + 2 + len(extra)) + "|"]
    unfitted = int((~d[d.fraction > 0].fitted.astype(bool)).sum())
    for reg, seed in bases.itertuples(index=False):
        for method in sorted(d.method.unique(), key=lambda m: (m != "random", m)):
            g = d[(d.reg == reg) & (d.seed == seed) & (d.method == method)]
            cells = []
            for f in fractions:
                runs = g[g.fraction == f]
                fitted = runs[runs.fitted.astype(bool)].sort_values("retrain_seed").test_acc
                status = ", ".join(sorted(set(runs.status) - {"fitted"})) if "status" in runs else ""
                cells.append(describe(fitted) + (f" ({status})" if status else ""))
            leak = leakage[(leakage.reg == reg) & (leakage.seed == seed) & (leakage.method == method)
                           & np.isclose(leakage.fraction, 0.5)]
            cells.append(f"{leak.leakage_acc.mean():.3f}" if len(leak) else "–")
            if len(found):
                hit = found[(found.reg == reg) & (found.seed == seed) & (found.method == method)
                            & np.isclose(found.fraction, 0.5)]
                cells.append(f"{hit.detector_acc.mean():.3f} ({hit.detector_base.mean():.3f})" if len(hit) else "–")
                ok = hit[hit.fitted.astype(bool)]
                cells.append(f"{ok.recovered_leakage_acc.mean():.3f}" if len(ok) else
                             ("did not fit" if len(hit) else "–"))
            lines.append(f"| {reg}/{seed_folder(seed)} | {method} | " + " | ".join(cells) + " |")
    runs_per_point = int(d[d.fraction > 0].groupby(["reg", "seed", "method", "fraction"]).size().max())
    mean_at = d[d.fitted.astype(bool) & (d.fraction == 0.5)].groupby("method").test_acc.mean()
    best = mean_at.drop("random", errors="ignore").idxmin() if len(mean_at) > 1 else None
    total = int((d.fraction > 0).sum())
    text = [f"Accuracy of the retrained learner on the ablated test set ({mode.upper()}) per base cell, over "
            f"{runs_per_point} retrain seeds: each seed's value (a / b) with fewer than 3, else the mean [percentile "
            f"bootstrap 95% interval]. {unfitted} of {total} retrains did not "
            "fit (training accuracy below the floor with content left to fit); `no_content` marks points where the "
            "kept pixels were identical in every training image, so chance accuracy is the measurement."]
    if best is not None and "random" in mean_at:
        base_seeds = int(bases.groupby("reg").seed.nunique().max())
        text.append(f"At 50% removal, {best} leaves the learner the least ({mean_at[best]:.3f}, mean over base cells) "
                    f"against {mean_at['random']:.3f} for random removal.")
        if base_seeds < 3:
            text.append(f"With {base_seeds} base seed(s) per regularizer, a difference between base cells cannot be "
                        "told from base-seed variation: these numbers do not support a claim that a regularizer "
                        "changes faithfulness.")
    if len(found):
        at = found[np.isclose(found.fraction, 0.5)]
        text.append("Leakage controls at 50% removal: the learner on the removal mask alone, and a detector trained "
                    "to find removed pixels in the filled images (pixel accuracy, the majority rate a constant guess "
                    "reaches in brackets) whose recovered masks feed the same learner.")
        at = at[at.detector_status == "fitted"]
        if len(at):
            margin = float((at.detector_acc - at.detector_base).min())
            text.append(f"The detector's pixel accuracy is {at.detector_acc.min():.3f}–{at.detector_acc.max():.3f} "
                        f"against majority rates of {at.detector_base.min():.3f}–{at.detector_base.max():.3f}"
                        + (": every set of filled images reveals where pixels were removed; the learner on the "
                           "recovered masks says how much of the class that carries." if margin > 0.05 else
                           f" (the smallest margin {margin:+.3f})."))
        detectors = int((found.detector_status != "fitted").sum())
        learners = int((~found.fitted.astype(bool)).sum()) - detectors
        if learners or detectors:
            text.append(f"Left out and counted, over all fractions: {learners} of {len(found) - detectors} learners on "
                        f"recovered masks that did not fit, {detectors} of {len(found)} detectors that did not fit.")
        text.append("A recovered mask is a function of the whole filled image, so image content can reach it "
                    "through the detector's errors: random removal's row, whose true masks carry no class, is the "
                    "reference for this column, not chance.")
    return "\n".join(lines) + "\n\n" + " ".join(text)


QUALITY = [("integrated_gradients_completeness_median", "IG completeness error, median"),
           ("integrated_gradients_completeness_max", "IG completeness error, max"),
           ("integrated_gradients_steps_mean", "IG steps, mean"),
           ("saliency_mprt_all_layers_sd", "saliency MPRT sd over randomization seeds"),
           ("saliency_mprt_independent", "saliency MPRT, independent"),
           ("actmax_ratio_median", "actmax / data max, median"), ("actmax_ratio_min", "actmax / data max, least"),
           ("actmax_saturation", "actmax saturated pixels"),
           ("boundary_fraction_random", "planes with a boundary"), ("boundary_distance_random", "distance to boundary")]


def quality(tidy: pd.DataFrame) -> str:
    """How well each measurement converged, per regularizer (`describe` over seeds), and a
    sentence on the worst case."""
    sentences = []
    ig = tidy[tidy.metric == "integrated_gradients_completeness_median"].value
    worst = tidy[tidy.metric == "integrated_gradients_completeness_max"].value
    above = tidy[tidy.metric == "integrated_gradients_completeness_above_tolerance"].value
    capped = tidy[tidy.metric == "integrated_gradients_steps_max"].value
    if len(ig):
        sentences.append(f"Integrated Gradients (adaptive steps) reached a median completeness error of "
                         f"{100 * ig.median():.2f}% of |f(x) − f(baseline)| over {len(ig)} cells (worst image in any cell: "
                         f"{100 * worst.max():.2f}%); {100 * above.mean():.1f}% of images stayed above the tolerance, and "
                         f"{int((capped >= capped.max()).sum())} cells needed {int(capped.max())} steps for some image "
                         "(the cap: `explain.options.ig_max_steps`); an image still above the tolerance there is "
                         "counted in `integrated_gradients_completeness_above_tolerance`, not dropped.")
    ratio = tidy[tidy.metric == "actmax_ratio_min"].value
    below = tidy[tidy.metric == "actmax_below_data"].value
    if len(ratio):
        sentences.append(f"Activation maximization exceeded the dataset's maximum for every objective but "
                         f"{int(below.sum())} across {len(ratio)} cells (least ratio {ratio.min():.2f}×).")
    return headline(tidy, QUALITY) + ("\n\n" + " ".join(sentences) if sentences else "")


SHORTCUT = [("shortcut_reliance", "reliance (clean − flipped acc)"), ("shortcut_acc_flipped", "flipped acc"),
            ("shortcut_follow", "follows the mark"), ("test_acc", "clean test acc")]


def shortcut(tidy: pd.DataFrame, detection: pd.DataFrame) -> str:
    """The planted-shortcut studies: reliance per regularizer (`describe` over seeds), then per method
    the mass inside the mark and the pointing game against chance, and the correlation with reliance
    across cells, with sentences on what the numbers do and do not support."""
    if detection.empty:
        return "_No planted-shortcut study in these tables._"
    studies = set(detection.study)
    marked = tidy[tidy.study.isin(studies)]
    parts = [headline(marked, SHORTCUT), ""]
    lines = ["| study | method | mass inside mark | pointing game | chance | ρ(mass, reliance) [95%] | "
             "ρ(pointing, reliance) [95%] |", "|---" * 7 + "|"]

    def rho(row) -> str:
        if not row.defined:
            return "undefined"
        if not np.isfinite(row.ci_low):
            return f"{row.rho:+.2f} (no interval)"
        return f"{row.rho:+.2f} [{row.ci_low:+.2f}, {row.ci_high:+.2f}]"

    for (study, method), g in detection.groupby(["study", "method"]):
        by = {r.score: r for r in g.itertuples()}
        mass, point = by.get("mass"), by.get("pointing")
        lines.append(f"| {study} | {method} | {mass.mean:.3f} | {point.mean:.3f} | {mass.chance:.3f} | {rho(mass)} | "
                     f"{rho(point)} |")
    parts.append("\n".join(lines))
    text = []
    for study, g in detection.groupby("study"):
        cells = int(g.n_cells.max())
        masses = g[(g.score == "mass") & (g.method != "random")]
        above = masses[masses["mean"] > masses.chance]
        defined = masses[masses.defined.astype(bool)]
        positive = defined[defined.ci_low > 0]
        seeds = int(marked[marked.study == study].groupby("reg").seed.nunique().max())
        text.append(f"{study}: {len(above)} of {len(masses)} methods put more attribution mass inside the mark than "
                    f"chance ({masses.chance.iloc[0]:.3f}), mean over {cells} cells. Across those cells (regularizers "
                    f"× {seeds} seeds), the mass tracks the cell's reliance with an interval above 0 for "
                    f"{len(positive)} of {len(defined)} methods ({', '.join(positive.method) or 'none'}); "
                    f"{len(masses) - len(defined)} correlations were undefined (counted, not shown as 0).")
        if cells < 10:
            text.append(f"With {cells} cells the intervals are wide: these numbers do not support ranking the "
                        "methods by how well they reveal the shortcut, nor a claim that a regularizer changes "
                        "reliance.")
    return "\n".join(parts) + "\n\n" + " ".join(text)


GROUPS = [("test_acc", "test acc"), ("dissect_unique_concepts", "unique concepts"),
          ("dissect_detector_fraction", "detector fraction"), ("dissect_group_agreement", "group agreement"),
          ("dissect_group_agreement_chance", "chance agreement")]


def _untrained_sentence(cells: pd.DataFrame) -> str:
    if cells.empty:
        return ""
    names = ", ".join(cell_path(r._asdict()) for r in cells.itertuples())
    return (f"{len(cells)} cell(s) did not train (test accuracy within 0.05 of chance: {names}); they are in the "
            "table, flagged here, and left out of these sentences.")


def groups(tidy: pd.DataFrame) -> str:
    """Studies with filter groups: per architecture and regularizer, accuracy, dissection's counts and
    the concept agreement within groups against random groups, with what they do not support."""
    studies = set(tidy[tidy.metric == "dissect_group_agreement"].study)
    if not studies:
        return "_No study with filter groups in these tables._"
    everything = tidy[tidy.study.isin(studies)]
    failed = stats.untrained(everything)
    d = stats.without_cells(everything, failed)
    text = [_untrained_sentence(failed)] if len(failed) else []
    for study, g in d.groupby("study"):
        agree = g[g.metric == "dissect_group_agreement"].groupby("reg").value.mean()
        chance = g[g.metric == "dissect_group_agreement_chance"].groupby("reg").value.mean()
        above = [r for r in agree.index if agree[r] > chance[r]]
        seeds = int(g.groupby(["arch", "reg"]).seed.nunique().min())
        pairs = ", ".join(f"{r} {agree[r]:.3f} vs {chance[r]:.3f}" for r in agree.index)
        text.append(f"{study}: mean group agreement (over architectures and trained seeds) against the chance "
                    f"agreement of random groups: {pairs}; above chance for {len(above)} of {len(agree)} "
                    "regularizers" + (", by less than 0.05 each" if (agree - chance).abs().max() < 0.05 else "") + ".")
        if seeds < 3:
            text.append(f"With {seeds} seed(s) per cell and no interval, these numbers do not support a claim that "
                        "one regularizer makes groups more coherent, and they are not comparable with the source's "
                        "table (other data, other models, a synthetic Broden).")
    return headline(everything, GROUPS) + "\n\n" + " ".join(text)


CONCEPTS = [("net2vec_concepts", "concepts"), ("net2vec_embedding_iou", "embedding IoU"),
            ("net2vec_best_unit_iou", "best unit IoU"), ("net2vec_everywhere_iou", "every-pixel IoU"),
            ("net2vec_beats", "embedding wins"), ("net2vec_units_to_reach", "units for 90%"),
            ("lesion_drop_top@1", "drop, top unit"), ("lesion_drop_random@1", "drop, random unit"),
            ("lesion_drop_top@4", "drop, top 4"), ("lesion_drop_random@4", "drop, random 4")]


def concepts_block(tidy: pd.DataFrame) -> str:
    """Net2Vec and lesions per study, architecture and regularizer, with what they do not support."""
    if not tidy.metric.str.startswith(("net2vec_", "lesion_")).any():
        return "_No Net2Vec or lesion results in these tables._"
    failed = stats.untrained(tidy)
    d = stats.without_cells(tidy[tidy.metric.str.startswith(("net2vec_", "lesion_"))], failed)
    cells = tidy[tidy.study.isin(set(d.study))]
    text = [_untrained_sentence(failed)] if len(failed) else []
    emb = d[d.metric == "net2vec_embedding_iou"].value
    unit = d[d.metric == "net2vec_best_unit_iou"].value
    every = d[d.metric == "net2vec_everywhere_iou"].value
    if len(emb):
        text.append(f"Over {len(emb)} cells, the Net2Vec embeddings reach a mean held-out IoU of {emb.mean():.3f} against "
                    f"{unit.mean():.3f} for the best single unit and {every.mean():.3f} for marking every pixel (a "
                    "frequent concept's embedding must beat that before it says anything).")
    top, rand = d[d.metric == "lesion_drop_top@1"].value, d[d.metric == "lesion_drop_random@1"].value
    if len(top):
        text.append(f"Zeroing a class's most important unit of the last layer lowers its accuracy by {top.mean():.3f} on "
                    f"average over {len(top)} cells, a random unit by {rand.mean():.3f}.")
    seeds = int(cells.groupby(["study", "arch", "reg"]).seed.nunique().max())
    if seeds < 3:
        text.append(f"With {seeds} seeds per cell and a synthetic Broden whose concepts the digit models never saw, "
                    "these numbers do not support a claim that a regularizer makes concepts more distributed or "
                    "decisions more concentrated.")
    return headline(cells[cells.metric.isin([m for m, _ in CONCEPTS])], CONCEPTS) + "\n\n" + " ".join(text)


def finding(tables: Path) -> str:
    """The config's declared comparison, as the report states it (or that none was declared)."""
    rows = read_csv(tables / "headline.csv") if (tables / "headline.csv").exists() else pd.DataFrame()
    if rows.empty:
        return "_No headline comparison was declared in the configuration, or it is not in these tables._"
    row = rows.iloc[0]
    return (report.headline_sentence(row) + " The numbers do not show that it holds beyond this study's data and "
            "architecture, this measure and this attack budget.")


def markdown(frame: pd.DataFrame) -> str:
    """A frame as a Markdown table (floats to 3 significant digits, NaN as –)."""
    def cell(v):
        if isinstance(v, float):
            return "–" if not np.isfinite(v) else f"{v:.3g}"
        return str(v)
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|---" * len(frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def replication_block(rep: pd.DataFrame, curve: pd.DataFrame) -> str:
    """The known results beside this run's (replication.display_tables), with the verdicts tallied."""
    if rep.empty:
        return "_No known result was replicated in these tables (the config's `replicate` is empty)._"
    contrasts, swept = replication.display_tables(rep, curve)
    tally = ", ".join(f"{n} {v}" for v, n in rep.verdict.value_counts().items())
    seeds = sorted(set(rep.n_seeds))
    text = [f"{len(rep)} contrasts over {'/'.join(map(str, seeds))} paired seeds: {tally}. Each is the mean paired "
            "difference with its 95% t-interval; the settings are reglens's small ones, not the papers', so a "
            "direction reproduced here does not reproduce a published number, and a contrast that is not "
            "reproduced here does not refute the paper in its own setting.", "", markdown(contrasts)]
    if len(swept):
        text += ["", "The swept weight (mean over seeds [95% t-interval]; published at the same weight):", "",
                 markdown(swept)]
    return "\n".join(text)


SECTIONS = {"finding": lambda t: finding(Path(t)),
            "headline": lambda t: headline(read_csv(t / "metrics.csv")),
            "concepts": lambda t: concepts_block(read_csv(t / "metrics.csv")),
            "groups": lambda t: groups(read_csv(t / "metrics.csv")),
            "shortcut": lambda t: shortcut(read_csv(t / "metrics.csv"), read_csv(t / "shortcut.csv")),
            "quality": lambda t: quality(read_csv(t / "metrics.csv")),
            "replication": lambda t: replication_block(read_csv(t / "replication.csv"),
                                                       read_csv(t / "replication_curve.csv")),
            "roar": lambda t: roar(read_csv(t / "roar_curves.csv"), read_csv(t / "roar_leakage.csv"),
                                   read_csv(t / "roar_detector.csv") if (t / "roar_detector.csv").exists() else None)}


def regenerate(readme: str | Path, tables: str | Path) -> list[str]:
    """Rewrite every generated block of `readme` from `tables`; returns the names rewritten."""
    readme, tables = Path(readme), Path(tables)
    text = readme.read_text()
    done = []
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- end:{name} -->)", re.S)
        if pattern.search(text):
            block = make(tables)
            text = pattern.sub(lambda m: m.group(1) + block + "\n" + m.group(2), text)
            done.append(name)
    with atomic_path(readme, record=False) as tmp:
        tmp.write_text(text)
    return done
