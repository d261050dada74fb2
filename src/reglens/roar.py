"""Faithfulness of attributions by removing pixels: ROAR and KAR (Hooker et al., NeurIPS 2019), which
retrain a fixed learner on the ablated data, and ROAD (Rong et al., ICML 2022), which scores the
cell's own model on imputed images, most relevant pixels first (MoRF) and least relevant first (LeRF).

Pixels are ranked per image by |attribution| summed over channels, most important first. Removed
pixels are filled with the per-channel training mean (`mean`) or by ROAD's noisy linear imputation
(`noisy_linear`): each removed pixel is the weighted mean of its in-image 8-neighbours (direct 1/6,
diagonal 1/12, renormalized at the border), a sparse linear system solved here for all images at once
by preconditioned conjugate gradients on the device, plus Gaussian noise. The mean fill leaves the
removal mask visible as a flat region, so the mask's shape can carry the class (the leakage ROAD
describes); reglens.leakage holds the controls that measure it (the mask alone, and the masks a
detector recovers from the filled images) and the dithering that keeps fill values on the data's
value grid (`grid`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from reglens import attribution, leakage, regularizers
from reglens.data import TensorData, to_float
from reglens.train import evaluate, merged_train_config, train

MODES = ("roar", "kar")
ORDERS = ("morf", "lerf")
FILLS = ("mean", "noisy_linear")
# ROAD's neighbour weights (tleemann/road_evaluation): direct neighbours 1/6, diagonal ones 1/12
NEIGHBOURS = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]],
                          dtype=torch.float64)


def learner_of(cfg: dict, study: str, arch: str) -> dict:
    """The fixed learner ROAR retrains for a base cell of `study` with architecture `arch` (the
    learner's own arch when roar.learner.arch is set): arch, regularizer, training and model settings."""
    learner = cfg["roar"]["learner"]
    model = cfg["studies"][study]["model"]
    return {"arch": learner["arch"] or arch, "reg": learner["reg"],
            "regularizer": regularizers.resolve(learner["reg"], cfg["regularizers"]),
            "train": merged_train_config({**cfg["studies"][study]["train"], **cfg["roar"]["train"]}),
            "model": {**model, **({"width": learner["width"]} if learner["width"] else {})}}


def rank_pixels(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, C, H, W) attributions -> (N, H*W) pixel indices, most important first (int16/int32).
    Ties (e.g. the exact zeros of gradient-times-input methods on a black background) are broken in
    a seeded random order, not by position, so that no positional pattern is imposed on the ranks."""
    saliency = scores.abs().sum(1).flatten(1)
    shuffle = torch.rand(saliency.shape, generator=generator, device=saliency.device).argsort(dim=1)
    order = saliency.gather(1, shuffle).argsort(dim=1, descending=True, stable=True)
    order = shuffle.gather(1, order)
    return order.to(torch.int16 if saliency.shape[1] <= 32767 else torch.int32)


def compute_ranks(model, x_uint8: torch.Tensor, y: torch.Tensor, method: str, batch_size: int = 256,
                  **options) -> torch.Tensor:
    """Rank the pixels of uint8 images by `method`'s attribution of their true class (the controls
    'random' and 'sobel' need no model)."""
    prepared = model if method in attribution.CONTROLS else attribution.prepare(model)
    out = []
    ties = torch.Generator(device=x_uint8.device).manual_seed(options.get("seed", 0) + 7)
    for i in range(0, len(y), batch_size):
        x = to_float(x_uint8[i:i + batch_size])
        attr = attribution.attribute(prepared, x, y[i:i + batch_size], method, prepared=True,
                                     **{**options, "seed": options.get("seed", 0) + i})
        out.append(rank_pixels(attr, ties).cpu())
    return torch.cat(out)


def top_mask(ranks: torch.Tensor, fraction: float, shape: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) bool: the top `fraction` of each image's ranked pixels."""
    n = len(ranks)
    h, w = shape
    k = int(round(fraction * h * w))
    top = torch.zeros(n, h * w, dtype=torch.bool, device=ranks.device)
    top.scatter_(1, ranks[:, :k].long(), True)
    return top.view(n, h, w)


def removal_mask(ranks: torch.Tensor, fraction: float, mode: str, shape) -> torch.Tensor:
    """Pixels removed: the top fraction (ROAR, ROAD's MoRF) or all but it (KAR)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    top = top_mask(ranks, fraction, shape)
    return top if mode == "roar" else ~top


def road_mask(ranks: torch.Tensor, fraction: float, order: str, shape) -> torch.Tensor:
    """ROAD: the `fraction` most relevant pixels (MoRF) or the `fraction` least relevant (LeRF)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    return top_mask(ranks if order == "morf" else ranks.flip(1), fraction, shape)


def fill_value(mean: list[float], device=None) -> torch.Tensor:
    """The per-channel training mean as uint8 pixels, shape (C,)."""
    return torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8, device=device)


def _neighbour_sum(v: torch.Tensor) -> torch.Tensor:
    """Weighted sum of each pixel's in-image 8-neighbours; v: (B, 1, H, W)."""
    return F.conv2d(v, NEIGHBOURS.to(v).view(1, 1, 3, 3), padding=1)


def noisy_linear_impute(x: torch.Tensor, removed: torch.Tensor, noise: float = 0.01,
                        generator: torch.Generator | None = None, tol: float = 1e-8,
                        max_iter: int | None = None) -> tuple[torch.Tensor, dict]:
    """ROAD's noisy linear imputation, batched. x: (N, C, H, W) floats; removed: (N, H, W) bool.

    Each removed pixel u satisfies s_u x_u - sum_(removed v) w_uv x_v = sum_(kept v) w_uv x_v, with w the
    neighbour weights and s_u the sum of u's in-image neighbours' weights: the weighted mean of its
    neighbours. The matrix is symmetric and positive definite when some pixel of the image is kept,
    so preconditioned conjugate gradients (Jacobi) converge; all images and channels are solved
    together in float64. Returns the filled images (removed pixels + noise * N(0, 1)) and the solver's
    iterations and largest relative residual."""
    n, c, h, w = x.shape
    dtype = x.dtype
    r = removed.to(torch.float64).view(n, 1, h, w).expand(n, c, h, w).reshape(n * c, 1, h, w)
    v = x.to(torch.float64).reshape(n * c, 1, h, w)
    s = _neighbour_sum(torch.ones(1, 1, h, w, dtype=torch.float64, device=x.device))
    b = _neighbour_sum(v * (1 - r)) * r

    def apply(u):
        return (s * u - _neighbour_sum(u * r)) * r

    u = b / s                                  # the Jacobi step from zero
    res = b - apply(u)
    z = res / s
    p = z.clone()
    rz = (res * z).sum((1, 2, 3), keepdim=True)
    b_norm = b.flatten(1).norm(dim=1).clamp_min(1e-300)
    limit = max_iter or 4 * h * w
    iterations, relative = 0, 0.0
    for iterations in range(1, limit + 1):
        relative = float((res.flatten(1).norm(dim=1) / b_norm).max())
        if relative <= tol:
            break
        ap = apply(p)
        alpha = rz / (p * ap).sum((1, 2, 3), keepdim=True).clamp_min(1e-300)
        u = u + alpha * p
        res = res - alpha * ap
        z = res / s
        rz_new = (res * z).sum((1, 2, 3), keepdim=True)
        p = z + (rz_new / rz.clamp_min(1e-300)) * p
        rz = rz_new
    filled = v * (1 - r) + u * r
    if noise:
        filled = filled + noise * torch.randn(filled.shape, generator=generator, device=x.device,
                                              dtype=torch.float64) * r
    return filled.view(n, c, h, w).to(dtype), {"iterations": iterations, "residual": relative,
                                               "converged": relative <= tol}


def impute(x_uint8: torch.Tensor, removed: torch.Tensor, fill: str, mean: list[float], noise: float = 0.01,
           generator: torch.Generator | None = None, grid: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """uint8 images with the removed pixels filled (every channel), and diagnostics: the imputation's
    iterations and residual, and `content`: whether the kept pixels differ at all across the images
    (when they do not, nothing but the removal itself is left to learn from). `grid` (the data's
    values, leakage.value_grid): noisy-linear values are dithered onto it instead of rounded, the
    mean is its nearest grid value."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    n, c, h, w = x_uint8.shape
    kept = x_uint8[~removed.view(n, 1, h, w).expand(n, c, h, w)]
    content = bool(kept.numel()) and bool(kept.max() != kept.min())
    if fill == "mean":
        value = fill_value(mean, x_uint8.device)
        if grid is not None:
            value = leakage.nearest(value.double(), grid).round().to(torch.uint8)
        return torch.where(removed.view(n, 1, h, w), value.view(1, c, 1, 1), x_uint8), {"content": content}
    filled, info = noisy_linear_impute(to_float(x_uint8), removed, noise, generator)
    pixels = filled.clamp(0, 1) * 255
    if grid is not None:
        pixels = torch.where(removed.view(n, 1, h, w), leakage.dither(pixels, grid, generator), pixels.double())
    return pixels.round().to(torch.uint8), {**info, "content": content}


def ablate(x_uint8: torch.Tensor, ranks: torch.Tensor, fraction: float, mode: str,
           fill: torch.Tensor) -> torch.Tensor:
    """Replace the top `fraction` of pixels (roar) or all but them (kar) by `fill` (C,), every channel."""
    n, c, h, w = x_uint8.shape
    removed = removal_mask(ranks.to(x_uint8.device), fraction, mode, (h, w))
    return torch.where(removed.view(n, 1, h, w), fill.view(1, c, 1, 1).to(x_uint8.device), x_uint8)


def ablated_data(data: TensorData, ranks: dict, fraction: float, mode: str, fill: str = "noisy_linear",
                 noise: float = 0.01, seed: int = 0, dither: bool = False) -> tuple[TensorData, dict]:
    """The dataset with both splits ablated (same normalization statistics as the original); with
    `dither`, fill values on the training images' value grid (see `impute`)."""
    grid = leakage.value_grid(data.x_train) if dither else None
    out, info = {}, {}
    for split in ("train", "test"):
        x = getattr(data, f"x_{split}")
        removed = removal_mask(ranks[split].to(x.device), fraction, mode, tuple(x.shape[-2:]))
        gen = torch.Generator(device=x.device).manual_seed(seed * 2 + (split == "test"))
        out[split], info[split] = impute(x, removed, fill, data.mean, noise, gen, grid)
    ablated = TensorData(f"{data.name}-{mode}{fraction:g}", out["train"], data.y_train, out["test"], data.y_test,
                         data.classes, data.mean, data.std)
    return ablated, info


def leakage_data(data: TensorData, ranks: dict, fraction: float) -> TensorData:
    """The control for class information in the removal mask itself (leakage.mask_data): images that
    are the binary mask of the removed pixels, nothing of the image."""
    def removed(split):
        x = getattr(data, f"x_{split}")
        return removal_mask(ranks[split].to(x.device), fraction, "roar", tuple(x.shape[-2:]))

    return leakage.mask_data(data, removed("train"), removed("test"), f"mask{fraction:g}")


FIT_STATUS = {"fitted": "training accuracy reached the floor",
              "no_content": "below the floor, but the kept pixels are identical in every training image: there "
                            "was nothing to fit, and chance accuracy is the measurement",
              "underfit": "below the floor although the data had content: the optimizer did not fit, so the "
                          "run is excluded from means and scores"}


def fit_status(train_acc: float, fit_floor: float, content: bool = True) -> str:
    """One of FIT_STATUS: whether a retrain's accuracy measures the data or a learner that did not fit."""
    if train_acc >= fit_floor:
        return "fitted"
    return "underfit" if content else "no_content"


def retrain(data: TensorData, arch: str, regs, train_cfg: dict, model_cfg: dict, seeds, device,
            clean: TensorData | None = None, fit_floor: float = 0.0, content: bool = True) -> list[dict]:
    """Train the learner from scratch once per seed; its final training accuracy, its test accuracy on
    `data` and (given `clean`) on the unablated test set; `status` (FIT_STATUS) and `fitted` (False
    only for 'underfit': a run that did not fit measures the optimizer, not the data)."""
    rows = []
    for seed in seeds:
        result = train(data, arch, regs, train_cfg, model_cfg, seed=seed, device=device)
        status = fit_status(result.metrics["train_acc"], fit_floor, content)
        row = {"retrain_seed": seed, "test_acc": result.metrics["test_acc"], "test_loss": result.metrics["test_loss"],
               "train_acc": result.metrics["train_acc"], "status": status, "fitted": status != "underfit"}
        if clean is not None:
            row["clean_test_acc"] = evaluate(result.model, clean.x_test.to(device), clean.y_test.to(device))["acc"]
        rows.append(row)
    return rows


def _area(fractions, values) -> float:
    fr = np.asarray(fractions, dtype=float)
    return float(np.trapezoid(np.asarray(values, dtype=float), fr)) if len(fr) > 1 else float(values[0])


def scores(curves: pd.DataFrame) -> pd.DataFrame:
    """Per method and mode: the area between its mean accuracy curve and the random method's
    (trapezoid over the fractions), from the runs that fitted. Positive = a better ranking than
    random: ROAR removes more information (accuracy lower than random), KAR keeps more (higher).
    A point whose runs all failed to fit leaves the score undefined (NaN), never silently filled."""
    fitted = curves[curves["fitted"].astype(bool)] if "fitted" in curves else curves
    mean = fitted.groupby(["mode", "method", "fraction"]).test_acc.mean()
    rows = []
    for mode, group in curves.groupby("mode"):
        fractions = sorted(group.fraction.unique())
        random = mean.get(mode, pd.Series(dtype=float))
        if "random" not in group.method.values:
            raise ValueError("ROAR scores need the 'random' method as the baseline")
        base = random["random"].reindex(fractions) if "random" in random.index.get_level_values(0) else \
            pd.Series(np.nan, index=fractions)
        for method, g in group.groupby("method"):
            acc = (random[method] if method in random.index.get_level_values(0) else pd.Series(dtype=float)
                   ).reindex(fractions)
            diff = (base - acc) if mode == "roar" else (acc - base)
            runs = g[g.fraction > 0] if (g.fraction > 0).any() else g
            unfitted = int((~runs["fitted"].astype(bool)).sum()) if "fitted" in runs else 0
            rows.append({"mode": mode, "method": method,
                         "score": _area(fractions, diff.values) if diff.notna().all() else float("nan"),
                         "acc_at_max_fraction": float(acc.iloc[-1]), "max_fraction": float(fractions[-1]),
                         "runs": int(len(runs)), "unfitted": unfitted})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- ROAD

@torch.no_grad()
def road_curves(model, x: torch.Tensor, y: torch.Tensor, ranks: torch.Tensor, fractions, noise: float = 0.01,
                seed: int = 0, batch_size: int = 500, grid: torch.Tensor | None = None) -> list[dict]:
    """Accuracy of `model` on float images x (N, C, H, W) with the ranked pixels imputed (noisy linear),
    for each order (MoRF, LeRF) and fraction; fraction 0 is the clean accuracy. `grid` (pixel units,
    leakage.value_grid): imputed values dithered onto it."""
    model.eval()
    rows = []
    gen = torch.Generator(device=x.device).manual_seed(seed)
    clean = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                for i in range(0, len(y), batch_size))
    for order in ORDERS:
        rows.append({"order": order, "fraction": 0.0, "accuracy": clean / len(y), "iterations": 0, "residual": 0.0})
        for fraction in fractions:
            correct, iterations, residual = 0, 0, 0.0
            for i in range(0, len(y), batch_size):
                xb, yb = x[i:i + batch_size], y[i:i + batch_size]
                removed = road_mask(ranks[i:i + batch_size].to(x.device), fraction, order, tuple(x.shape[-2:]))
                filled, info = noisy_linear_impute(xb, removed, noise, gen)
                if grid is not None:
                    on_grid = leakage.dither(filled.clamp(0, 1) * 255, grid, gen).to(filled.dtype) / 255
                    filled = torch.where(removed.unsqueeze(1), on_grid, filled)
                correct += int((model(filled).argmax(1) == yb).sum())
                iterations, residual = max(iterations, info["iterations"]), max(residual, info["residual"])
            rows.append({"order": order, "fraction": float(fraction), "accuracy": correct / len(y),
                         "iterations": iterations, "residual": residual})
    return rows


def area_under(curve: pd.DataFrame) -> float:
    """Area under an accuracy curve over the fractions (trapezoid)."""
    curve = curve.sort_values("fraction")
    return _area(curve.fraction.values, curve.accuracy.values)


def road_score(curves: pd.DataFrame) -> float:
    """Area between the LeRF and the MoRF accuracy curves over the fractions (positive: removing the
    pixels ranked most relevant hurts more than removing those ranked least relevant)."""
    table = curves.pivot_table(index="fraction", columns="order", values="accuracy").sort_index()
    return _area(table.index, (table["lerf"] - table["morf"]).values)


ROAR_DEFAULTS = {"cells": [], "methods": ["random", "saliency", "integrated_gradients", "gradcam"],
                 "fractions": [0.1, 0.3, 0.5, 0.7, 0.9], "modes": ["roar", "kar"], "retrain_seeds": [0, 1],
                 "fill": "noisy_linear", "noise": 0.01, "dither": False, "fit_floor": 0.5, "leakage": True,
                 "detector": dict(leakage.DETECTOR_DEFAULTS),
                 "learner": {"arch": None, "reg": "none", "width": None}, "train": {}, "batch_size": 256,
                 "options": {}}
ROAD_DEFAULTS = {"enabled": True, "methods": ["random", "saliency", "integrated_gradients", "gradcam"],
                 "fractions": [0.1, 0.3, 0.5, 0.7, 0.9], "noise": 0.01, "dither": False, "images": 500, "batch_size": 250,
                 "options": {}}
