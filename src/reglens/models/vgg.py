"""VGG-19 with batch norm in its CIFAR form (16 conv layers in five stages, a small classifier)."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from reglens.models.base import ReglensModel, scaled

STAGES = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))


class VGG19(ReglensModel):
    """Each stage ends in a 2x2 max-pool while the feature map is at least 2x2 (so small inputs work)."""

    layer_names = tuple(f"body.stage{i}" for i in range(1, 6))

    def __init__(self, in_channels, input_size, num_classes, width=1.0, dropout=0.0, mean=None, std=None):
        super().__init__(in_channels, mean, std)
        cin, side, stages = in_channels, input_size, OrderedDict()
        for index, stage in enumerate(STAGES, start=1):
            layers = []
            for channels in stage:
                cout = scaled(channels, width)
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                           nn.ReLU(inplace=True)]
                cin = cout
            if side >= 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            stages[f"stage{index}"] = nn.Sequential(*layers)
        hidden = scaled(512, width)
        self.body = nn.Sequential(OrderedDict(
            **stages, pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), drop1=nn.Dropout(dropout),
            fc=nn.Linear(cin, hidden), relu=nn.ReLU(inplace=True), drop2=nn.Dropout(dropout)))
        self.classifier = nn.Linear(hidden, num_classes)
