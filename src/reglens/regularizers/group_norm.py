"""Group block norm on convolution filters (the TUKL project; IJCAI 2021, code srb-cv/cgl)."""
from __future__ import annotations

import torch
from torch import nn

from reglens.regularizers.base import Regularizer


def group_block_norm(weight: torch.Tensor, groups: int, p: float, q: float) -> torch.Tensor:
    """|| ( ||w_g||_p )_{g=1..G} ||_q with the output filters split into G contiguous groups
    (near-equal when G does not divide the filter count)."""
    blocks = torch.tensor_split(weight.flatten(1), groups, dim=0)
    inner = torch.stack([torch.linalg.vector_norm(b, ord=p) for b in blocks])
    return torch.linalg.vector_norm(inner, ord=q)


class GroupNorm(Regularizer):
    kind = "group_norm"
    params = {"weight": 5e-3, "groups": 5, "p": 2, "q": 1}
    summary = "weight * sum_conv_layers ||(||w_g||_p)_g||_q, G groups of output filters"
    nonnegative = ("weight",)

    def validate(self):
        if not isinstance(self.groups, int) or self.groups < 1:
            raise ValueError(f"regularizer 'group_norm': groups must be an integer >= 1, got {self.groups!r}")
        for key in ("p", "q"):
            if getattr(self, key) < 1:
                raise ValueError(f"regularizer 'group_norm': {key} must be >= 1, got {getattr(self, key)!r}")

    def penalty(self, model, x, y, logits):
        convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
        return self.weight * torch.stack([group_block_norm(w, min(self.groups, w.shape[0]), self.p, self.q)
                                          for w in convs]).sum()
