"""Study figures, drawn from results/tables and the cells' saved maps: summaries across regularizers,
the scorecard, agreement, and mosaics comparing regularizers. Each writes PNG and, when `formats`
says so, SVG."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from reglens.io import atomic_path  # noqa: E402
from reglens.plots.cell import (_image_tile, _map_tile, _region_axes, _stretched_tile,  # noqa: E402
                                _upsample, mosaic)

# ---------------------------------------------------------------- study figures (from results/tables)

def _seaborn():
    sns.set_theme(style="whitegrid", context="paper")
    return sns


FORMATS = ("png", "svg")  # of the study figures; study_figures(svg=False) passes ("png",)


def save_both(fig, stem, formats=FORMATS) -> list[str]:
    """PNG (and SVG, unless switched off) of one figure."""
    paths = [f"{stem}.{fmt}" for fmt in formats]
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
                          ylabel: str | None = None, formats=FORMATS) -> list[str]:
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
    return save_both(fig, stem, formats)


def per_method(tidy: pd.DataFrame, summary: pd.DataFrame, method_of, stem, ylabel: str, formats=FORMATS) -> list[str]:
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
    return save_both(fig, stem, formats)


def shortcut_detection(tidy: pd.DataFrame, stem, formats=FORMATS) -> list[str]:
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
    return save_both(fig, stem, formats)


def scorecard(card: pd.DataFrame, stem, alpha: float = 0.05, formats=FORMATS) -> list[str]:
    """Regularizer x measure heatmap per study x architecture: colour = paired difference from `none`
    in units of the measure's SD over the panel's cells, oriented so green is better; the number is
    the raw difference; * marks p_Holm < alpha; a measure the meta-evaluation does not trust in a
    panel (`trusted` False, reglens.metaeval) is greyed; † marks a robustness difference where a cell of
    the regularizer or its baseline is suspected of gradient masking (`masking_flagged`)."""
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
        untrusted = set(d[~d.trusted.astype(bool)].measure) if "trusted" in d else set()
        for c, m in enumerate(cols):
            if m in untrusted:  # the meta-evaluation: this measure cannot answer the question here
                ax.axvspan(c - 0.5, c + 0.5, color="0.55", alpha=0.8, lw=0)
        for r, reg in enumerate(regs):
            for c, m in enumerate(cols):
                row = d[(d.reg == reg) & (d.measure == m)]
                if row.empty:
                    continue
                row = row.iloc[0]
                text = "–" if pd.isna(row.mean_diff) else f"{row.mean_diff:+.2g}" + ("*" if bool(row.get("significant", row.p_holm < alpha)) else "")
                text += "†" if int(row.get("masking_flagged", 0) or 0) else ""
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
                     f"colour: SDs, green = better; * p_Holm < {alpha}; † gradient masking suspected; blank: not measured; "
                     "grey: cannot answer here)", fontsize=8)
    return save_both(fig, stem, formats)


def agreement(table: pd.DataFrame, stem_prefix, formats=FORMATS) -> list[str]:
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
        made += save_both(fig, Path(f"{stem_prefix}_{study}"), formats)
    return made


def _lines_with_runs(d: pd.DataFrame, x: str, y: str, col: str, row: str, xlabel: str, ylabel: str, runs: int, stem,
                     sharex: bool = True):
    """Mean line per regularizer (bootstrap 95% band only with 3+ runs per point) and every run as a point."""
    sns = _seaborn()
    order = _reg_order(d.reg)
    palette = dict(zip(order, sns.color_palette("tab10", len(order))))
    g = sns.relplot(d, x=x, y=y, hue="reg", hue_order=order, palette=palette, col=col, row=row, kind="line",
                    errorbar=("ci", 95) if runs >= 3 else None, height=2.6, aspect=1.1,
                    facet_kws={"sharex": sharex})
    g.map_dataframe(sns.scatterplot, x=x, y=y, hue="reg", hue_order=order, palette=palette, s=10, alpha=0.5,
                    legend=False)
    g.set_axis_labels(xlabel, ylabel)
    g.set_titles("{row_name} | {col_name}")
    return g


def roar_study(curves: pd.DataFrame, stem, formats=FORMATS) -> list[str]:
    """ROAR / KAR per study: one panel per mode x method, a line per base regularizer (mean over base
    seeds and retrain seeds that fitted), each run a point, the random baseline in each panel."""
    d = curves[curves.fitted.astype(bool)].assign(panel=lambda f: f["mode"].str.upper() + " | " + f.method)
    if d.empty:  # no retrain fitted: nothing to average (the per-cell figures show every run)
        return []
    runs = int(d.groupby(["study", "reg", "panel", "fraction"]).size().min())
    g = _lines_with_runs(d, "fraction", "test_acc", "panel", "study", "fraction removed (ROAR) / kept (KAR)",
                         "retrained test accuracy", runs, stem)
    g.set(ylim=(0, 1.02))
    return save_both(g.figure, stem, formats)


def robustness_study(attacks: pd.DataFrame, stem, formats=FORMATS) -> list[str]:
    steps = attacks[attacks.attack == "pgd"].steps.max()
    d = attacks[(attacks.attack == "fgsm") | (attacks.steps == steps)]
    d = d.assign(attack=d.attack.where(d.attack == "fgsm", f"pgd-{steps}").str.upper())
    runs = int(d.groupby(["arch", "reg", "attack", "eps"]).size().min())
    g = _lines_with_runs(d, "eps", "accuracy", "arch", "attack", f"eps ({d.norm.iloc[0]}, pixel units)", "accuracy",
                         runs, stem)
    return save_both(g.figure, stem, formats)


def worst_case_study(rows: pd.DataFrame, stem, formats=FORMATS) -> list[str]:
    """The per-point worst case over the attack set per eps: a column per study / arch, a row per norm."""
    d = rows[rows.attack == "worst"].assign(panel=lambda f: f.study + " / " + f.arch)
    runs = int(d.groupby(["panel", "reg", "norm", "eps"]).size().min())
    g = _lines_with_runs(d, "eps", "accuracy", "panel", "norm", "eps (pixel units)", "worst-case robust accuracy",
                         runs, stem, sharex=False)
    g.set(ylim=(0, 1.02))
    return save_both(g.figure, stem, formats)


def reg_colors(order: list) -> dict:
    """A colour per regularizer: tab10 up to ten, tab20 up to twenty, repeating beyond (a sweep)."""
    palette = plt.get_cmap("tab10" if len(order) <= 10 else "tab20").colors
    return {reg: palette[i % len(palette)] for i, reg in enumerate(order)}


def learning_study(history: pd.DataFrame, stem, formats=FORMATS) -> list[str]:
    """Test loss and accuracy per epoch: a column per study x architecture, a colour per regularizer,
    each seed a thin line, the mean over seeds bold."""
    panels = sorted(set(zip(history.study, history.arch)))
    order = _reg_order(history.reg)
    colors = reg_colors(order)
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
    return save_both(fig, stem, formats)


def weights_study(hist: pd.DataFrame, stem, layers: int = 4, formats=FORMATS) -> list[str]:
    """Per study x architecture, its first `layers` conv/linear layers: the weight histogram of each
    regularizer's first seed (log count, on each layer's own range)."""
    made = []
    for (study, arch), d in hist.groupby(["study", "arch"]):
        d = d[d.seed == d.seed.min()]
        names = list(dict.fromkeys(d.layer))[:layers]
        order = _reg_order(d.reg)
        colors = reg_colors(order)
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
        made += save_both(fig, Path(f"{stem}_{study}_{arch}"), formats)
    return made


def features_across_regularizers(blobs: dict, stem, image: int = 0, formats=FORMATS) -> list[str]:
    """One test image: a row per regularizer and named layer, a column per channel (own scales)."""
    size = max([b["images"].shape[-1] for b in blobs.values()]
               + [m.shape[-1] for b in blobs.values() for m in b["maps"].values()])
    rows, labels = [], []
    for reg, blob in blobs.items():
        for layer, maps in blob["maps"].items():
            rows.append([_upsample(_image_tile(blob["images"][image]), size)]
                        + [_upsample(_map_tile(maps[image, c].numpy()), size) for c in range(maps.shape[1])])
            labels.append(f"{reg} {layer.removeprefix('body.')}")
    return mosaic_both(rows, stem, labels, ["image", *[f"ch {c}" for c in range(len(rows[0]) - 1)]], formats)


def regions_across_regularizers(blobs: dict, stem, formats=FORMATS) -> list[str]:
    """The toy study's final decision regions, one panel per regularizer (first seed)."""
    fig, axes = plt.subplots(1, len(blobs), figsize=(3.0 * len(blobs), 3.2), squeeze=False)
    for ax, (reg, blob) in zip(axes.flat, blobs.items()):
        _region_axes(ax, blob["grids"][-1], blob["half_width"], blob["x_train"], blob["y_train"], reg)
    fig.tight_layout()
    return save_both(fig, stem, formats)


def explain_across_regularizers(maps_by_reg: dict, stem, image: int = 0, formats=FORMATS) -> list[str]:
    """One test image: rows = regularizers, columns = the image and each method's map."""
    regs = list(maps_by_reg)
    methods = maps_by_reg[regs[0]]["methods"]
    tiles = [[_image_tile(maps_by_reg[r]["images"][image])]
             + [_map_tile(maps_by_reg[r]["maps"][j, image]) for j in range(len(methods))] for r in regs]
    return mosaic_both(tiles, stem, regs, ["image", *[m.replace("_", "\n") for m in methods]], formats)


def actmax_across_regularizers(blobs: dict, stem, formats=FORMATS) -> list[str]:
    """Class-logit maximization images: rows = regularizers, columns = classes."""
    regs = list(blobs)
    logits = [k for k, layer in enumerate(blobs[regs[0]]["layers"]) if layer == "logit"]
    tiles = [[_stretched_tile(blobs[r]["images"][k]) for k in logits] for r in regs]
    return mosaic_both(tiles, stem, regs, [f"class {blobs[regs[0]]['units'][k]}" for k in logits], formats)


def mosaic_both(tiles, stem, row_labels, col_labels, formats=FORMATS) -> list[str]:
    """A mosaic as PNG (and SVG, unless switched off)."""
    paths = [f"{stem}.{fmt}" for fmt in formats]
    for path in paths:
        mosaic(tiles, path, row_labels, col_labels)
    return paths


