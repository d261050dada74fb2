"""Figures, drawn only from tables (CSV/JSON) and saved maps, never from models."""
from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from reglens.io import atomic_path, load_torch, read_csv, read_json  # noqa: E402


def save(fig, path) -> None:
    fmt = str(path).rsplit(".", 1)[-1]
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
    plt.close(fig)


def attack_curves(attacks: pd.DataFrame, path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for (attack, steps), group in attacks.groupby(["attack", "steps"]):
        label = attack.upper() if attack == "fgsm" else f"PGD-{steps}"
        ax.plot(group.eps, group.accuracy, marker="o", label=label)
    ax.set(xlabel=f"eps ({attacks.norm.iloc[0]}, pixel units)", ylabel="accuracy", ylim=(0, 1.02), title=title)
    ax.legend()
    save(fig, path)


def boundary_maps(maps, rows: pd.DataFrame, span: float, path, title: str = "") -> None:
    n = len(rows)
    cols = 2
    fig, axes = plt.subplots((n + 1) // cols, cols, figsize=(2.6 * cols, 2.4 * ((n + 1) // cols)), squeeze=False)
    for ax, (i, row) in zip(axes.flat, rows.iterrows()):
        ax.imshow(maps[i].numpy().T, origin="lower", cmap="tab10", vmin=0, vmax=9,
                  extent=(-span, span, -span, span), interpolation="nearest")
        ax.plot(0, 0, "k+")
        ax.set_title(f"img {row.image} ({row.plane}) TV {row.tv_isotropic_per_pixel:.3f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    save(fig, path)


def reliability(table: pd.DataFrame, summary: dict, path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(3.8, 3.8))
    width = table.upper - table.lower
    ax.bar(table.lower, table.accuracy.fillna(0), width=width, align="edge", edgecolor="k", alpha=0.7,
           label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"{title} ECE {summary['ece']:.3f}")
    ax.legend(fontsize=7)
    save(fig, path)


def spectrum(table: pd.DataFrame, path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for layer, group in table.groupby("layer", sort=False):
        ax.plot(group["index"], group.sigma, label=layer)
    ax.set(xlabel="index", ylabel="singular value", yscale="log", title=title)
    ax.legend(fontsize=6)
    save(fig, path)


def pca(table: pd.DataFrame, path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(4, 4))
    points = ax.scatter(table.pc1, table.pc2, c=table.label, cmap="tab10", s=5)
    ax.set(xlabel=f"PC1 ({table.explained_pc1.iloc[0]:.0%})", ylabel=f"PC2 ({table.explained_pc2.iloc[0]:.0%})",
           title=title)
    fig.colorbar(points, ax=ax, label="class")
    save(fig, path)


def _image_tile(image) -> np.ndarray:
    """(C, H, W) pixels in [0, 1] -> (H, W, 3) RGB (grayscale repeated)."""
    array = np.asarray(image, dtype=float).transpose(1, 2, 0).clip(0, 1)
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def _map_tile(saliency, cmap=plt.get_cmap("inferno")) -> np.ndarray:
    """(H, W) non-negative map -> (H, W, 3) RGB on its own colour scale (0 to its maximum)."""
    array = np.asarray(saliency, dtype=float)
    top = array.max()
    return cmap(array / top if top > 0 else array)[..., :3]


def mosaic(tiles: list[list[np.ndarray]], path, row_labels=(), col_labels=(), title: str = "",
           cell_inches: float = 0.9) -> None:
    """A grid of equally sized RGB tiles drawn as one image (one axes, however many tiles), with row
    and column labels: far faster than an axes per tile."""
    rows, cols = len(tiles), max(len(r) for r in tiles)
    h, w = tiles[0][0].shape[:2]
    gap = max(1, h // 8)
    canvas = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, 3))
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tile
    fig, ax = plt.subplots(figsize=(cell_inches * cols + (1.0 if row_labels else 0.2), cell_inches * rows + 0.6))
    ax.imshow(canvas, interpolation="nearest")
    ax.grid(False)
    ax.set_xticks([(w + gap) * j + w / 2 for j in range(len(col_labels))], list(col_labels), fontsize=6)
    ax.xaxis.tick_top()
    ax.set_yticks([(h + gap) * i + h / 2 for i in range(len(row_labels))], list(row_labels), fontsize=6)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=8, pad=14)
    save(fig, path)


def attribution_grid(maps: dict, path, title: str = "") -> None:
    """Rows: the fixed test images; columns: the image, then each method's |map| (own colour scale)."""
    images, methods, grid = maps["images"], maps["methods"], maps["maps"]
    tiles = [[_image_tile(images[i])] + [_map_tile(grid[j, i]) for j in range(len(methods))]
             for i in range(len(images))]
    labels = [f"y={int(maps['labels'][i])} p={int(maps['predicted'][i])}" for i in range(len(images))]
    mosaic(tiles, path, labels, ["image", *[m.replace("_", "\n") for m in methods]], title)


def actmax_grid(blob: dict, path, title: str = "") -> None:
    """Every maximized unit and class logit, ten per row, labelled layer:unit."""
    images, layers, units = blob["images"], blob["layers"], blob["units"]
    names = [f"{layer.removeprefix('body.')}:{unit}" for layer, unit in zip(layers, units)]
    cols = min(10, len(images))
    tiles = [[_image_tile(images[k]) for k in range(start, min(start + cols, len(images)))]
             for start in range(0, len(images), cols)]
    blank = np.ones_like(tiles[0][0])
    tiles[-1] += [blank] * (cols - len(tiles[-1]))
    rows = [" ".join(names[start:start + cols][:1]) + " …" for start in range(0, len(images), cols)]
    mosaic(tiles, path, rows, [], f"{title}\n" + ", ".join(names), cell_inches=0.8)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of a boolean mask that touch its outside (4-neighbourhood)."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def dissection_units(shown: list[dict], path, title: str = "") -> None:
    """Each best unit's top-activating Broden images: the unit's thresholded area shaded red, the
    outline of its concept's mask in cyan."""
    if not shown:
        return
    tiles = []
    for s in shown:
        row = []
        for c in range(len(s["images"])):
            tile = s["images"][c].permute(1, 2, 0).numpy().astype(float) / 255
            unit = s["unit_masks"][c].numpy().astype(bool)
            tile[unit] = 0.55 * tile[unit] + 0.45 * np.array([1.0, 0.0, 0.0])
            tile[_outline(s["concept_masks"][c].numpy().astype(bool))] = (0.0, 1.0, 1.0)
            row.append(tile)
        tiles.append(row)
    labels = [f"{s['layer'].removeprefix('body.')}:{s['unit']} {s['concept']} ({s['category']}) IoU {s['iou']:.2f}"
              for s in shown]
    mosaic(tiles, path, labels, [], title, cell_inches=1.0)


def _method_colors(methods) -> dict:
    palette = plt.get_cmap("tab10")
    others = [m for m in sorted(methods) if m != "random"]
    return {"random": "k", **{m: palette(i % 10) for i, m in enumerate(others)}}


def roar_curves(curves: pd.DataFrame, leakage: pd.DataFrame | None, path, title: str = "") -> None:
    """Per mode: each method's mean over the runs that fitted (line; random dashed), every run as a
    point (an x for a run that did not fit); and the leakage control: the learner on the mask alone."""
    modes = sorted(curves["mode"].unique())
    panels = len(modes) + (leakage is not None and len(leakage) > 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
    colors = _method_colors(curves.method.unique())
    jitter = {m: 0.012 * (i - len(colors) / 2) for i, m in enumerate(sorted(colors))}
    for ax, mode in zip(axes.flat, modes):
        d = curves[curves["mode"] == mode]
        for method, g in d.groupby("method"):
            fitted = g[g.fitted.astype(bool)]
            mean = fitted.groupby("fraction").test_acc.mean()
            ax.plot(mean.index, mean.values, color=colors[method], ls="--" if method == "random" else "-",
                    label=method, lw=1.2)
            ax.scatter(fitted.fraction + jitter[method], fitted.test_acc, color=colors[method], s=9, alpha=0.7)
            bad = g[~g.fitted.astype(bool)]
            if len(bad):
                ax.scatter(bad.fraction + jitter[method], bad.test_acc, color=colors[method], marker="x", s=25,
                           label=f"{method}: did not fit")
        ax.set(xlabel="fraction of pixels " + ("removed" if mode == "roar" else "kept"),
               ylabel="retrained test accuracy", title=f"{title} {mode.upper()}", ylim=(0, 1.02))
        ax.legend(fontsize=6)
    if panels > len(modes):
        ax = axes.flat[-1]
        for method, g in leakage.groupby("method"):
            ax.plot(g.fraction, g.leakage_acc, color=colors.get(method, "gray"), marker="o", ms=3, ls=":", label=method)
        ax.set(xlabel="fraction of pixels removed", ylabel="accuracy from the mask alone",
               title="leakage control", ylim=(0, 1.02))
        ax.legend(fontsize=6)
    save(fig, path)


def road_curves(curves: pd.DataFrame, path, title: str = "") -> None:
    """ROAD: the model's accuracy with the most (MoRF, solid) or least (LeRF, dotted) relevant pixels imputed."""
    colors = _method_colors(curves.method.unique())
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for (method, order), g in curves.groupby(["method", "order"]):
        ax.plot(g.fraction, g.accuracy, color=colors[method], ls="-" if order == "morf" else ":", marker="o", ms=3,
                label=f"{method} {order.upper()}")
    ax.set(xlabel="fraction of pixels imputed", ylabel="test accuracy (own model)", ylim=(0, 1.02),
           title=f"{title} ROAD")
    ax.legend(fontsize=5, ncol=2)
    save(fig, path)


# ---------------------------------------------------------------- study figures (from results/tables)

def _seaborn():
    sns.set_theme(style="whitegrid", context="paper")
    return sns


def save_both(fig, stem) -> list[str]:
    """PNG and SVG of one figure."""
    paths = [f"{stem}.png", f"{stem}.svg"]
    for path in paths:
        fmt = path.rsplit(".", 1)[-1]
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def metric_by_regularizer(summary: pd.DataFrame, metric: str, stem, ylabel: str | None = None) -> list[str]:
    """Mean over seeds with its 95% confidence interval, one panel per study, bars per architecture."""
    sns = _seaborn()
    data = summary[summary.metric == metric]
    studies = sorted(data.study.unique())
    fig, axes = plt.subplots(1, len(studies), figsize=(max(4, 0.9 * data.reg.nunique() + 2) * len(studies), 3.4),
                             squeeze=False)
    for ax, study in zip(axes.flat, studies):
        d = data[data.study == study]
        order = sorted(d.reg.unique(), key=lambda r: (r != "none", r))
        archs = sorted(d.arch.unique())
        sns.barplot(d, x="reg", y="mean", hue="arch", order=order, hue_order=archs, ax=ax, errorbar=None)
        width = 0.8 / len(archs)
        for j, arch in enumerate(archs):
            da = d[d.arch == arch].set_index("reg").reindex(order)
            xs = [i - 0.4 + width * (j + 0.5) for i in range(len(order))]
            err = [(da["mean"] - da.ci_low).fillna(0).clip(lower=0), (da.ci_high - da["mean"]).fillna(0).clip(lower=0)]
            ax.errorbar(xs, da["mean"], yerr=err, fmt="none", ecolor="k", capsize=2, lw=0.8)
        ax.set(xlabel="", ylabel=ylabel or metric, title=study)
        ax.tick_params(axis="x", rotation=40)
    return save_both(fig, stem)


def per_method(summary: pd.DataFrame, method_of, stem, ylabel: str) -> list[str]:
    """One explainability measure for every attribution method: bars per regularizer, one panel per
    study x architecture. `method_of(metric)` returns the method name, or None for other metrics."""
    sns = _seaborn()
    d = summary.assign(method=summary.metric.map(method_of)).dropna(subset=["method"])
    d = d[d.method != "random"] if d.method.nunique() > 1 else d
    if d.empty:
        return []
    d = d.assign(panel=d.study + " / " + d.arch)
    order = sorted(d.reg.unique(), key=lambda r: (r != "none", r))
    g = sns.catplot(d, x="method", y="mean", hue="reg", hue_order=order, col="panel", kind="bar",
                    errorbar=None, height=3.2, aspect=max(1.2, 0.25 * d.method.nunique() * len(order) / 3))
    g.set_axis_labels("", ylabel)
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=40)
    return save_both(g.figure, stem)


def roar_study(curves: pd.DataFrame, stem) -> list[str]:
    """ROAR / KAR per study and learner: one panel per mode x method, a line per base regularizer (mean
    over base seeds and retrain seeds that fitted, 95% interval), the random baseline in each panel."""
    sns = _seaborn()
    d = curves[curves.fitted.astype(bool)].assign(panel=lambda f: f["mode"].str.upper() + " | " + f.method)
    if d.empty:  # no retrain fitted: nothing to average (the per-cell figures show every run)
        return []
    g = sns.relplot(d, x="fraction", y="test_acc", hue="reg", col="panel", row="study", kind="line", marker="o",
                    errorbar=("ci", 95), height=2.6, aspect=1.1, facet_kws={"sharey": True})
    g.set_axis_labels("fraction removed (ROAR) / kept (KAR)", "retrained test accuracy")
    g.set_titles("{row_name} | {col_name}")
    g.set(ylim=(0, 1.02))
    return save_both(g.figure, stem)


def robustness_study(attacks: pd.DataFrame, stem) -> list[str]:
    sns = _seaborn()
    steps = attacks[attacks.attack == "pgd"].steps.max()
    d = attacks[(attacks.attack == "fgsm") | (attacks.steps == steps)]
    d = d.assign(attack=d.attack.where(d.attack == "fgsm", f"pgd-{steps}").str.upper())
    g = sns.relplot(d, x="eps", y="accuracy", hue="reg", col="arch", row="attack", kind="line", marker="o",
                    errorbar=("ci", 95), height=2.8, aspect=1.1)
    g.set_axis_labels(f"eps ({d.norm.iloc[0]}, pixel units)", "accuracy")
    g.set_titles("{row_name} | {col_name}")
    return save_both(g.figure, stem)


def explain_across_regularizers(maps_by_reg: dict, stem, image: int = 0) -> list[str]:
    """One test image: rows = regularizers, columns = the image and each method's map."""
    regs = list(maps_by_reg)
    methods = maps_by_reg[regs[0]]["methods"]
    tiles = [[_image_tile(maps_by_reg[r]["images"][image])]
             + [_map_tile(maps_by_reg[r]["maps"][j, image]) for j in range(len(methods))] for r in regs]
    return mosaic_both(tiles, stem, regs, ["image", *[m.replace("_", "\n") for m in methods]])


def actmax_across_regularizers(blobs: dict, stem) -> list[str]:
    """Class-logit maximization images: rows = regularizers, columns = classes."""
    regs = list(blobs)
    logits = [k for k, layer in enumerate(blobs[regs[0]]["layers"]) if layer == "logit"]
    tiles = [[_image_tile(blobs[r]["images"][k]) for k in logits] for r in regs]
    return mosaic_both(tiles, stem, regs, [f"class {blobs[regs[0]]['units'][k]}" for k in logits])


def mosaic_both(tiles, stem, row_labels, col_labels) -> list[str]:
    """A mosaic as PNG and SVG."""
    paths = [f"{stem}.png", f"{stem}.svg"]
    for path in paths:
        mosaic(tiles, path, row_labels, col_labels)
    return paths


def _boundary_figure(cell, path, title):
    maps = load_torch(cell / "robustness" / "boundary_maps.pt")
    boundary_maps(maps["maps"], read_csv(cell / "robustness" / "boundary.csv"), maps["span"], path, title)


# per-cell figure -> (the stage whose outputs it draws, those files under the cell folder, drawer)
CELL_FIGURES = {
    "attack_curves.png": ("robustness", ["robustness/attacks.csv"],
                          lambda c, p, t: attack_curves(read_csv(c / "robustness/attacks.csv"), p, t)),
    "boundaries.png": ("robustness", ["robustness/boundary_maps.pt", "robustness/boundary.csv"], _boundary_figure),
    "reliability.png": ("robustness", ["robustness/reliability.csv", "robustness/calibration.json"],
                        lambda c, p, t: reliability(read_csv(c / "robustness/reliability.csv"),
                                                    read_json(c / "robustness/calibration.json"), p, t)),
    "spectrum.png": ("robustness", ["robustness/spectrum.csv"],
                     lambda c, p, t: spectrum(read_csv(c / "robustness/spectrum.csv"), p, t)),
    "pca.png": ("robustness", ["robustness/pca.csv"], lambda c, p, t: pca(read_csv(c / "robustness/pca.csv"), p, t)),
    "maps.png": ("explain", ["explain/maps.pt"], lambda c, p, t: attribution_grid(load_torch(c / "explain/maps.pt"), p, t)),
    "actmax.png": ("explain", ["explain/actmax.pt"], lambda c, p, t: actmax_grid(load_torch(c / "explain/actmax.pt"), p, t)),
    "dissection.png": ("dissect", ["dissect/top.pt"],
                       lambda c, p, t: dissection_units(load_torch(c / "dissect/top.pt"), p, t)),
    "roar_curves.png": ("roar", ["roar/curves.csv", "roar/leakage.csv"],
                        lambda c, p, t: roar_curves(read_csv(c / "roar/curves.csv"), read_csv(c / "roar/leakage.csv"), p, t)),
    "road.png": ("road", ["road/curves.csv"], lambda c, p, t: road_curves(read_csv(c / "road/curves.csv"), p, t)),
}


def cell_figure_sources(stages) -> list[str]:
    """The files under a cell folder that its figures are drawn from, for the given stages."""
    return [source for stage, sources, _ in CELL_FIGURES.values() if stage in stages for source in sources]


def cell_figures(cell_dir, out_dir, title: str) -> list[str]:
    """Every per-cell figure whose source files exist, drawn from the cell's saved tables and maps."""
    cell_dir, out_dir = Path(cell_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name, (_, sources, draw) in CELL_FIGURES.items():
        if all((cell_dir / source).exists() for source in sources):
            draw(cell_dir, out_dir / name, title)
            made.append(str(out_dir / name))
    return made


def study_figures(tables_dir, results_root, out_dir, cells: list[dict], workers: int = 1) -> list[str]:
    """Every figure of a study into `out_dir` (written to a temporary folder, then renamed):
    summary figures from results/tables, across-regularizer grids and per-cell figures from the
    cells' saved tables and maps (those in `workers` processes)."""
    tables_dir, results_root, out_dir = Path(tables_dir), Path(results_root), Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    made = []
    summary = read_csv(tables_dir / "summary.csv")
    present = set(summary.metric)
    labels = {"test_acc": "test accuracy", "ece": "expected calibration error",
              "tv_isotropic_random": "boundary TV per pixel (random planes)",
              "tv_isotropic_adversarial": "boundary TV per pixel (adversarial planes)",
              "method_agreement_mean": "mean Spearman agreement between methods",
              "saliency_mprt_all_layers": "saliency vs fully randomized model (Spearman)",
              "dissect_unique_concepts": "unique concepts detected (one label per unit)",
              "dissect_unique_concepts_per_category": "unique concepts detected (per category, summed)",
              "dissect_detector_fraction": "fraction of units that are concept detectors"}
    for metric, label in labels.items():
        if metric in present:
            made += metric_by_regularizer(summary, metric, tmp / metric, label)
    for prefix, label in (("roar_score_", "ROAR score (area vs random)"), ("kar_score_", "KAR score (area vs random)"),
                          ("road_score_", "ROAD score (LeRF - MoRF area)")):
        made += per_method(summary, lambda m, p=prefix: m.removeprefix(p) if m.startswith(p) else None,
                           tmp / prefix.rstrip("_"), label)
    for suffix, label in (("_gini", "Gini index of |map| (sparseness)"), ("_entropy", "entropy of |map| (nats)"),
                          ("_mprt_all_layers", "Spearman vs fully randomized model")):
        made += per_method(summary, lambda m, s=suffix: m.removesuffix(s) if m.endswith(s) else None,
                           tmp / suffix.strip("_"), label)
    made += per_method(summary, lambda m: m.removeprefix("dissect_unique_concepts@")
                       if m.startswith("dissect_unique_concepts@") else None,
                       tmp / "dissect_by_layer", "unique concepts (one label per unit)")
    curves = read_csv(tables_dir / "roar_curves.csv")
    if len(curves):
        made += roar_study(curves, tmp / "roar_curves")
    attacks = read_csv(tables_dir / "attacks.csv")
    if len(attacks):
        made += robustness_study(attacks, tmp / "robustness_curves")
    frame = pd.DataFrame(cells)
    for (study, arch), group in frame.groupby(["study", "arch"]):
        seed = group.seed.min()
        regs = sorted(group.reg.unique(), key=lambda r: (r != "none", r))
        folders = {reg: results_root / study / arch / reg / f"seed{seed}" / "explain" for reg in regs}
        maps = {r: load_torch(f / "maps.pt") for r, f in folders.items() if (f / "maps.pt").exists()}
        if maps:
            made += explain_across_regularizers(maps, tmp / f"maps_{study}_{arch}")
        acts = {r: load_torch(f / "actmax.pt") for r, f in folders.items() if (f / "actmax.pt").exists()}
        if acts:
            made += actmax_across_regularizers(acts, tmp / f"actmax_{study}_{arch}")
    jobs = []
    for cell in cells:
        rel = Path(cell["study"]) / cell["arch"] / cell["reg"] / f"seed{cell['seed']}"
        jobs.append((results_root / rel, tmp / "cells" / rel, f"{cell['arch']} / {cell['reg']} / seed {cell['seed']}"))
    if workers > 1 and len(jobs) > 1 and "fork" in multiprocessing.get_all_start_methods():
        # fork: the children need no importable __main__ (a Snakemake script has none to re-run)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            made += [path for paths in pool.map(cell_figures, *zip(*jobs)) for path in paths]
    else:
        made += [path for job in jobs for path in cell_figures(*job)]
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return [m.replace(str(tmp), str(out_dir), 1) for m in made]
