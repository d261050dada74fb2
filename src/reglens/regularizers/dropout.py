"""Dropout: sets the rate of the dropout sites each architecture defines (before its Linear layers)."""
from __future__ import annotations

from reglens.regularizers.base import Regularizer


class Dropout(Regularizer):
    kind = "dropout"
    params = {"p": 0.5}
    summary = "zero each unit at the architecture's dropout sites with probability p during training"

    def validate(self):
        if not isinstance(self.p, (int, float)) or not 0 <= self.p < 1:
            raise ValueError(f"regularizer 'dropout': p must be in [0, 1), got {self.p!r}")

    def model_kwargs(self):
        return {"dropout": float(self.p)}
