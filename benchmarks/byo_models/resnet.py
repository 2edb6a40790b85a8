"""ResNet-50 in plain PyTorch, at its published widths.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv:1512.03385).
A 7 x 7 stride-2 stem and a 3 x 3 max pool, then bottleneck blocks (1 x 1 reduce, 3 x 3, 1 x 1 expand
by 4, batch norm after each convolution, ReLU) in four stages of 3, 4, 6 and 3 blocks of widths 64,
128, 256 and 512; global average pooling and one linear layer. The stride of a stage sits on its
first block's 3 x 3 convolution (the "v1.5" placement most trained checkpoints use); projection
shortcuts (1 x 1 convolution and batch norm) where the shape changes. 25.6 M parameters with 1000
classes.

Use in a recipe as ``benchmarks/byo_models/resnet.py:resnet50``.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    pad = dilation * (k - 1) // 2
    return [nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout)]


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            *_conv_bn(cin, width, 1), nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(width, cout, 1),
        )
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, depths: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], 64
        for i, n in enumerate(depths):
            width = 64 * 2**i
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(cin, width, stride=2 if i > 0 and j == 0 else 1))
                cin = width * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnet50(num_classes: int = 4) -> ResNet:
    """ResNet-50: bottleneck stages of 3, 4, 6, 3 blocks; any input size of at least 32 x 32."""
    return ResNet((3, 4, 6, 3), num_classes=num_classes)
