"""Per-cell figures, drawn only from tables (CSV/JSON) and saved maps, never from models."""
from __future__ import annotations


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402


from reglens.io import atomic_path  # noqa: E402


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


def worst_case_curves(rows: pd.DataFrame, path, title: str = "") -> None:
    """Per norm: the per-point worst case over the attack set (bold) and each attack's accuracy."""
    norms = sorted(rows.norm.unique())
    fig, axes = plt.subplots(1, len(norms), figsize=(5 * len(norms), 3.5), squeeze=False)
    for ax, norm in zip(axes.flat, norms):
        for attack, group in rows[rows.norm == norm].groupby("attack"):
            worst = attack == "worst"
            ax.plot(group.eps, group.accuracy, marker="o", lw=2.5 if worst else 1, color="black" if worst else None,
                    label="worst case" if worst else attack.upper())
        ax.set(xlabel=f"eps ({norm}, pixel units)", ylabel="robust accuracy", ylim=(0, 1.02), title=title)
        ax.legend(fontsize=7)
    save(fig, path)


def iteration_curves(rows: pd.DataFrame, path, title: str = "") -> None:
    """PGD accuracy at fixed eps and step size against steps and against restarts."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3), squeeze=False)
    for ax, curve in zip(axes.flat, ("steps", "restarts")):
        group = rows[rows.curve == curve]
        if len(group):
            ax.plot(group[curve], group.accuracy, marker="o")
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(list(group[curve]), [str(v) for v in group[curve]])
            ax.set(xlabel=f"PGD {curve} (eps {group.eps.iloc[0]:g}, alpha {group.alpha.iloc[0]:.3g})",
                   ylabel="accuracy", ylim=(0, 1.02), title=title)
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


def tsne(table: pd.DataFrame, path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(4, 4))
    points = ax.scatter(table.x, table.y, c=table.label, cmap="tab10", s=5)
    ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2", xticks=[], yticks=[], title=title)
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


def filter_tiles(weights: np.ndarray) -> list[np.ndarray]:
    """Each filter (in, k, k) as an RGB tile, 0.5 + w / (2 max|w|) over its own weights (grey: 0); a
    one-channel filter grey, three channels as RGB, others their channel mean."""
    tiles = []
    for w in weights:
        w = w.mean(0, keepdims=True) if w.shape[0] not in (1, 3) else w
        scale = np.abs(w).max()
        tile = 0.5 + w / (2 * scale) if scale > 0 else np.full_like(w, 0.5)
        tiles.append(np.repeat(tile.transpose(1, 2, 0), 3, axis=2) if tile.shape[0] == 1 else tile.transpose(1, 2, 0))
    return tiles


def first_filters(weights: np.ndarray | None, path, title: str = "") -> None:
    """The first convolution's filters, eight per row (TUKL's figure); nothing for a network without one."""
    if weights is None:
        return
    tiles = filter_tiles(weights[:64])
    rows = [tiles[i:i + 8] for i in range(0, len(tiles), 8)]
    rows[-1] += [np.ones_like(tiles[0])] * (len(rows[0]) - len(rows[-1]))
    mosaic([[_upsample(t, 24) for t in row] for row in rows], path, [], [],
           f"{title}\nfirst-layer filters (each scaled to its own |w| max; grey 0)", cell_inches=0.5)


def overlay_tile(image, heat) -> np.ndarray:
    """An image in grey with |heat| laid over it (inferno, scaled to the map's own max, alpha by value)."""
    grey = _image_tile(image).mean(2, keepdims=True).repeat(3, 2)
    magnitude = np.abs(np.asarray(heat, dtype=float))
    top = magnitude.max()
    level = magnitude / top if top > 0 else magnitude
    colour = plt.get_cmap("inferno")(level)[..., :3]
    alpha = level[..., None]
    return (1 - alpha) * grey + alpha * colour


def neuron_maps(blob: dict, path, title: str = "") -> None:
    """Per method and unit (rows), its map laid over each figure image (columns)."""
    images, maps = blob["images"], np.asarray(blob["maps"])
    labels, tiles = [], []
    for m, method in enumerate(blob["methods"]):
        for u, (layer, unit) in enumerate(zip(blob["layers"], blob["units"])):
            short = {"neuron_gradient": "gradient", "neuron_integrated_gradients": "IG"}.get(method, method)
            labels.append(f"{short} {layer.removeprefix('body.')}:{unit}")
            tiles.append([_upsample(overlay_tile(images[i], maps[m, u, i]), 48) for i in range(len(images))])
    mosaic(tiles, path, labels, [f"image {i}" for i in range(len(images))],
           f"{title}\nwhere each unit looks (|attribution| over the image)", cell_inches=0.8)


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

