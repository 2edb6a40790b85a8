"""MobileNetV3-Large in plain PyTorch, at its published widths.

Howard et al., "Searching for MobileNetV3", ICCV 2019 (arXiv:1905.02244), Table 1. A 3 x 3 stride-2
stem of 16 channels with hard-swish, fifteen inverted-residual blocks (1 x 1 expansion where the
expanded width differs from the input, depthwise k x k, optional squeeze-and-excitation, 1 x 1 linear
projection), a 1 x 1 convolution to 960 channels, global average pooling, a 1280-wide linear layer
with hard-swish and the classifier. The nonlinearities are the paper's: ReLU in the early blocks,
hard-swish ``x * relu6(x + 3) / 6`` in the later ones, and a hard-sigmoid ``relu6(x + 3) / 6`` gate in
squeeze-and-excitation, which squeezes to a quarter of the expanded width (rounded to a multiple of
8). Batch norm epsilon 1e-3. 5.5 M parameters with 1000 classes.

Use in a recipe as ``benchmarks/byo_models/mobilenetv3.py:mobilenetv3_large``.
"""

from __future__ import annotations

import torch
from torch import nn

# (kernel, expanded width, output width, squeeze-excite, activation, stride): Table 1, MobileNetV3-Large.
LARGE = (
    (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a width to a multiple of ``divisor``, never more than 10 % below ``v``."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _act(kind: str) -> nn.Module:
    return nn.Hardswish() if kind == "HS" else nn.ReLU()


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: str | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]
    if act is not None:
        layers.append(_act(act))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        squeeze = make_divisible(channels // 4)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(x.mean(dim=(2, 3), keepdim=True)))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, k: int, hidden: int, cout: int, se: bool, act: str, stride: int):
        super().__init__()
        layers: list[nn.Module] = [] if hidden == cin else [_conv_bn(cin, hidden, act=act)]
        layers.append(_conv_bn(hidden, hidden, k, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(_conv_bn(hidden, cout))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    def __init__(self, config=LARGE, num_classes: int = 4, last: int = 1280, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 16, 3, 2, act="HS")]
        cin = 16
        for k, hidden, cout, se, act, stride in config:
            layers.append(InvertedResidual(cin, k, hidden, cout, se, act, stride))
            cin = cout
        layers.append(_conv_bn(cin, 6 * cin, act="HS"))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(6 * cin, last), nn.Hardswish(), nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenetv3_large(num_classes: int = 4, dropout: float = 0.2) -> MobileNetV3:
    """MobileNetV3-Large, width 1.0 (224 x 224 in the paper; any input of at least 32 x 32 runs)."""
    return MobileNetV3(LARGE, num_classes=num_classes, dropout=dropout)
