"""Singular value bounding: soft (a penalty) and hard (orthogonal init + projection)."""
from __future__ import annotations

import torch
from torch import nn

from reglens.regularizers.base import Regularizer, penalized_weights


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Conv weights (out, in, kh, kw) as the (out, in*kh*kw) matrix; linear weights as they are."""
    return weight.reshape(weight.shape[0], -1)


def orthogonality_gap(matrix: torch.Tensor) -> torch.Tensor:
    """||G - I||_F^2 with G the Gram matrix of the smaller side: W^T W when W is tall
    (out >= fan_in), W W^T otherwise, so a full-rank orthogonal W scores 0 either way."""
    rows, cols = matrix.shape
    gram = matrix.T @ matrix if rows >= cols else matrix @ matrix.T
    eye = torch.eye(gram.shape[0], device=matrix.device, dtype=matrix.dtype)
    return (gram - eye).pow(2).sum()


class SoftSVB(Regularizer):
    kind = "soft_svb"
    params = {"weight": 1e-4}
    summary = "weight * sum_layers ||W^T W - I||_F^2 (conv weights reshaped; Gram of the smaller side)"
    nonnegative = ("weight",)

    def penalty(self, model, x, y, logits):
        return self.weight * torch.stack([orthogonality_gap(as_matrix(w)) for w in penalized_weights(model)]).sum()


@torch.no_grad()
def bound_singular_values(weight: torch.Tensor, eps: float) -> torch.Tensor:
    """W = U S V^T  ->  U clip(S, 1/(1+eps), 1+eps) V^T, in the weight's own shape."""
    matrix = as_matrix(weight).double()
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    s = s.clamp(1.0 / (1.0 + eps), 1.0 + eps)
    return ((u * s) @ vh).to(weight.dtype).reshape(weight.shape)


class HardSVB(Regularizer):
    kind = "hard_svb"
    params = {"eps": 0.05, "every": 100, "orthogonal_init": True}
    summary = ("orthogonal init; every `every` steps and after the last one clip each weight matrix's singular "
               "values into [1/(1+eps), 1+eps]")
    nonnegative = ("eps",)

    def validate(self):
        if not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"regularizer 'hard_svb': every must be an integer >= 1, got {self.every!r}")

    def init_model(self, model):
        if self.orthogonal_init:
            for w in penalized_weights(model):
                nn.init.orthogonal_(w)

    @torch.no_grad()
    def after_step(self, model, step):
        if step % self.every == 0:
            self.finish(model)

    @torch.no_grad()
    def finish(self, model):
        """Project every weight matrix into the band (also after the last step, so the saved model is)."""
        for w in penalized_weights(model):
            w.copy_(bound_singular_values(w, self.eps))
