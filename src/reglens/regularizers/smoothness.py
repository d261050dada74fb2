"""Penalties on derivatives with respect to the input: Jacobian, input gradient (double backprop),
input gradient inside an annotated region (right for the right reasons);
and the Jacobian determinant of a square 2-D map (refused for non-square ones)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reglens.regularizers.base import Regularizer


def jacobian_frobenius_estimate(logits: torch.Tensor, x: torch.Tensor, projections: int = 1,
                                create_graph: bool = True) -> torch.Tensor:
    """Per-example random-projection estimate of ||d logits / d x||_F^2 (Hoffman, Roberts & Yaida 2019):
    C * mean_v ||v^T J||^2 with v uniform on the unit sphere of the C-dim output space; unbiased."""
    batch, classes = logits.shape
    total = torch.zeros(batch, device=logits.device, dtype=logits.dtype)
    for _ in range(projections):
        v = torch.randn(batch, classes, device=logits.device, dtype=logits.dtype)
        v = v / v.norm(dim=1, keepdim=True)
        (jv,) = torch.autograd.grad((logits * v).sum(), x, create_graph=create_graph, retain_graph=True)
        total = total + classes * jv.flatten(1).pow(2).sum(1)
    return total / projections


class Jacobian(Regularizer):
    kind = "jacobian"
    params = {"weight": 0.01, "projections": 1}
    summary = "weight/2 * mean_batch ||d logits / d x||_F^2, estimated with `projections` random projections"
    needs_input_grad = True
    nonnegative = ("weight",)

    def validate(self):
        if not isinstance(self.projections, int) or self.projections < 1:
            raise ValueError(f"regularizer 'jacobian': projections must be an integer >= 1, got {self.projections!r}")

    def penalty(self, model, x, y, logits):
        if not model.training:
            return None
        return 0.5 * self.weight * jacobian_frobenius_estimate(logits, x, self.projections).mean()

    def step_cost(self) -> float:
        return 1.0 + 1.42 * self.projections  # 2.42x measured with one projection (a double backward each)


class InputGradient(Regularizer):
    kind = "input_gradient"
    params = {"weight": 0.01}
    summary = "weight * mean_batch ||d CE(f(x), y) / d x||^2 (double backpropagation)"
    needs_input_grad = True
    nonnegative = ("weight",)

    def penalty(self, model, x, y, logits):
        if not model.training:
            return None
        per_example_sum = F.cross_entropy(logits, y, reduction="sum")  # grads stay per example
        (grad,) = torch.autograd.grad(per_example_sum, x, create_graph=True, retain_graph=True)
        return self.weight * grad.flatten(1).pow(2).sum(1).mean()

    def step_cost(self) -> float:
        return 2.36  # measured: one double backward


class RightReasons(Regularizer):
    """Ross, Hughes & Doshi-Velez (2017), "Right for the right reasons": weight times the squared input
    gradient of the summed log-probabilities inside each image's annotated region (the planted mark:
    what the model should not use), summed over pixels and channels, mean over the batch (the data loss
    is a batch mean too, so the weight scales as in the reference code's sums)."""

    kind = "rrr"
    params = {"weight": 10.0}
    summary = "weight * mean_batch sum_pixels (A * d sum_k log p_k / d x)^2, A the planted mark (shortcut studies)"
    needs_input_grad = True
    needs_annotation = True
    nonnegative = ("weight",)

    def penalty(self, model, x, y, logits, annotation=None):
        if not model.training:
            return None
        log_p = F.log_softmax(logits, dim=1)
        (grad,) = torch.autograd.grad(log_p.sum(), x, create_graph=True, retain_graph=True)
        return self.weight * (grad * annotation.unsqueeze(1)).pow(2).flatten(1).sum(1).mean()

    def step_cost(self) -> float:
        return 2.36  # one double backward, as input_gradient


def square_jacobian_det(fn, z: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """det of the 2 x 2 Jacobian of a map of the plane, per example: z (N, 2) -> (N,), exactly
    (one backward pass per output coordinate; rows are independent across examples)."""
    z = z if z.requires_grad else z.detach().requires_grad_(True)
    out = fn(z)
    (row0,) = torch.autograd.grad(out[:, 0].sum(), z, create_graph=create_graph, retain_graph=True)
    (row1,) = torch.autograd.grad(out[:, 1].sum(), z, create_graph=create_graph, retain_graph=True)
    return row0[:, 0] * row1[:, 1] - row0[:, 1] * row1[:, 0]


class JacobianDeterminant(Regularizer):
    """weight * mean over the batch of (det J - 1)^2, J the Jacobian of the model's 2-D -> 2-D map
    (`square_map`, volume preservation where det J = 1). Defined only for models with such a map
    (the MLP of the 2-D toy study); a classifier's Jacobian (classes x pixels) is not square."""

    kind = "jacobian_det"
    params = {"weight": 0.01}
    nonnegative = ("weight",)
    summary = "(det J - 1)^2 of the model's square 2-D -> 2-D map (architectures with one: mlp); refused elsewhere"

    def check_task(self, input_dim: int, output_dim: int, square_dim: int | None = None) -> None:
        if square_dim is None:
            raise ValueError(
                f"regularizer 'jacobian_det': the Jacobian of these classifiers is {output_dim} x {input_dim} "
                "(classes x input pixels), not square, so its determinant is undefined, and the architecture "
                "has no square map. Use it with the 'mlp' architecture (2-D toy study), or use 'jacobian' "
                "(Frobenius norm) instead.")

    def penalty(self, model, x, y, logits):
        if not model.training:
            return None
        z = model.normalized_points(x.detach())
        det = square_jacobian_det(model.square_map, z)
        return self.weight * (det - 1).pow(2).mean()

    def step_cost(self) -> float:
        return 1.0  # two backward passes through a 2 -> h -> 2 map: negligible beside the step
