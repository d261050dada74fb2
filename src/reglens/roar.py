"""ROAR and KAR (Hooker et al., NeurIPS 2019): rank pixels by attribution, ablate, retrain, score.

Pixels are ranked per image by |attribution| summed over channels (most important first). ROAR
replaces the top fraction by the per-channel training mean; KAR keeps the top fraction and replaces
the rest. A fresh model is trained on the ablated training set and tested on the ablated test set."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from reglens import attribution
from reglens.data import TensorData, to_float
from reglens.train import train

MODES = ("roar", "kar")


def rank_pixels(scores: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) attributions -> (N, H*W) pixel indices, most important first (int16/int32)."""
    saliency = scores.abs().sum(1).flatten(1)
    order = saliency.argsort(dim=1, descending=True, stable=True)
    return order.to(torch.int16 if saliency.shape[1] <= 32767 else torch.int32)


def compute_ranks(model, x_uint8: torch.Tensor, y: torch.Tensor, method: str, batch_size: int = 256,
                  **options) -> torch.Tensor:
    """Rank the pixels of uint8 images by `method`'s attribution of their true class."""
    prepared = attribution.prepare(model)
    out = []
    for i in range(0, len(y), batch_size):
        x = to_float(x_uint8[i:i + batch_size])
        attr = attribution.attribute(prepared, x, y[i:i + batch_size], method, prepared=True,
                                     **{**options, "seed": options.get("seed", 0) + i})
        out.append(rank_pixels(attr).cpu())
    return torch.cat(out)


def fill_value(mean: list[float], device=None) -> torch.Tensor:
    """The per-channel training mean as uint8 pixels, shape (C,)."""
    return torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8, device=device)


def ablate(x_uint8: torch.Tensor, ranks: torch.Tensor, fraction: float, mode: str,
           fill: torch.Tensor) -> torch.Tensor:
    """Replace the top `fraction` of pixels (roar) or all but them (kar) by `fill` (C,), every channel."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    n, c, h, w = x_uint8.shape
    k = int(round(fraction * h * w))
    top = torch.zeros(n, h * w, dtype=torch.bool, device=x_uint8.device)
    top.scatter_(1, ranks[:, :k].long().to(x_uint8.device), True)
    replace = top if mode == "roar" else ~top
    replace = replace.view(n, 1, h, w).expand(n, c, h, w)
    return torch.where(replace, fill.view(1, c, 1, 1).to(x_uint8.device), x_uint8)


def ablated_dataset(blob: dict, ranks: dict, fraction: float, mode: str) -> dict:
    """A dataset-file dictionary (the format of reglens.data) with both splits ablated. The
    normalization statistics stay those of the original data, so learners are comparable."""
    fill = fill_value(blob["mean"])
    return {**blob, "name": f"{blob['name']}-{mode}{fraction:g}",
            "x_train": ablate(blob["x_train"], ranks["train"], fraction, mode, fill),
            "x_test": ablate(blob["x_test"], ranks["test"], fraction, mode, fill)}


def retrain(data: TensorData, arch: str, regs, train_cfg: dict, model_cfg: dict, seeds, device) -> list[dict]:
    rows = []
    for seed in seeds:
        result = train(data, arch, regs, train_cfg, model_cfg, seed=seed, device=device)
        rows.append({"retrain_seed": seed, "test_acc": result.metrics["test_acc"],
                     "test_loss": result.metrics["test_loss"], "train_acc": result.metrics["train_acc"]})
    return rows


def scores(curves: pd.DataFrame) -> pd.DataFrame:
    """Per method and mode: the area between its mean accuracy curve and the random method's
    (trapezoid over the fractions). Positive = a better ranking than random: ROAR removes more
    information (accuracy lower than random), KAR keeps more (accuracy higher)."""
    mean = curves.groupby(["mode", "method", "fraction"], as_index=False).test_acc.mean()
    rows = []
    for mode, group in mean.groupby("mode"):
        random = group[group.method == "random"].set_index("fraction").test_acc
        if random.empty:
            raise ValueError("ROAR scores need the 'random' method as the baseline")
        for method, g in group.groupby("method"):
            acc = g.set_index("fraction").test_acc.reindex(random.index)
            diff = (random - acc) if mode == "roar" else (acc - random)
            fr = np.asarray(random.index, dtype=float)
            area = float(np.trapezoid(diff.to_numpy(), fr)) if len(fr) > 1 else float(diff.iloc[0])
            rows.append({"mode": mode, "method": method, "score": area,
                         "acc_at_max_fraction": float(acc.iloc[-1]), "max_fraction": float(fr[-1])})
    return pd.DataFrame(rows)


ROAR_DEFAULTS = {"cells": [], "methods": ["random", "saliency", "integrated_gradients", "gradcam"],
                 "fractions": [0.1, 0.3, 0.5, 0.7, 0.9], "modes": ["roar", "kar"], "retrain_seeds": [0, 1],
                 "learner": {"arch": None, "reg": "none"}, "train": {}, "batch_size": 256, "options": {}}
