"""Drawing a study's figures: which figures exist, from which files, into one folder (the drawing
itself is in reglens.plots.cell and reglens.plots.study)."""
from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from reglens import analyses  # noqa: F401  (registers the analyses and their figures)
from reglens.io import load_torch, read_csv
from reglens.layout import REGISTRY, cell_path
from reglens.plots.study import (actmax_across_regularizers, agreement, explain_across_regularizers,
                                 features_across_regularizers, learning_study, metric_by_regularizer, per_method,
                                 regions_across_regularizers, roar_study, robustness_study, scorecard, worst_case_study,
                                 shortcut_detection, weights_study)

# mosaics across a study's regularizers: (analysis, output, keep a cell's blob?, drawer, file stem)
ACROSS = [("explain", "maps", lambda blob: True, explain_across_regularizers, "maps"),
          ("shortcut", "maps", lambda blob: True, explain_across_regularizers, "shortcut_maps"),
          ("actmax", "images", lambda blob: True, actmax_across_regularizers, "actmax"),
          ("diagnose", "features", lambda blob: bool(blob["maps"]), features_across_regularizers, "features"),
          ("train", "regions", lambda blob: True, regions_across_regularizers, "regions")]


def cell_figure_sources(shape: dict, cell: dict, root=".") -> list[str]:
    """The files under a cell's folder that its figures are drawn from (of the analyses it runs)."""
    out = []
    for analysis in REGISTRY.values():
        if analysis.applies(shape, cell):
            files = analysis.files(cell, root)
            out += [files[key] for figure in analysis.figures if all(k in files for k in figure.sources)
                    for key in figure.sources]
    return list(dict.fromkeys(out))


def cell_figures(shape: dict, cell: dict, root, out_dir, title: str) -> list[str]:
    """Every per-cell figure whose source files exist, drawn from the cell's saved tables and maps."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for analysis in REGISTRY.values():
        if not analysis.applies(shape, cell):
            continue
        files = analysis.paths(cell, root)
        for figure in analysis.figures:
            if all(key in files and files[key].exists() for key in figure.sources):
                figure.draw(files, out_dir / figure.name, title)
                if (out_dir / figure.name).exists():  # a drawer may have nothing to draw (feature maps of 2-D points)
                    made.append(str(out_dir / figure.name))
    return made


def study_figures(tables_dir, root, shape: dict, out_dir, cells: list[dict], workers: int = 1,
                  svg: bool = True) -> list[str]:
    """Every figure of a study into `out_dir` (written to a temporary folder, then renamed):
    summary figures from results/tables (PNG, and SVG when `svg`), across-regularizer grids and
    per-cell figures from the cells' saved tables and maps (those in `workers` processes). `root`
    holds results/; `shape` is layout.shape(config)."""
    fmt = ("png", "svg") if svg else ("png",)
    tables_dir, out_dir = Path(tables_dir), Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    made = []
    summary = read_csv(tables_dir / "summary.csv")
    tidy = read_csv(tables_dir / "metrics.csv")
    present = set(summary.metric)
    card = read_csv(tables_dir / "scorecard.csv")
    if len(card):
        made += scorecard(card, tmp / "scorecard", formats=fmt)
    agree = read_csv(tables_dir / "agreement.csv")
    if agree.defined.astype(bool).any():
        made += agreement(agree[agree.defined.astype(bool)], tmp / "agreement", formats=fmt)
    labels = {"test_acc": "test accuracy", "train_seconds": "training time (s)",
              "gap_final": "generalization gap (test - train loss, last epoch)",
              "weights_sparsity": "share of weights below 1e-3 x the layer's max", "ece": "expected calibration error",
              "nll": "negative log-likelihood", "boundary_distance_adversarial": "distance to boundary (adversarial planes)",
              "tv_isotropic_random": "boundary TV per pixel (random planes)",
              "tv_isotropic_adversarial": "boundary TV per pixel (adversarial planes)",
              "method_agreement_mean": "mean Spearman agreement between methods",
              "saliency_mprt_all_layers": "saliency vs fully randomized model (Spearman)",
              "dissect_unique_concepts": "unique concepts detected (one label per unit)",
              "dissect_unique_concepts_per_category": "unique concepts detected (per category, summed)",
              "dissect_detector_fraction": "fraction of units that are concept detectors",
              "embedding_knn_acc": "kNN accuracy in the t-SNE map of the penultimate layer",
              "embedding_trustworthiness": "trustworthiness of the t-SNE map",
              "dissect_interpretability_score": "interpretability score (unique concepts summed over layers)",
              "shortcut_reliance": "shortcut reliance (clean - flipped accuracy)",
              "dissect_group_agreement": "filters of a group sharing its concept (share)",
              "net2vec_embedding_iou": "Net2Vec embedding IoU (held-out Broden)",
              "net2vec_best_unit_iou": "best single unit's IoU (held-out Broden)",
              "net2vec_units_to_reach": "units for 90% of the embedding's IoU",
              "net2vec_entropy": "entropy of the embedding's |weights| (nats)"}
    for metric, label in labels.items():
        if metric in present:
            made += metric_by_regularizer(tidy, summary, metric, tmp / metric, label, formats=fmt)
    for prefix, label in (("roar_score_", "ROAR score (area vs random)"), ("kar_score_", "KAR score (area vs random)"),
                          ("road_score_", "ROAD score (LeRF - MoRF area)"),
                          ("shortcut_mass_", "attribution mass inside the mark"),
                          ("shortcut_pointing_", "pointing game: max inside the mark")):
        made += per_method(tidy, summary, lambda m, p=prefix: m.removeprefix(p) if m.startswith(p) else None,
                           tmp / prefix.rstrip("_"), label, formats=fmt)
    for suffix, label in (("_gini", "Gini index of |map| (sparseness)"), ("_entropy", "entropy of |map| (nats)"),
                          ("_mprt_all_layers", "Spearman vs fully randomized model")):
        made += per_method(tidy, summary, lambda m, s=suffix: m.removesuffix(s) if m.endswith(s) else None,
                           tmp / suffix.strip("_"), label, formats=fmt)
    made += per_method(tidy, summary, lambda m: m.removeprefix("dissect_unique_concepts@")
                       if m.startswith("dissect_unique_concepts@") else None,
                       tmp / "dissect_by_layer", "unique concepts (one label per unit)", formats=fmt)
    made += per_method(tidy, summary, lambda m: f"k={m.removeprefix('lesion_concentration@')}"
                       if m.startswith("lesion_concentration@") else None,
                       tmp / "lesion_concentration", "accuracy drop: top-k units minus k random units", formats=fmt)
    made += per_method(tidy, summary, lambda m: m.removeprefix("dissect_group_agreement@")
                       if m.startswith("dissect_group_agreement@") else None,
                       tmp / "dissect_group_agreement_by_layer", "group concept agreement", formats=fmt)
    for table, draw, stem in (("roar_curves", roar_study, "roar_curves"), ("attacks", robustness_study, "robustness_curves"),
                              ("worst_case", worst_case_study, "worst_case_curves"),
                              ("history", learning_study, "learning_curves"), ("weight_hist", weights_study, "weights")):
        stacked = read_csv(tables_dir / f"{table}.csv")
        if len(stacked):
            made += draw(stacked, tmp / stem, formats=fmt)
    made += shortcut_detection(tidy, tmp / "shortcut_detection", formats=fmt)
    frame = pd.DataFrame(cells)
    for (study, arch), group in frame.groupby(["study", "arch"]):
        seed = group.seed.min()
        first = {cell["reg"]: cell for cell in group.to_dict("records") if cell["seed"] == seed}
        regs = sorted(first, key=lambda r: (r != "none", r))
        for analysis, key, load, across, stem in ACROSS:
            blobs = {}
            for reg in regs:
                path = REGISTRY[analysis].paths(first[reg], root).get(key)
                if REGISTRY[analysis].applies(shape, first[reg]) and path is not None and path.is_file():
                    blobs[reg] = load_torch(path)
            blobs = {reg: blob for reg, blob in blobs.items() if load(blob)}
            if blobs:
                made += across(blobs, tmp / f"{stem}_{study}_{arch}", formats=fmt)
    jobs = [(shape, cell, root, tmp / "cells" / cell_path(cell), f"{cell['arch']} / {cell['reg']} / seed {cell['seed']}")
            for cell in cells]
    if workers > 1 and len(jobs) > 1 and "fork" in multiprocessing.get_all_start_methods():
        # fork: the children need no importable __main__ (a Snakemake script has none to re-run)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            made += [path for paths in pool.map(cell_figures, *zip(*jobs)) for path in paths]
    else:
        made += [path for job in jobs for path in cell_figures(*job)]
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return [m.replace(str(tmp), str(out_dir), 1) for m in made]
