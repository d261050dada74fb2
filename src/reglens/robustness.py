"""Robustness measures: attack curves, decision-boundary maps and their total variation, calibration,
weight statistics and spectra, and the PCA of penultimate representations."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from reglens.attacks import fgsm, loss_grad, pgd
from reglens.regularizers.spectral import as_matrix
from reglens.worstcase import ITERATIONS_DEFAULTS, MASKING_DEFAULTS, WORST_CASE_DEFAULTS


# ---------------------------------------------------------------- robustness curves

def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.no_grad()
def _score(model, x, y) -> tuple[int, float]:
    logits = model(x)
    return int((logits.argmax(1) == y).sum()), float(F.cross_entropy(logits, y, reduction="sum"))


def attack_curves(model, x: torch.Tensor, y: torch.Tensor, fgsm_eps, pgd_eps, pgd_steps, norm: str = "linf",
                  alpha_factor: float = 2.5, random_start: bool = True, batch_size: int = 500,
                  seed: int = 0) -> list[dict]:
    """Accuracy and mean loss under FGSM for each eps and under PGD for each (eps, steps).
    PGD's step size is alpha_factor * eps / steps (Madry et al.'s 2.5 eps / steps)."""
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    settings = [("fgsm", float(e), 1) for e in fgsm_eps] + \
               [("pgd", float(e), int(k)) for e in pgd_eps for k in pgd_steps]
    rows = []
    for attack, eps, steps in settings:
        correct, loss = 0, 0.0
        for sl in _batches(len(y), batch_size):
            xb, yb = x[sl], y[sl]
            if attack == "fgsm":
                adv = fgsm(model, xb, yb, eps, norm)
            else:
                adv = pgd(model, xb, yb, eps, alpha_factor * eps / steps, steps, norm, random_start, gen)
            c, l = _score(model, adv, yb)
            correct, loss = correct + c, loss + l
        rows.append({"attack": attack, "norm": norm, "eps": eps, "steps": steps,
                     "accuracy": correct / len(y), "mean_loss": loss / len(y), "n_images": len(y)})
    return rows


# ---------------------------------------------------------------- decision boundaries

@torch.no_grad()
def class_map(model, x0: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, span: float, resolution: int,
              batch_size: int = 1024) -> torch.Tensor:
    """Predicted class on the plane x0 + a*d1 + b*d2, a, b in [-span, span] (resolution x resolution).
    d1, d2 are unit-norm (L2) directions; points are not clipped to the pixel range."""
    coords = torch.linspace(-span, span, resolution, device=x0.device)
    a, b = torch.meshgrid(coords, coords, indexing="ij")
    points = x0 + a.reshape(-1, 1, 1, 1) * d1 + b.reshape(-1, 1, 1, 1) * d2
    labels = torch.cat([model(points[sl]).argmax(1) for sl in _batches(len(points), batch_size)])
    return labels.view(resolution, resolution)


def total_variation(labels) -> dict:
    """Total variation of a class map with the indicator of a class change as the difference:
    anisotropic = sum (|dx| + |dy|), isotropic = sum sqrt(dx^2 + dy^2), forward differences over the
    (H-1) x (W-1) interior; each also divided by that count (per-pixel)."""
    u = torch.as_tensor(labels)
    dx = (u[1:, :-1] != u[:-1, :-1]).double()
    dy = (u[:-1, 1:] != u[:-1, :-1]).double()
    count = dx.numel()
    aniso = float((dx + dy).sum())
    iso = float(torch.sqrt(dx ** 2 + dy ** 2).sum())
    return {"tv_anisotropic": aniso, "tv_isotropic": iso,
            "tv_anisotropic_per_pixel": aniso / count, "tv_isotropic_per_pixel": iso / count}


def boundary_distance(labels: torch.Tensor, span: float) -> float:
    """Distance (L2 pixel units, in the plane) from the centre of a class map to the nearest grid point
    of another class than the centre's; NaN when the whole map has the centre's class (no boundary
    within `span`). Measured along the plane's own directions, so that how far the boundary is (margin)
    can be told apart from how rugged it is (TV)."""
    labels = torch.as_tensor(labels)
    n = labels.shape[0]
    centre = labels[n // 2, n // 2]
    coords = torch.linspace(-span, span, n, dtype=torch.float64)
    a, b = torch.meshgrid(coords, coords, indexing="ij")
    other = labels != centre
    return float(torch.sqrt(a ** 2 + b ** 2)[other].min()) if bool(other.any()) else float("nan")


def boundary_planes(model, x: torch.Tensor, y: torch.Tensor, span: float, resolution: int,
                    seed: int = 0) -> tuple[list[dict], list[torch.Tensor]]:
    """For each image: one plane of two random orthonormal directions and one spanned by the
    (normalized) FGSM-L2 gradient direction and a random direction orthogonal to it. Per plane: the
    total variation of its class map, whether it holds any boundary, and the distance to it."""
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    rows, maps = [], []
    for i in range(len(y)):
        x0, y0 = x[i:i + 1], y[i:i + 1]
        r1 = torch.randn(x0.shape, device=x.device, generator=gen)
        r2 = torch.randn(x0.shape, device=x.device, generator=gen)
        g = loss_grad(model, x0, y0)
        for kind, first in (("random", r1), ("adversarial", g)):
            d1 = first / first.norm().clamp_min(1e-12)
            d2 = r2 - (r2 * d1).sum() * d1
            d2 = d2 / d2.norm().clamp_min(1e-12)
            labels = class_map(model, x0, d1, d2, span, resolution)
            rows.append({"image": i, "plane": kind, "label": int(y0), **total_variation(labels.cpu()),
                         "n_classes_in_map": int(labels.unique().numel()),
                         "has_boundary": bool(labels.unique().numel() > 1),
                         "distance": boundary_distance(labels.cpu(), span)})
            maps.append(labels.cpu())
    return rows, maps


# ---------------------------------------------------------------- calibration

def calibration(probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> tuple[dict, list[dict]]:
    """Expected calibration error over equal-width confidence bins, NLL, Brier score, and the
    reliability diagram's bins."""
    probs, y = probs.double().cpu(), y.cpu()
    conf, pred = probs.max(1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    ece, table = 0.0, []
    for b in range(bins):
        lo, hi = edges[b], edges[b + 1]
        inside = (conf > lo) & (conf <= hi) if b > 0 else (conf >= lo) & (conf <= hi)
        count = int(inside.sum())
        acc = float(correct[inside].mean()) if count else float("nan")
        mean_conf = float(conf[inside].mean()) if count else float("nan")
        if count:
            ece += count / len(y) * abs(acc - mean_conf)
        table.append({"bin": b, "lower": float(lo), "upper": float(hi), "count": count,
                      "accuracy": acc, "confidence": mean_conf})
    onehot = F.one_hot(y, probs.shape[1]).double()
    summary = {"ece": ece, "nll": float(-torch.log(probs.gather(1, y[:, None]).clamp_min(1e-300)).mean()),
               "brier": float(((probs - onehot) ** 2).sum(1).mean()), "accuracy": float(correct.mean()),
               "bins": bins}
    return summary, table


# ---------------------------------------------------------------- weights and representations

def weight_stats(model, near_zero: float = 1e-3, relative: float = 1e-3) -> tuple[list[dict], list[dict]]:
    """Per conv/linear layer: L1, L2 norms, the fraction of |w| < near_zero and of |w| below `relative`
    x the layer's largest |w| (sparsity, as L1 and elastic net induce it); and its singular values."""
    stats, spectrum = [], []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            w = module.weight.detach().double()
            s = torch.linalg.svdvals(as_matrix(w))
            stats.append({"layer": name, "type": type(module).__name__, "params": w.numel(),
                          "l1": float(w.abs().sum()), "l2": float(w.norm()),
                          "frac_near_zero": float((w.abs() < near_zero).double().mean()),
                          "frac_below_relative": float((w.abs() < relative * w.abs().max()).double().mean()),
                          "sigma_max": float(s.max()), "sigma_min": float(s.min())})
            spectrum += [{"layer": name, "index": i, "sigma": float(v)} for i, v in enumerate(s)]
    return stats, spectrum


def weight_histograms(model, bins: int = 50) -> list[dict]:
    """Per conv/linear layer: counts of its weights in `bins` equal bins over [-max|w|, max|w|]."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            w = module.weight.detach().double().flatten().cpu()
            top = float(w.abs().max()) or 1.0
            counts = torch.histc(w, bins=bins, min=-top, max=top)
            edges = torch.linspace(-top, top, bins + 1, dtype=torch.float64)
            rows += [{"layer": name, "bin": i, "low": float(edges[i]), "high": float(edges[i + 1]),
                      "count": int(counts[i])} for i in range(bins)]
    return rows


@torch.no_grad()
def feature_maps(model, x: torch.Tensor, layers, channels: int = 8) -> dict:
    """The outputs of the named `layers` on images x, their first `channels` channels (N, k, H, W)."""
    model.eval()
    caught = {}
    hooks = [model.get_submodule(layer).register_forward_hook(
        lambda module, inputs, out, layer=layer: caught.__setitem__(layer, out[:, :channels].float().cpu()))
        for layer in layers]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return {layer: caught[layer] for layer in layers}


@torch.no_grad()
def decision_grid(model, resolution: int, channels: int = 2) -> torch.Tensor:
    """The predicted class at every point of a resolution x resolution grid over the input square
    [0, 1]^2 (pixel units) of a 2-channel 1x1 model, rows indexed by y, columns by x."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ticks = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) / resolution
    yy, xx = torch.meshgrid(ticks, ticks, indexing="ij")
    points = torch.stack([xx.flatten(), yy.flatten()], 1)[:, :channels, None, None]
    grid = model(points).argmax(1).view(resolution, resolution).to(torch.uint8).cpu()
    model.train(was_training)
    return grid


@torch.no_grad()
def penultimate_pca(model, x: torch.Tensor, y: torch.Tensor, components: int = 2) -> list[dict]:
    model.eval()
    z = model.embed(x).double()
    z = z - z.mean(0)
    _, s, vh = torch.linalg.svd(z, full_matrices=False)
    coords = z @ vh[:components].T
    explained = (s[:components] ** 2 / (s ** 2).sum()).tolist()
    return [{"pc1": float(c[0]), "pc2": float(c[1]) if components > 1 else 0.0, "label": int(t),
             "explained_pc1": explained[0], "explained_pc2": explained[1] if components > 1 else 0.0}
            for c, t in zip(coords, y)]


def first_layer_filters(state_dict: dict) -> np.ndarray | None:
    """The first convolution's weights (out, in, k, k) of a checkpoint's state dict (the first 4-D
    weight in registration order), or None for a network without one."""
    for name, value in state_dict.items():
        if name.endswith("weight") and value.dim() == 4:
            return value.detach().double().cpu().numpy()
    return None


ROBUSTNESS_DEFAULTS = {
    "n_images": 500, "norm": "linf", "batch_size": 500,
    "fgsm_eps": [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255],
    "pgd_eps": [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255], "pgd_steps": [10],
    "alpha_factor": 2.5, "random_start": True,
    "boundary": {"images": 40, "resolution": 41, "span": 2.0},  # 40 images: 80 planes (docs/robustness.md)
    "calibration_bins": 15, "near_zero": 1e-3, "pca_images": 1000,
    "worst_case": WORST_CASE_DEFAULTS, "iterations": ITERATIONS_DEFAULTS, "masking": MASKING_DEFAULTS,
}


def merged_config(cfg: dict | None) -> dict:
    out = {**ROBUSTNESS_DEFAULTS, **(cfg or {})}
    for key in ("boundary", "worst_case", "iterations", "masking"):
        out[key] = {**ROBUSTNESS_DEFAULTS[key], **((cfg or {}).get(key) or {})}
    return out


def middle_eps(eps) -> float:
    """The middle non-zero budget of a list (the scorecard's), 0 where there is none."""
    nonzero = sorted(float(e) for e in eps if e > 0)
    return nonzero[(len(nonzero) - 1) // 2] if nonzero else 0.0
