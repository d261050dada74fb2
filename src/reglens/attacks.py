"""White-box untargeted attacks (FGSM, PGD). Models take pixels in [0, 1], so eps is in pixel units.

Below both the adversarial-training regularizer and the robustness stage."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def loss_grad(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy with respect to the input."""
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
        grad = loss_grad(model, x + delta, y)
        step = grad.sign() if norm == "linf" else _l2_normalize(grad)
        delta = project(delta + alpha * step, eps, norm)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def fgsm(model, x, y, eps: float, norm: str = "linf") -> torch.Tensor:
    return pgd(model, x, y, eps, eps, 1, norm, random_start=False)
