"""SimpleCNN, LeNet-5 and DDNet."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from reglens.models.base import ReglensModel, conv_out, scaled


def _conv_relu(cin: int, cout: int, kernel: int = 3, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=padding), nn.ReLU(inplace=True)]


class SimpleCNN(ReglensModel):
    """Two blocks of (conv-relu)x2-maxpool, then a 128-unit hidden layer. Dropout before each Linear."""

    layer_names = ("body.block1", "body.block2")

    def __init__(self, in_channels, input_size, num_classes, width=1.0, dropout=0.0, mean=None, std=None):
        super().__init__(in_channels, mean, std)
        c1, c2, hidden = scaled(32, width), scaled(64, width), scaled(128, width)
        side = input_size // 4
        self.body = nn.Sequential(OrderedDict(
            block1=nn.Sequential(*_conv_relu(in_channels, c1), *_conv_relu(c1, c1), nn.MaxPool2d(2)),
            block2=nn.Sequential(*_conv_relu(c1, c2), *_conv_relu(c2, c2), nn.MaxPool2d(2)),
            flatten=nn.Flatten(), drop1=nn.Dropout(dropout), fc=nn.Linear(c2 * side * side, hidden),
            relu=nn.ReLU(inplace=True), drop2=nn.Dropout(dropout)))
        self.classifier = nn.Linear(hidden, num_classes)


class LeNet(ReglensModel):
    """LeNet-5 (conv 6@5x5, pool, conv 16@5x5, pool, fc 120, fc 84) with ReLU and max-pooling.

    The first conv is padded below 32x32 input (the usual MNIST form); the second is padded only when
    the input is too small for the valid convolution (e.g. 8x8 digits)."""

    layer_names = ("body.conv1", "body.conv2")

    def __init__(self, in_channels, input_size, num_classes, width=1.0, dropout=0.0, mean=None, std=None):
        super().__init__(in_channels, mean, std)
        c1, c2, f1, f2 = scaled(6, width), scaled(16, width), scaled(120, width), scaled(84, width)
        pad1 = 2 if input_size < 32 else 0
        side = conv_out(input_size, 5, pad1) // 2
        pad2 = 0 if side >= 10 else 2
        side = conv_out(side, 5, pad2) // 2
        self.body = nn.Sequential(OrderedDict(
            conv1=nn.Sequential(*_conv_relu(in_channels, c1, 5, pad1), nn.MaxPool2d(2)),
            conv2=nn.Sequential(*_conv_relu(c1, c2, 5, pad2), nn.MaxPool2d(2)),
            flatten=nn.Flatten(), fc1=nn.Linear(c2 * side * side, f1), relu1=nn.ReLU(inplace=True),
            drop1=nn.Dropout(dropout), fc2=nn.Linear(f1, f2), relu2=nn.ReLU(inplace=True),
            drop2=nn.Dropout(dropout)))
        self.classifier = nn.Linear(f2, num_classes)


class DDNet(ReglensModel):
    """The CIFAR network of Papernot et al.'s defensive distillation, used by Hoffman et al. (2019):
    conv 64, conv 64, pool, conv 128, conv 128, pool, fc 256, fc 256. Valid convolutions from 28x28
    up (as published); padded convolutions on smaller inputs."""

    layer_names = ("body.block1", "body.block2")

    def __init__(self, in_channels, input_size, num_classes, width=1.0, dropout=0.0, mean=None, std=None):
        super().__init__(in_channels, mean, std)
        c1, c2, hidden = scaled(64, width), scaled(128, width), scaled(256, width)
        pad = 0 if input_size >= 28 else 1
        side = conv_out(conv_out(input_size, 3, pad), 3, pad) // 2
        side = conv_out(conv_out(side, 3, pad), 3, pad) // 2
        self.body = nn.Sequential(OrderedDict(
            block1=nn.Sequential(*_conv_relu(in_channels, c1, 3, pad), *_conv_relu(c1, c1, 3, pad), nn.MaxPool2d(2)),
            block2=nn.Sequential(*_conv_relu(c1, c2, 3, pad), *_conv_relu(c2, c2, 3, pad), nn.MaxPool2d(2)),
            flatten=nn.Flatten(), fc1=nn.Linear(c2 * side * side, hidden), relu1=nn.ReLU(inplace=True),
            drop1=nn.Dropout(dropout), fc2=nn.Linear(hidden, hidden), relu2=nn.ReLU(inplace=True),
            drop2=nn.Dropout(dropout)))
        self.classifier = nn.Linear(hidden, num_classes)
