"""Figures, drawn only from tables (CSV/JSON) and saved maps, never from models."""
from __future__ import annotations

import shutil
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


def attribution_grid(maps: dict, path, title: str = "") -> None:
    """Rows: the fixed test images; columns: the image, then each method's |map| (own colour scale)."""
    images, methods, grid = maps["images"], maps["methods"], maps["maps"]
    n, m = len(images), len(methods)
    fig, axes = plt.subplots(n, m + 1, figsize=(1.2 * (m + 1), 1.25 * n), squeeze=False)
    for i in range(n):
        img = images[i].permute(1, 2, 0).squeeze(-1).numpy()
        axes[i, 0].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        axes[i, 0].set_ylabel(f"y={int(maps['labels'][i])} p={int(maps['predicted'][i])}", fontsize=6)
        for j in range(m):
            axes[i, j + 1].imshow(grid[j, i].numpy(), cmap="inferno")
    for j, name in enumerate(["image", *methods]):
        axes[0, j].set_title(name.replace("_", "\n"), fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    save(fig, path)


def actmax_grid(blob: dict, path, title: str = "") -> None:
    images, layers, units = blob["images"], blob["layers"], blob["units"]
    n = len(images)
    cols = min(10, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.25 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k in range(n):
        ax = axes.flat[k]
        img = images[k].permute(1, 2, 0).squeeze(-1).numpy()
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(f"{layers[k].removeprefix('body.')}:{units[k]}", fontsize=6)
    fig.suptitle(title, fontsize=8)
    save(fig, path)


def dissection_units(shown: list[dict], path, title: str = "") -> None:
    """Each best unit's top-activating Broden images: the unit's thresholded area shaded red, the
    outline of its concept's mask in cyan."""
    if not shown:
        return
    cols = max(len(s["images"]) for s in shown)
    fig, axes = plt.subplots(len(shown), cols, figsize=(1.3 * cols, 1.45 * len(shown)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, s in enumerate(shown):
        for c in range(len(s["images"])):
            ax = axes[r, c]
            ax.imshow(s["images"][c].permute(1, 2, 0).numpy())
            overlay = np.zeros(s["unit_masks"][c].shape + (4,))
            overlay[s["unit_masks"][c].numpy()] = (1, 0, 0, 0.45)
            ax.imshow(overlay)
            if s["concept_masks"][c].any():
                ax.contour(s["concept_masks"][c].numpy().astype(float), levels=[0.5], colors="cyan", linewidths=0.7)
        axes[r, 0].set_title(f"{s['layer'].removeprefix('body.')}:{s['unit']} {s['concept']} ({s['category']}) "
                             f"IoU {s['iou']:.2f}", fontsize=6, loc="left")
    fig.suptitle(title, fontsize=8)
    save(fig, path)


def roar_curves(curves: pd.DataFrame, path, title: str = "") -> None:
    modes = sorted(curves["mode"].unique())
    fig, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 3.4), squeeze=False)
    for ax, mode in zip(axes.flat, modes):
        mean = curves[curves["mode"] == mode].groupby(["method", "fraction"]).test_acc.agg(["mean", "std"])
        for method, g in mean.groupby(level=0):
            g = g.droplevel(0)
            style = dict(color="k", ls="--") if method == "random" else {}
            ax.errorbar(g.index, g["mean"], yerr=g["std"].fillna(0), marker="o", ms=3, capsize=2,
                        label=method, **style)
        ax.set(xlabel="fraction of pixels " + ("removed" if mode == "roar" else "kept"),
               ylabel="retrained test accuracy", title=f"{title} {mode.upper()}", ylim=(0, 1.02))
        ax.legend(fontsize=6)
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
    """ROAR / KAR curves per base cell with the random baseline dashed."""
    sns = _seaborn()
    curves = curves.assign(cell=curves.arch + "/" + curves.reg + "/s" + curves.seed.astype(str))
    g = sns.relplot(curves, x="fraction", y="test_acc", hue="method", col="cell", row="mode", kind="line",
                    marker="o", errorbar=("ci", 95), height=2.8, aspect=1.1,
                    style=curves.method.eq("random").map({True: "random baseline", False: "attribution"}))
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
    first = maps_by_reg[regs[0]]
    methods = first["methods"]
    fig, axes = plt.subplots(len(regs), len(methods) + 1, figsize=(1.1 * (len(methods) + 1), 1.15 * len(regs)),
                             squeeze=False)
    for i, reg in enumerate(regs):
        m = maps_by_reg[reg]
        img = m["images"][image].permute(1, 2, 0).squeeze(-1).numpy()
        axes[i, 0].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        axes[i, 0].set_ylabel(reg, fontsize=7)
        for j in range(len(methods)):
            axes[i, j + 1].imshow(m["maps"][j, image].numpy(), cmap="inferno")
    for j, name in enumerate(["image", *methods]):
        axes[0, j].set_title(name.replace("_", "\n"), fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return save_both(fig, stem)


def actmax_across_regularizers(blobs: dict, stem) -> list[str]:
    """Class-logit maximization images: rows = regularizers, columns = classes."""
    regs = list(blobs)
    logits = [k for k, layer in enumerate(blobs[regs[0]]["layers"]) if layer == "logit"]
    fig, axes = plt.subplots(len(regs), len(logits), figsize=(0.9 * len(logits), 1.0 * len(regs)), squeeze=False)
    for i, reg in enumerate(regs):
        for j, k in enumerate(logits):
            img = blobs[reg]["images"][k].permute(1, 2, 0).squeeze(-1).numpy()
            axes[i, j].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(reg, fontsize=7)
    for j, k in enumerate(logits):
        axes[0, j].set_title(f"class {blobs[regs[0]]['units'][k]}", fontsize=6)
    return save_both(fig, stem)


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
    "roar_curves.png": ("roar", ["roar/curves.csv"], lambda c, p, t: roar_curves(read_csv(c / "roar/curves.csv"), p, t)),
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


def study_figures(tables_dir, results_root, out_dir, cells: list[dict]) -> list[str]:
    """Every figure of a study into `out_dir` (written to a temporary folder, then renamed):
    summary figures from results/tables, across-regularizer grids and per-cell figures from the
    cells' saved tables and maps."""
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
    for prefix, label in (("roar_score_", "ROAR score (area vs random)"), ("kar_score_", "KAR score (area vs random)")):
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
    for cell in cells:
        rel = Path(cell["study"]) / cell["arch"] / cell["reg"] / f"seed{cell['seed']}"
        made += cell_figures(results_root / rel, tmp / "cells" / rel, f"{cell['arch']} / {cell['reg']} / seed {cell['seed']}")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return [m.replace(str(tmp), str(out_dir), 1) for m in made]
