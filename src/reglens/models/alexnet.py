"""AlexNet and AlexNet-B (batch norm after every convolution), adapted to small inputs.

The five convolutions of Krizhevsky et al. (2012), 96-256-384-384-256 filters, max-pooling after the
first, second and fifth, then two hidden fully connected layers. For 32- and 28-pixel inputs (CIFAR,
MNIST) the first two kernels are 5x5 and the rest 3x3, all stride 1 and padded to keep the size, so
the pools halve it (32 -> 16 -> 8 -> 4); the hidden layers have 1024 units (the original's 4096 are
sized for 224-pixel images). Each convolution is a named block (body.conv1 ... body.conv5) for
dissection and the concept-group regularizers; AlexNet-B has batch norm between conv and ReLU.

The convolutions and hidden layers start from He et al.'s (2015) ReLU initialization (normal, fan-in,
zero bias). PyTorch's default (variance 1/(3 fan_in)) shrinks the signal's second moment about
sixfold per layer: without batch norm, the seven layers' data gradient at conv1 is then ~50 times
smaller than the block norm's constant-size gradient (weight * sqrt(groups) per layer), and the
penalty drives every filter to zero before the data can act (docs/dissect.md#filter-groups).
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from reglens.models.base import ReglensModel, scaled

CHANNELS = (96, 256, 384, 384, 256)
KERNELS = (5, 5, 3, 3, 3)
POOLED = (True, True, False, False, True)


class AlexNet(ReglensModel):
    layer_names = ("body.conv1", "body.conv2", "body.conv3", "body.conv4", "body.conv5")
    batch_norm = False

    def __init__(self, in_channels, input_size, num_classes, width=1.0, dropout=0.0, mean=None, std=None):
        super().__init__(in_channels, mean, std)
        blocks, cin, side = OrderedDict(), in_channels, input_size
        for i, (channels, kernel, pooled) in enumerate(zip(CHANNELS, KERNELS, POOLED), start=1):
            cout = scaled(channels, width)
            layers = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2)]
            layers += [nn.BatchNorm2d(cout)] if self.batch_norm else []
            layers += [nn.ReLU(inplace=True)] + ([nn.MaxPool2d(2)] if pooled and side >= 2 else [])
            side = side // 2 if pooled and side >= 2 else side
            blocks[f"conv{i}"] = nn.Sequential(*layers)
            cin = cout
        hidden = scaled(1024, width)
        blocks.update(flatten=nn.Flatten(), drop1=nn.Dropout(dropout), fc1=nn.Linear(cin * side * side, hidden),
                      relu1=nn.ReLU(inplace=True), drop2=nn.Dropout(dropout), fc2=nn.Linear(hidden, hidden),
                      relu2=nn.ReLU(inplace=True))
        self.body = nn.Sequential(blocks)
        self.classifier = nn.Linear(hidden, num_classes)
        for m in self.body.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)


class AlexNetB(AlexNet):
    batch_norm = True
