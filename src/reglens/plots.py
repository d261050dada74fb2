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
from PIL import Image  # noqa: E402

from reglens import data  # noqa: E402

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
    """The reliability diagram, and beside it the distribution of the top-class probability on the
    test set (the same bins' counts: confidence penalty and label smoothing shift it left)."""
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(7.4, 3.6))
    width = table.upper - table.lower
    ax.bar(table.lower, table.accuracy.fillna(0), width=width, align="edge", edgecolor="k", alpha=0.7,
           label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"{title} ECE {summary['ece']:.3f}")
    ax.legend(fontsize=7)
    hist.bar(table.lower, table["count"] / table["count"].sum(), width=width, align="edge", edgecolor="k",
             color="C1", alpha=0.7)
    hist.set(xlabel="top-class probability", ylabel="share of test images", xlim=(0, 1),
             title="predicted-score distribution")
    fig.tight_layout()
    save(fig, path)


def learning_curves(history: pd.DataFrame, path, title: str = "") -> None:
    """Loss and accuracy per epoch, training (dashed) and test (solid), and the generalization gap."""
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(8, 3.2))
    for split, style in (("train", "--"), ("test", "-")):
        loss.plot(history.epoch, history[f"{split}_loss"], style, label=split)
        acc.plot(history.epoch, history[f"{split}_acc"], style, label=split)
    gap = history.test_loss - history.train_loss
    loss.set(xlabel="epoch", ylabel="loss", title=f"{title} gap (test - train loss) at end {gap.iloc[-1]:+.3f}, "
                                                  f"max {gap.max():+.3f}")
    acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    loss.legend(fontsize=7)
    loss.title.set_fontsize(8)
    fig.tight_layout()
    save(fig, path)


def weight_histograms(table: pd.DataFrame, path, title: str = "") -> None:
    """Per conv/linear layer: the histogram of its weights (log count), range +-max|w|."""
    layers = list(dict.fromkeys(table.layer))
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.1 * rows), squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        d = table[table.layer == layer]
        # one artist, and log10(count + 1) on a linear axis: log-scaled axes cost seconds to lay out
        ax.stairs(np.log10(d["count"].to_numpy() + 1.0), np.append(d.low.to_numpy(), d.high.iloc[-1]), fill=True,
                  color="C0")
        ax.set_title(layer, fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.suptitle(f"{title} weights per layer: log10(count + 1)", fontsize=8)
    fig.tight_layout()
    save(fig, path)


def _upsample(tile: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upsampling of an (h, w, 3) tile to (size, size, 3)."""
    rows = (np.arange(size) * tile.shape[0] // size)
    cols = (np.arange(size) * tile.shape[1] // size)
    return tile[rows][:, cols]


def feature_grid(blob: dict, path, title: str = "", image: int = 0) -> None:
    """One test image and, per named layer, its first channels' activations (each on its own scale)."""
    size = max([blob["images"].shape[-1]] + [m.shape[-1] for m in blob["maps"].values()])
    rows, labels = [], []
    for layer, maps in blob["maps"].items():
        rows.append([_upsample(_image_tile(blob["images"][image]), size)]
                    + [_upsample(_map_tile(maps[image, c].numpy()), size) for c in range(maps.shape[1])])
        labels.append(layer.removeprefix("body."))
    mosaic(rows, path, labels, ["image", *[f"ch {c}" for c in range(len(rows[0]) - 1)]], title)


REGION_COLORS = np.array(plt.get_cmap("tab10").colors)[:, :3]


def _region_axes(ax, grid, half: float, x_train=None, y_train=None, title: str = "") -> None:
    """The predicted class over the plane (square of half-width `half`) and the training points."""
    rgb = 0.35 + 0.65 * REGION_COLORS[np.asarray(grid, dtype=int) % 10]
    ax.imshow(rgb, origin="lower", extent=(-half, half, -half, half), interpolation="nearest")
    if x_train is not None:
        pts = x_train.reshape(len(x_train), -1)[:, :2].numpy() / 255 * 2 * half - half
        ax.scatter(pts[:, 0], pts[:, 1], c=REGION_COLORS[y_train.numpy() % 10], s=3, edgecolors="k",
                   linewidths=0.2)
    ax.set(xlim=(-half, half), ylim=(-half, half), title=title)
    ax.title.set_fontsize(8)
    ax.set_aspect("equal")


def regions(blob: dict, path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    _region_axes(ax, blob["grids"][-1], blob["half_width"], blob["x_train"], blob["y_train"],
                 f"{title} epoch {blob['epochs'][-1]}")
    save(fig, path)


MAX_FRAMES = 30


def regions_animation(blob: dict, path, title: str = "", ms_per_frame: int = 250) -> None:
    """A GIF of the decision regions over epochs (from the grids saved while training; at most
    MAX_FRAMES frames, so a long run stays cheap to draw)."""
    frames = []
    keep = np.unique(np.linspace(0, len(blob["epochs"]) - 1, min(MAX_FRAMES, len(blob["epochs"]))).round().astype(int))
    for k in keep:  # at most MAX_FRAMES epochs, evenly spaced, the last included
        grid, epoch = blob["grids"][k], blob["epochs"][k]
        fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=80)
        _region_axes(ax, grid, blob["half_width"], blob["x_train"], blob["y_train"], f"{title} epoch {epoch}")
        fig.canvas.draw()
        frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()))
        plt.close(fig)
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)


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


def _stretched_tile(image) -> np.ndarray:
    """(C, H, W) -> (H, W, 3) stretched to the image's own min..max: activation maximization leaves the
    data range, and clipping it to [0, 1] would show saturated blocks."""
    array = np.asarray(image, dtype=float)
    lo, hi = array.min(), array.max()
    return _image_tile((array - lo) / (hi - lo) if hi > lo else np.zeros_like(array))


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
    tiles = [[_stretched_tile(images[k]) for k in range(start, min(start + cols, len(images)))]
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


def roar_curves(curves: pd.DataFrame, leakage: pd.DataFrame | None, path, title: str = "",
                detector: pd.DataFrame | None = None) -> None:
    """Per mode: each method's mean over the runs that fitted (line; random dashed), every run as a
    point (an x for a run that did not fit); the leakage controls: the learner on the mask alone
    (dotted) and on the masks a detector recovers from the filled ROAR images (solid); and the
    detector's pixel accuracy per mode against the majority rate (grey)."""
    modes = sorted(curves["mode"].unique())
    has_leakage = leakage is not None and len(leakage) > 0
    has_detector = detector is not None and len(detector) > 0
    panels = len(modes) + (has_leakage or has_detector) + has_detector
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
    if has_leakage or has_detector:
        ax = axes.flat[len(modes)]
        for method, g in (leakage.groupby("method") if has_leakage else ()):
            ax.plot(g.fraction, g.leakage_acc, color=colors.get(method, "gray"), marker="o", ms=3, ls=":",
                    label=f"{method}: mask alone")
        found = detector[(detector["mode"] == "roar") & detector.fitted.astype(bool)] if has_detector else ()
        for method, g in (found.groupby("method") if len(found) else ()):
            ax.plot(g.fraction, g.recovered_leakage_acc, color=colors.get(method, "gray"), marker="s", ms=3,
                    label=f"{method}: masks recovered")
        failed = detector[(detector["mode"] == "roar") & ~detector.fitted.astype(bool)] if has_detector else ()
        for method, g in (failed.groupby("method") if len(failed) else ()):   # the learner did not fit: an x
            ax.scatter(g.fraction, g.recovered_leakage_acc, color=colors.get(method, "gray"), marker="x", s=25)
        ax.set(xlabel="fraction of pixels removed", ylabel="class accuracy from masks",
               title="leakage controls", ylim=(0, 1.02))
        ax.legend(fontsize=6)
    if has_detector:
        ax = axes.flat[-1]
        for (mode, method), g in detector.groupby(["mode", "method"]):
            ax.plot(g.fraction, g.detector_acc, color=colors.get(method, "gray"), marker="o", ms=3,
                    ls="-" if mode == "roar" else "--", label=f"{method} ({mode})")
        base = detector.groupby(["mode", "fraction"]).detector_base.mean().reset_index()
        for mode, g in base.groupby("mode"):
            ax.plot(g.fraction, g.detector_base, color="0.6", lw=3, alpha=0.6, ls="-" if mode == "roar" else "--",
                    label=f"majority rate ({mode})")
        ax.set(xlabel="fraction of pixels removed (ROAR) or kept (KAR)", ylabel="pixel accuracy",
               title="removed pixels found in the filled images", ylim=(0.4, 1.02))
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


STUDY_FORMATS = ["png", "svg"]  # of the study figures; study_figures(svg=False) keeps PNG only


def save_both(fig, stem) -> list[str]:
    """PNG (and SVG, unless switched off) of one figure."""
    paths = [f"{stem}.{fmt}" for fmt in STUDY_FORMATS]
    for path in paths:
        fmt = path.rsplit(".", 1)[-1]
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def _reg_order(regs) -> list[str]:
    return sorted(set(regs), key=lambda r: (r != "none", r))


def _seed_points(ax, points: pd.DataFrame, rows: pd.DataFrame, x_of, color, offset: float = 0.0) -> None:
    """Every seed as a point, the mean as a bar-free tick, and the bootstrap interval as a line where
    it exists (3 or more seeds); with fewer seeds the points are the whole story."""
    xs = points.reg.map(x_of) + offset
    ax.scatter(xs, points.value, s=14, color=color, alpha=0.75, zorder=3, linewidths=0)
    for row in rows.itertuples():
        x = x_of[row.reg] + offset
        ax.plot([x - 0.12, x + 0.12], [row.mean, row.mean], color=color, lw=2, zorder=4)
        if pd.notna(row.ci_low):
            ax.plot([x, x], [row.ci_low, row.ci_high], color=color, lw=1, zorder=2)


def metric_by_regularizer(tidy: pd.DataFrame, summary: pd.DataFrame, metric: str, stem,
                          ylabel: str | None = None) -> list[str]:
    """Seed-level values (points), their mean (tick) and bootstrap interval (line, 3+ seeds), one
    panel per study, one colour per architecture."""
    _seaborn()
    data = summary[summary.metric == metric]
    points = tidy[tidy.metric == metric]
    studies = sorted(data.study.unique())
    fig, axes = plt.subplots(1, len(studies), figsize=(max(4, 0.8 * data.reg.nunique() + 2) * len(studies), 3.2),
                             squeeze=False)
    for ax, study in zip(axes.flat, studies):
        d, p = data[data.study == study], points[points.study == study]
        order = _reg_order(d.reg)
        x_of = {r: i for i, r in enumerate(order)}
        archs = sorted(d.arch.unique())
        for j, arch in enumerate(archs):
            offset = 0.25 * (j - (len(archs) - 1) / 2) if len(archs) > 1 else 0.0
            _seed_points(ax, p[p.arch == arch], d[d.arch == arch], x_of, plt.get_cmap("tab10")(j), offset)
            ax.plot([], [], "o", color=plt.get_cmap("tab10")(j), label=arch)
        ax.set_xticks(range(len(order)), order, rotation=40)
        n = int(d.n.max())
        ax.set(xlabel="", ylabel=ylabel or metric, title=f"{study} ({n} seed{'s' if n != 1 else ''})")
        if len(archs) > 1:
            ax.legend(fontsize=7)
    return save_both(fig, stem)


def per_method(tidy: pd.DataFrame, summary: pd.DataFrame, method_of, stem, ylabel: str) -> list[str]:
    """One explainability measure for every attribution method: seed points, mean tick and bootstrap
    interval per regularizer, a panel per method, a row per study x architecture.
    `method_of(metric)` returns the method name, or None for other metrics."""
    _seaborn()
    d = summary.assign(method=summary.metric.map(method_of)).dropna(subset=["method"])
    d = d[d.method != "random"] if d.method.nunique() > 1 else d
    if d.empty:
        return []
    p = tidy.assign(method=tidy.metric.map(method_of)).dropna(subset=["method"])
    panels = sorted(set(zip(d.study, d.arch, d.method)))  # only what was measured
    order = _reg_order(d.reg)
    x_of = {r: i for i, r in enumerate(order)}
    cols = min(6, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(2.4, 0.42 * len(order) + 0.9) * cols, 2.7 * rows),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, (study, arch, method) in zip(axes.flat, panels):
        sel = (d.study == study) & (d.arch == arch) & (d.method == method)
        psel = (p.study == study) & (p.arch == arch) & (p.method == method)
        _seed_points(ax, p[psel], d[sel], x_of, "C0")
        ax.set_xticks(range(len(order)), order, rotation=60, fontsize=7)
        ax.set_title(f"{method}\n{study}/{arch}, {int(d[sel].n.max())} seeds", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return save_both(fig, stem)


def shortcut_detection(tidy: pd.DataFrame, stem) -> list[str]:
    """Per planted-shortcut study and method: each cell's attribution mass inside the mark against its
    reliance on the mark, a point per cell coloured by regularizer; the dashed line is chance (the
    mark's share of the image)."""
    d = tidy[tidy.metric.str.startswith("shortcut_")]
    if d.empty:
        return []
    _seaborn()
    wide = d.pivot_table(index=["study", "arch", "reg", "seed"], columns="metric", values="value").reset_index()
    methods = sorted(c.removeprefix("shortcut_mass_") for c in wide.columns
                     if c.startswith("shortcut_mass_") and c != "shortcut_mass_random")
    studies = sorted(wide.study.unique())
    if not methods or "shortcut_reliance" not in wide:
        return []
    regs = _reg_order(wide.reg)
    colours = {r: f"C{i % 10}" for i, r in enumerate(regs)}
    fig, axes = plt.subplots(len(studies), len(methods), figsize=(2.3 * len(methods), 2.4 * len(studies)),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    for row, study in enumerate(studies):
        w = wide[wide.study == study]
        for ax, method in zip(axes[row], methods):
            for reg in regs:
                sel = w[w.reg == reg]
                ax.scatter(sel.shortcut_reliance, sel[f"shortcut_mass_{method}"], s=14, color=colours[reg], label=reg)
            if "shortcut_area" in w:
                ax.axhline(w.shortcut_area.mean(), color="grey", ls="--", lw=0.8)
            ax.set_title(f"{method}\n{study}", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("reliance", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("mass inside mark", fontsize=8)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right upper", fontsize=7)
    return save_both(fig, stem)


def scorecard(card: pd.DataFrame, stem, alpha: float = 0.05) -> list[str]:
    """Regularizer x measure heatmap per study x architecture: colour = paired difference from `none`
    in units of the measure's SD over the panel's cells, oriented so green is better; the number is
    the raw difference; * marks p_Holm < alpha."""
    panels = sorted(set(zip(card.study, card.arch)))
    if not panels:
        return []
    cols = list(dict.fromkeys(card.measure))  # every panel gets every column, so the columns align
    info = card.drop_duplicates("measure").set_index("measure")
    heights = [max(1, card[(card.study == s) & (card.arch == a)].reg.nunique()) for s, a in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(0.95 * len(cols) + 2.5, 0.5 * sum(heights) + 1.0 * len(panels) + 1.4),
                             squeeze=False, gridspec_kw={"height_ratios": heights}, layout="constrained")
    cmap = plt.get_cmap("RdYlGn")
    for k, (ax, (study, arch)) in enumerate(zip(axes.flat, panels)):
        d = card[(card.study == study) & (card.arch == arch)]
        regs = sorted(d.reg.unique())
        gain = d.pivot_table(index="reg", columns="measure", values="gain", aggfunc="first").reindex(index=regs, columns=cols)
        ax.imshow(gain.to_numpy(dtype=float).clip(-2, 2), cmap=cmap, vmin=-2, vmax=2, aspect="auto")
        ax.grid(False)
        for r, reg in enumerate(regs):
            for c, m in enumerate(cols):
                row = d[(d.reg == reg) & (d.measure == m)]
                if row.empty:
                    continue
                row = row.iloc[0]
                text = "–" if pd.isna(row.mean_diff) else f"{row.mean_diff:+.2g}" + ("*" if row.p_holm < alpha else "")
                ax.text(c, r, text, ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(cols)))
        if k == len(panels) - 1:
            ax.set_xticklabels([f"{info.label[m]} {'↑' if info.better[m] > 0 else '↓'}\n({info.group[m]})"
                                for m in cols], fontsize=7, rotation=40, ha="right")
        else:
            ax.set_xticklabels([])
        ax.set_yticks(range(len(regs)), regs, fontsize=8)
        n = int(d.n_pairs.max())
        base = d.baseline.iloc[0] if "baseline" in d else "none"
        ax.set_title(f"{study} / {arch}: difference from {base} ({n} paired seed{'s' if n != 1 else ''}; "
                     f"colour: SDs, green = better; * p_Holm < {alpha}; blank: not measured)", fontsize=8)
    return save_both(fig, stem)


def agreement(table: pd.DataFrame, stem_prefix) -> list[str]:
    """Per study: the Spearman correlation between measures across cells; a dot marks entries whose
    95% interval excludes 0, a blank an undefined one."""
    made = []
    for study, d in table.groupby("study"):
        names = sorted(set(d.measure_a) | set(d.measure_b))
        index = {n: i for i, n in enumerate(names)}
        grid = np.full((len(names), len(names)), np.nan)
        for row in d.itertuples():
            grid[index[row.measure_a], index[row.measure_b]] = grid[index[row.measure_b], index[row.measure_a]] = row.rho
        fig, ax = plt.subplots(figsize=(0.42 * len(names) + 3, 0.42 * len(names) + 2))
        ax.imshow(grid, cmap="coolwarm", vmin=-1, vmax=1)
        ax.grid(False)
        for row in d.itertuples():
            if row.defined and (row.ci_low > 0 or row.ci_high < 0):
                for a, b in ((row.measure_a, row.measure_b), (row.measure_b, row.measure_a)):
                    ax.plot(index[b], index[a], "k.", ms=4)
        ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_title(f"{study}: Spearman across cells (n ≤ {int(d.n_cells.max())}); • interval excludes 0", fontsize=8)
        made += save_both(fig, Path(f"{stem_prefix}_{study}"))
    return made


def _lines_with_runs(d: pd.DataFrame, x: str, y: str, col: str, row: str, xlabel: str, ylabel: str, runs: int, stem):
    """Mean line per regularizer (bootstrap 95% band only with 3+ runs per point) and every run as a point."""
    sns = _seaborn()
    order = _reg_order(d.reg)
    palette = dict(zip(order, sns.color_palette("tab10", len(order))))
    g = sns.relplot(d, x=x, y=y, hue="reg", hue_order=order, palette=palette, col=col, row=row, kind="line",
                    errorbar=("ci", 95) if runs >= 3 else None, height=2.6, aspect=1.1)
    g.map_dataframe(sns.scatterplot, x=x, y=y, hue="reg", hue_order=order, palette=palette, s=10, alpha=0.5,
                    legend=False)
    g.set_axis_labels(xlabel, ylabel)
    g.set_titles("{row_name} | {col_name}")
    return g


def roar_study(curves: pd.DataFrame, stem) -> list[str]:
    """ROAR / KAR per study: one panel per mode x method, a line per base regularizer (mean over base
    seeds and retrain seeds that fitted), each run a point, the random baseline in each panel."""
    d = curves[curves.fitted.astype(bool)].assign(panel=lambda f: f["mode"].str.upper() + " | " + f.method)
    if d.empty:  # no retrain fitted: nothing to average (the per-cell figures show every run)
        return []
    runs = int(d.groupby(["study", "reg", "panel", "fraction"]).size().min())
    g = _lines_with_runs(d, "fraction", "test_acc", "panel", "study", "fraction removed (ROAR) / kept (KAR)",
                         "retrained test accuracy", runs, stem)
    g.set(ylim=(0, 1.02))
    return save_both(g.figure, stem)


def robustness_study(attacks: pd.DataFrame, stem) -> list[str]:
    steps = attacks[attacks.attack == "pgd"].steps.max()
    d = attacks[(attacks.attack == "fgsm") | (attacks.steps == steps)]
    d = d.assign(attack=d.attack.where(d.attack == "fgsm", f"pgd-{steps}").str.upper())
    runs = int(d.groupby(["arch", "reg", "attack", "eps"]).size().min())
    g = _lines_with_runs(d, "eps", "accuracy", "arch", "attack", f"eps ({d.norm.iloc[0]}, pixel units)", "accuracy",
                         runs, stem)
    return save_both(g.figure, stem)


def learning_study(history: pd.DataFrame, stem) -> list[str]:
    """Test loss and accuracy per epoch: a column per study x architecture, a colour per regularizer,
    each seed a thin line, the mean over seeds bold."""
    panels = sorted(set(zip(history.study, history.arch)))
    order = _reg_order(history.reg)
    colors = dict(zip(order, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 5.6), squeeze=False)
    for j, (study, arch) in enumerate(panels):
        d = history[(history.study == study) & (history.arch == arch)]
        for i, col in enumerate(("test_loss", "test_acc")):
            ax = axes[i, j]
            for reg, g in d.groupby("reg"):
                for _, seed in g.groupby("seed"):
                    ax.plot(seed.epoch, seed[col], color=colors[reg], lw=0.6, alpha=0.4)
                mean = g.groupby("epoch")[col].mean()
                ax.plot(mean.index, mean.values, color=colors[reg], lw=2, label=reg)
            ax.set(xlabel="epoch", ylabel=col.replace("_", " "), title=f"{study} / {arch}" if i == 0 else "")
        axes[0, j].legend(fontsize=6)
    fig.tight_layout()
    return save_both(fig, stem)


def weights_study(hist: pd.DataFrame, stem, layers: int = 4) -> list[str]:
    """Per study x architecture, its first `layers` conv/linear layers: the weight histogram of each
    regularizer's first seed (log count, on each layer's own range)."""
    made = []
    for (study, arch), d in hist.groupby(["study", "arch"]):
        d = d[d.seed == d.seed.min()]
        names = list(dict.fromkeys(d.layer))[:layers]
        order = _reg_order(d.reg)
        colors = dict(zip(order, plt.get_cmap("tab10").colors))
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
        for ax, layer in zip(axes.flat, names):
            for reg in order:
                g = d[(d.reg == reg) & (d.layer == layer)]
                top = g.high.max()
                ax.step((g.low + g.high) / 2 / top, np.log10(g["count"] + 1.0), where="mid", color=colors[reg],
                        label=reg, lw=1)
            ax.set(xlabel="weight / max |weight| of the layer", title=layer)
            ax.title.set_fontsize(8)
        axes[0, 0].set_ylabel("log10(count + 1)")
        axes[0, -1].legend(fontsize=6)
        fig.suptitle(f"{study} / {arch}: weight distributions (seed {d.seed.min()})", fontsize=9)
        fig.tight_layout()
        made += save_both(fig, Path(f"{stem}_{study}_{arch}"))
    return made


def features_across_regularizers(blobs: dict, stem, image: int = 0) -> list[str]:
    """One test image: a row per regularizer and named layer, a column per channel (own scales)."""
    size = max([b["images"].shape[-1] for b in blobs.values()]
               + [m.shape[-1] for b in blobs.values() for m in b["maps"].values()])
    rows, labels = [], []
    for reg, blob in blobs.items():
        for layer, maps in blob["maps"].items():
            rows.append([_upsample(_image_tile(blob["images"][image]), size)]
                        + [_upsample(_map_tile(maps[image, c].numpy()), size) for c in range(maps.shape[1])])
            labels.append(f"{reg} {layer.removeprefix('body.')}")
    return mosaic_both(rows, stem, labels, ["image", *[f"ch {c}" for c in range(len(rows[0]) - 1)]])


def regions_across_regularizers(blobs: dict, stem) -> list[str]:
    """The toy study's final decision regions, one panel per regularizer (first seed)."""
    fig, axes = plt.subplots(1, len(blobs), figsize=(3.0 * len(blobs), 3.2), squeeze=False)
    for ax, (reg, blob) in zip(axes.flat, blobs.items()):
        _region_axes(ax, blob["grids"][-1], blob["half_width"], blob["x_train"], blob["y_train"], reg)
    fig.tight_layout()
    return save_both(fig, stem)


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
    tiles = [[_stretched_tile(blobs[r]["images"][k]) for k in logits] for r in regs]
    return mosaic_both(tiles, stem, regs, [f"class {blobs[regs[0]]['units'][k]}" for k in logits])


def mosaic_both(tiles, stem, row_labels, col_labels) -> list[str]:
    """A mosaic as PNG (and SVG, unless switched off)."""
    paths = [f"{stem}.{fmt}" for fmt in STUDY_FORMATS]
    for path in paths:
        mosaic(tiles, path, row_labels, col_labels)
    return paths


def _features_figure(cell, path, title):
    blob = load_torch(cell / "robustness" / "features.pt")
    if blob["maps"]:  # none for 2-D points
        feature_grid(blob, path, title)


def _boundary_figure(cell, path, title):
    maps = load_torch(cell / "robustness" / "boundary_maps.pt")
    boundary_maps(maps["maps"], read_csv(cell / "robustness" / "boundary.csv"), maps["span"], path, title)


# per-cell figure -> (the stage whose outputs it draws, those files under the cell folder, drawer)
CELL_FIGURES = {
    "learning_curves.png": ("train", ["history.csv"],
                            lambda c, p, t: learning_curves(read_csv(c / "history.csv"), p, t)),
    "regions.png": ("regions", ["regions.pt"], lambda c, p, t: regions(load_torch(c / "regions.pt"), p, t)),
    "regions.gif": ("regions", ["regions.pt"], lambda c, p, t: regions_animation(load_torch(c / "regions.pt"), p, t)),
    "weights.png": ("robustness", ["robustness/weight_hist.csv"],
                    lambda c, p, t: weight_histograms(read_csv(c / "robustness/weight_hist.csv"), p, t)),
    "features.png": ("robustness", ["robustness/features.pt"], lambda c, p, t: _features_figure(c, p, t)),
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
    "shortcut_maps.png": ("shortcut", ["shortcut/maps.pt"],
                          lambda c, p, t: attribution_grid(load_torch(c / "shortcut/maps.pt"), p, t + " (marked images)")),
    "dissection.png": ("dissect", ["dissect/top.pt"],
                       lambda c, p, t: dissection_units(load_torch(c / "dissect/top.pt"), p, t)),
    "roar_curves.png": ("roar", ["roar/curves.csv", "roar/leakage.csv", "roar/detector.csv"],
                        lambda c, p, t: roar_curves(read_csv(c / "roar/curves.csv"), read_csv(c / "roar/leakage.csv"), p, t,
                                                    read_csv(c / "roar/detector.csv"))),
    "road.png": ("road", ["road/curves.csv"], lambda c, p, t: road_curves(read_csv(c / "road/curves.csv"), p, t)),
}


def cell_figure_sources(stages, cell: dict | None = None) -> list[str]:
    """The files under a cell folder that its figures are drawn from, for the given stages; for a
    cell of 2-D points (the toy study), without the image-only stages and with its decision regions."""
    stages = set(stages)
    if cell is not None and data.spec(cell["dataset"]).inputs == "points":
        stages = (stages - {"explain", "roar", "road", "dissect"}) | {"regions"}
    if cell is not None and not cell.get("shortcut"):
        stages -= {"shortcut"}
    return [source for stage, sources, _ in CELL_FIGURES.values() if stage in stages for source in sources]


def cell_figures(cell_dir, out_dir, title: str) -> list[str]:
    """Every per-cell figure whose source files exist, drawn from the cell's saved tables and maps."""
    cell_dir, out_dir = Path(cell_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name, (_, sources, draw) in CELL_FIGURES.items():
        if all((cell_dir / source).exists() for source in sources):
            draw(cell_dir, out_dir / name, title)
            if (out_dir / name).exists():  # a drawer may have nothing to draw (feature maps of 2-D points)
                made.append(str(out_dir / name))
    return made


def study_figures(tables_dir, results_root, out_dir, cells: list[dict], workers: int = 1, svg: bool = True) -> list[str]:
    """Every figure of a study into `out_dir` (written to a temporary folder, then renamed):
    summary figures from results/tables (PNG, and SVG when `svg`), across-regularizer grids and
    per-cell figures from the cells' saved tables and maps (those in `workers` processes)."""
    STUDY_FORMATS[:] = ["png", "svg"] if svg else ["png"]
    tables_dir, results_root, out_dir = Path(tables_dir), Path(results_root), Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    made = []
    summary = read_csv(tables_dir / "summary.csv")
    tidy = read_csv(tables_dir / "metrics.csv")
    present = set(summary.metric)
    card = read_csv(tables_dir / "scorecard.csv")
    if len(card):
        made += scorecard(card, tmp / "scorecard")
    agree = read_csv(tables_dir / "agreement.csv")
    if agree.defined.astype(bool).any():
        made += agreement(agree[agree.defined.astype(bool)], tmp / "agreement")
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
              "shortcut_reliance": "shortcut reliance (clean - flipped accuracy)",
              "dissect_group_agreement": "filters of a group sharing its concept (share)",
              "net2vec_embedding_iou": "Net2Vec embedding IoU (held-out Broden)",
              "net2vec_best_unit_iou": "best single unit's IoU (held-out Broden)",
              "net2vec_units_to_reach": "units for 90% of the embedding's IoU",
              "net2vec_entropy": "entropy of the embedding's |weights| (nats)"}
    for metric, label in labels.items():
        if metric in present:
            made += metric_by_regularizer(tidy, summary, metric, tmp / metric, label)
    for prefix, label in (("roar_score_", "ROAR score (area vs random)"), ("kar_score_", "KAR score (area vs random)"),
                          ("road_score_", "ROAD score (LeRF - MoRF area)"),
                          ("shortcut_mass_", "attribution mass inside the mark"),
                          ("shortcut_pointing_", "pointing game: max inside the mark")):
        made += per_method(tidy, summary, lambda m, p=prefix: m.removeprefix(p) if m.startswith(p) else None,
                           tmp / prefix.rstrip("_"), label)
    for suffix, label in (("_gini", "Gini index of |map| (sparseness)"), ("_entropy", "entropy of |map| (nats)"),
                          ("_mprt_all_layers", "Spearman vs fully randomized model")):
        made += per_method(tidy, summary, lambda m, s=suffix: m.removesuffix(s) if m.endswith(s) else None,
                           tmp / suffix.strip("_"), label)
    made += per_method(tidy, summary, lambda m: m.removeprefix("dissect_unique_concepts@")
                       if m.startswith("dissect_unique_concepts@") else None,
                       tmp / "dissect_by_layer", "unique concepts (one label per unit)")
    made += per_method(tidy, summary, lambda m: f"k={m.removeprefix('lesion_concentration@')}"
                       if m.startswith("lesion_concentration@") else None,
                       tmp / "lesion_concentration", "accuracy drop: top-k units minus k random units")
    made += per_method(tidy, summary, lambda m: m.removeprefix("dissect_group_agreement@")
                       if m.startswith("dissect_group_agreement@") else None,
                       tmp / "dissect_group_agreement_by_layer", "group concept agreement")
    for table, draw, stem in (("roar_curves", roar_study, "roar_curves"), ("attacks", robustness_study, "robustness_curves"),
                              ("history", learning_study, "learning_curves"), ("weight_hist", weights_study, "weights")):
        stacked = read_csv(tables_dir / f"{table}.csv")
        if len(stacked):
            made += draw(stacked, tmp / stem)
    made += shortcut_detection(tidy, tmp / "shortcut_detection")
    frame = pd.DataFrame(cells)
    for (study, arch), group in frame.groupby(["study", "arch"]):
        seed = group.seed.min()
        regs = sorted(group.reg.unique(), key=lambda r: (r != "none", r))
        folders = {reg: results_root / study / arch / reg / f"seed{seed}" / "explain" for reg in regs}
        maps = {r: load_torch(f / "maps.pt") for r, f in folders.items() if (f / "maps.pt").exists()}
        if maps:
            made += explain_across_regularizers(maps, tmp / f"maps_{study}_{arch}")
        marks = {r: load_torch(f.parent / "shortcut" / "maps.pt") for r, f in folders.items()
                 if (f.parent / "shortcut" / "maps.pt").exists()}
        if marks:
            made += explain_across_regularizers(marks, tmp / f"shortcut_maps_{study}_{arch}")
        acts = {r: load_torch(f / "actmax.pt") for r, f in folders.items() if (f / "actmax.pt").exists()}
        if acts:
            made += actmax_across_regularizers(acts, tmp / f"actmax_{study}_{arch}")
        cell_dirs = {reg: folder.parent for reg, folder in folders.items()}
        features = {r: load_torch(c / "robustness" / "features.pt") for r, c in cell_dirs.items()
                    if (c / "robustness" / "features.pt").exists()}
        features = {r: b for r, b in features.items() if b["maps"]}
        if features:
            made += features_across_regularizers(features, tmp / f"features_{study}_{arch}")
        grids = {r: load_torch(c / "regions.pt") for r, c in cell_dirs.items() if (c / "regions.pt").exists()}
        if grids:
            made += regions_across_regularizers(grids, tmp / f"regions_{study}_{arch}")
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
