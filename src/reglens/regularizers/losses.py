"""Changes to the data loss: label smoothing (replaces it), confidence penalty (adds to it)."""
from __future__ import annotations

import torch.nn.functional as F

from reglens.regularizers.base import Regularizer


def entropy(logits):
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1)


class LabelSmoothing(Regularizer):
    kind = "label_smoothing"
    params = {"eps": 0.1}
    summary = "cross-entropy against (1-eps) one-hot + eps/K uniform"

    def validate(self):
        if not isinstance(self.eps, (int, float)) or not 0 <= self.eps < 1:
            raise ValueError(f"regularizer 'label_smoothing': eps must be in [0, 1), got {self.eps!r}")

    def data_loss(self, logits, y):
        return F.cross_entropy(logits, y, label_smoothing=float(self.eps))


class ConfidencePenalty(Regularizer):
    kind = "confidence_penalty"
    params = {"beta": 0.1}
    summary = "-beta * mean_batch H(softmax(logits)) (Pereyra et al. 2017)"
    nonnegative = ("beta",)

    def penalty(self, model, x, y, logits):
        return -self.beta * entropy(logits).mean()
