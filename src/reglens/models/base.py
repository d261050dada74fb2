"""What every reglens model shares: input normalization inside the model, named layers, dropout sites."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class Normalize(nn.Module):
    """(x - mean) / std per channel, so models take pixels in [0, 1] and attacks work in pixel units."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ReglensModel(nn.Module):
    """Base class. Subclasses set `layer_names` (conv blocks, shallow to deep) and build
    `self.body` (input -> penultimate vector) and `self.classifier` (the last Linear)."""

    layer_names: tuple[str, ...] = ()
    inputs = "images"  # or "points": 2-channel 1x1 inputs (the 2-D toy study)
    square_dim: int | None = None  # the dimension of a square map the model has (for jacobian_det)

    def __init__(self, in_channels: int, mean: Sequence[float] | None, std: Sequence[float] | None):
        super().__init__()
        self.normalize = Normalize(mean if mean is not None else [0.5] * in_channels,
                                   std if std is not None else [0.5] * in_channels)

    @property
    def target_layer(self) -> str:
        """The last convolutional block: what Grad-CAM reads."""
        return self.layer_names[-1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate representation (the classifier's input)."""
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))

    def dropout_modules(self) -> list[nn.Dropout]:
        return [m for m in self.modules() if isinstance(m, nn.Dropout)]


def conv_out(size: int, kernel: int, padding: int, stride: int = 1) -> int:
    return (size + 2 * padding - kernel) // stride + 1
