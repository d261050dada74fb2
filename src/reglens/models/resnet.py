"""ResNet-18/50 in their CIFAR form: 3x3 stem, stride 1, no initial max-pool."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from reglens.models.base import ReglensModel, scaled


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu1, self.relu2 = nn.ReLU(inplace=True), nn.ReLU(inplace=True)  # one module per use (captum)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu1, self.relu2, self.relu3 = (nn.ReLU(inplace=True) for _ in range(3))
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        return self.relu3(self.bn3(self.conv3(out)) + self.shortcut(x))


def _shortcut(cin, cout, stride):
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(ReglensModel):
    layer_names = ("body.layer1", "body.layer2", "body.layer3", "body.layer4")
    block: type = BasicBlock
    depths: tuple[int, ...] = (2, 2, 2, 2)

    def __init__(self, in_channels, input_size, num_classes, width=1.0, dropout=0.0, mean=None, std=None):
        super().__init__(in_channels, mean, std)
        planes = [scaled(p, width) for p in (64, 128, 256, 512)]
        stem = nn.Sequential(nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False),
                             nn.BatchNorm2d(planes[0]), nn.ReLU(inplace=True))
        cin, stages = planes[0], []
        for i, (p, depth) in enumerate(zip(planes, self.depths)):
            blocks = []
            for j in range(depth):
                blocks.append(self.block(cin, p, 2 if (i > 0 and j == 0) else 1))
                cin = p * self.block.expansion
            stages.append(nn.Sequential(*blocks))
        self.body = nn.Sequential(OrderedDict(
            stem=stem, **{f"layer{i}": stage for i, stage in enumerate(stages, start=1)},
            pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), drop=nn.Dropout(dropout)))
        self.classifier = nn.Linear(cin, num_classes)


class ResNet18(ResNet):
    block, depths = BasicBlock, (2, 2, 2, 2)


class ResNet50(ResNet):
    block, depths = Bottleneck, (3, 4, 6, 3)
