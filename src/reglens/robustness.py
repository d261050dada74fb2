"""Attacks (white-box, untargeted). Models take pixels in [0, 1], so eps is in pixel units."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _loss_grad(model, x, y):
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def _l2_normalize(v: torch.Tensor) -> torch.Tensor:
    norms = v.flatten(1).norm(dim=1).clamp_min(1e-12)
    return v / norms.view(-1, *[1] * (v.dim() - 1))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project perturbations onto the eps-ball of the given norm ('linf' or 'l2')."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    norms = delta.flatten(1).norm(dim=1).view(-1, *[1] * (delta.dim() - 1))
    return delta * torch.clamp(eps / norms.clamp_min(1e-12), max=1.0)


def pgd(model, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, norm: str = "linf",
        random_start: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy within the eps-ball and the pixel range [0, 1].
    steps=1, alpha=eps, random_start=False is FGSM (for 'linf')."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    x = x.detach()
    if eps == 0 or steps == 0:
        return x.clone()
    delta = torch.zeros_like(x)
    if random_start:
        if norm == "linf":  # uniform in the cube
            delta = (torch.rand(x.shape, device=x.device, generator=generator, dtype=x.dtype) * 2 - 1) * eps
        else:  # a Gaussian direction with a radius uniform in [0, eps]
            direction = _l2_normalize(torch.randn(x.shape, device=x.device, generator=generator, dtype=x.dtype))
            radius = torch.rand(len(x), device=x.device, generator=generator, dtype=x.dtype) * eps
            delta = direction * radius.view(-1, *[1] * (x.dim() - 1))
        delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        grad = _loss_grad(model, x + delta, y)
        step = grad.sign() if norm == "linf" else _l2_normalize(grad)
        delta = project(delta + alpha * step, eps, norm)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def fgsm(model, x, y, eps: float, norm: str = "linf") -> torch.Tensor:
    return pgd(model, x, y, eps, eps, 1, norm, random_start=False)


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


def boundary_planes(model, x: torch.Tensor, y: torch.Tensor, span: float, resolution: int,
                    seed: int = 0) -> tuple[list[dict], list[torch.Tensor]]:
    """For each image: one plane of two random orthonormal directions and one spanned by the
    (normalized) FGSM-L2 gradient direction and a random direction orthogonal to it."""
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    rows, maps = [], []
    for i in range(len(y)):
        x0, y0 = x[i:i + 1], y[i:i + 1]
        r1 = torch.randn(x0.shape, device=x.device, generator=gen)
        r2 = torch.randn(x0.shape, device=x.device, generator=gen)
        g = _loss_grad(model, x0, y0)
        for kind, first in (("random", r1), ("adversarial", g)):
            d1 = first / first.norm().clamp_min(1e-12)
            d2 = r2 - (r2 * d1).sum() * d1
            d2 = d2 / d2.norm().clamp_min(1e-12)
            labels = class_map(model, x0, d1, d2, span, resolution)
            rows.append({"image": i, "plane": kind, "label": int(y0), **total_variation(labels.cpu()),
                         "n_classes_in_map": int(labels.unique().numel())})
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

def weight_stats(model, near_zero: float = 1e-3) -> tuple[list[dict], list[dict]]:
    """Per conv/linear layer: L1, L2 norms, fraction of |w| < near_zero; and its singular values."""
    from reglens.regularizers.spectral import as_matrix

    stats, spectrum = [], []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            w = module.weight.detach().double()
            s = torch.linalg.svdvals(as_matrix(w))
            stats.append({"layer": name, "type": type(module).__name__, "params": w.numel(),
                          "l1": float(w.abs().sum()), "l2": float(w.norm()),
                          "frac_near_zero": float((w.abs() < near_zero).double().mean()),
                          "sigma_max": float(s.max()), "sigma_min": float(s.min())})
            spectrum += [{"layer": name, "index": i, "sigma": float(v)} for i, v in enumerate(s)]
    return stats, spectrum


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


# ---------------------------------------------------------------- one cell

ROBUSTNESS_DEFAULTS = {
    "n_images": 500, "norm": "linf", "batch_size": 500,
    "fgsm_eps": [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255],
    "pgd_eps": [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255], "pgd_steps": [10],
    "alpha_factor": 2.5, "random_start": True,
    "boundary": {"images": 3, "resolution": 41, "span": 2.0},
    "calibration_bins": 15, "near_zero": 1e-3, "pca_images": 1000,
}


def merged_config(cfg: dict | None) -> dict:
    out = {**ROBUSTNESS_DEFAULTS, **(cfg or {})}
    out["boundary"] = {**ROBUSTNESS_DEFAULTS["boundary"], **((cfg or {}).get("boundary") or {})}
    return out


def run_attacks(model_path, dataset_path, out_csv, cfg: dict | None = None, device: str = "auto") -> list[dict]:
    import pandas as pd

    from reglens import data as datasets, models
    from reglens.io import write_csv
    from reglens.train import resolve_device

    cfg = merged_config(cfg)
    dev = resolve_device(device)
    data = datasets.load(dataset_path, dev)
    model = models.load(model_path, dev)
    x, y = datasets.test_subset(data, cfg["n_images"], seed=0)
    rows = attack_curves(model, x, y, cfg["fgsm_eps"], cfg["pgd_eps"], cfg["pgd_steps"], cfg["norm"],
                         cfg["alpha_factor"], cfg["random_start"], cfg["batch_size"])
    write_csv(out_csv, pd.DataFrame(rows))
    return rows


def run_diagnostics(model_path, dataset_path, out: dict, cfg: dict | None = None, device: str = "auto") -> dict:
    """Decision-boundary maps and their TV, calibration, weight statistics and spectra, PCA.
    `out` maps boundary, boundary_maps, calibration, reliability, weights, spectrum, pca to paths."""
    import pandas as pd

    from reglens import data as datasets, models
    from reglens.data import to_float
    from reglens.io import torch_save, write_csv, write_json
    from reglens.train import resolve_device

    cfg = merged_config(cfg)
    dev = resolve_device(device)
    data = datasets.load(dataset_path, dev)
    model = models.load(model_path, dev)
    b = cfg["boundary"]
    x, y = datasets.test_subset(data, b["images"], seed=1)
    rows, maps = boundary_planes(model, x, y, b["span"], b["resolution"])
    write_csv(out["boundary"], pd.DataFrame(rows))
    torch_save({"maps": torch.stack(maps), "planes": [r["plane"] for r in rows],
                "images": [r["image"] for r in rows], "span": b["span"]}, out["boundary_maps"])
    with torch.no_grad():
        probs = torch.cat([F.softmax(model(to_float(data.x_test[sl])), 1)
                           for sl in _batches(len(data.y_test), cfg["batch_size"])])
    summary, table = calibration(probs, data.y_test, cfg["calibration_bins"])
    write_json(out["calibration"], summary)
    write_csv(out["reliability"], pd.DataFrame(table))
    stats, spectrum = weight_stats(model, cfg["near_zero"])
    write_csv(out["weights"], pd.DataFrame(stats))
    write_csv(out["spectrum"], pd.DataFrame(spectrum))
    xp, yp = datasets.test_subset(data, cfg["pca_images"], seed=2)
    write_csv(out["pca"], pd.DataFrame(penultimate_pca(model, xp, yp)))
    return {"calibration": summary, "boundary": rows}
