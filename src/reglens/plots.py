"""Figures, drawn only from tables (CSV/JSON) and saved maps, never from models."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

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
