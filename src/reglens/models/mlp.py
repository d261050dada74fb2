"""The MLP family of the 2-D toy study: a 2-D -> 2-D map (square Jacobian, what `jacobian_det`
regularizes), then hidden layers and the classifier head."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from reglens.models.base import ReglensModel, scaled


class MLP(ReglensModel):
    """Input: a 2-channel 1x1 image (a point in the plane). `square`: Linear(2, h)-ReLU-Linear(h, 2),
    a map of the plane to itself; then `depth` hidden layers of width h (64 x width) and the classifier.
    Named layers are the hidden layers (for activation statistics), shallow to deep."""

    inputs = "points"
    square_dim = 2

    def __init__(self, in_channels, input_size, num_classes, width=1.0, dropout=0.0, mean=None, std=None, depth=2):
        super().__init__(in_channels, mean, std)
        if in_channels * input_size * input_size != self.square_dim:
            raise ValueError(f"mlp takes points in the plane (2 channels, 1x1); got {in_channels} channels of "
                             f"{input_size}x{input_size}")
        hidden = scaled(64, width)
        layers = OrderedDict(flatten=nn.Flatten(),
                             square=nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 2)))
        cin = 2
        for k in range(1, depth + 1):
            layers[f"hidden{k}"] = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Dropout(dropout))
            cin = hidden
        self.body = nn.Sequential(layers)
        self.layer_names = tuple(f"body.hidden{k}" for k in range(1, depth + 1))
        self.classifier = nn.Linear(hidden, num_classes)

    def square_map(self, z: torch.Tensor) -> torch.Tensor:
        """The 2-D -> 2-D map on normalized coordinates (N, 2)."""
        return self.body.square(z)

    def normalized_points(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x).flatten(1)
