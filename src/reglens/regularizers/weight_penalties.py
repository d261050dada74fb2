"""Penalties on the weights: L1, L2, elastic net. They act on conv and linear weights only."""
from __future__ import annotations

import torch

from reglens.regularizers.base import Regularizer, penalized_weights


def l1_norm(weights) -> torch.Tensor:
    return torch.stack([w.abs().sum() for w in weights]).sum()


def squared_l2_norm(weights) -> torch.Tensor:
    return torch.stack([w.pow(2).sum() for w in weights]).sum()


class L1(Regularizer):
    kind = "l1"
    params = {"weight": 1e-5}
    summary = "weight * sum |w|"
    nonnegative = ("weight",)

    def penalty(self, model, x, y, logits):
        return self.weight * l1_norm(penalized_weights(model))


class L2(Regularizer):
    kind = "l2"
    params = {"weight": 5e-4}
    summary = "weight/2 * sum w^2 (the same gradient as SGD weight_decay=weight)"
    nonnegative = ("weight",)

    def penalty(self, model, x, y, logits):
        return 0.5 * self.weight * squared_l2_norm(penalized_weights(model))


class ElasticNet(Regularizer):
    kind = "elastic_net"
    params = {"l1": 1e-5, "l2": 5e-4}
    summary = "l1 * sum |w| + l2/2 * sum w^2"
    nonnegative = ("l1", "l2")

    def penalty(self, model, x, y, logits):
        weights = penalized_weights(model)
        return self.l1 * l1_norm(weights) + 0.5 * self.l2 * squared_l2_norm(weights)
