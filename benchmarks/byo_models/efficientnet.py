"""EfficientNet-B0 in plain PyTorch, at its published widths.

Tan, Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019
(arXiv:1905.11946), Table 1. A 3 x 3 stride-2 stem of 32 channels, then seven stages of inverted
residual (MBConv) blocks: 1 x 1 expansion, depthwise k x k convolution, squeeze-and-excitation
(squeeze to a quarter of the block's *input* channels, SiLU, sigmoid gate), 1 x 1 linear projection,
and an identity shortcut where stride and width allow. SiLU ("swish") throughout, batch norm with
epsilon 1e-3 as in the reference TensorFlow implementation; a 1 x 1 head to 1280 channels, global
average pooling, dropout 0.2, one linear layer. 5.3 M parameters with 1000 classes. Stochastic depth
is a training-time regularizer and is left out (it is the identity at inference).

Use in a recipe as ``benchmarks/byo_models/efficientnet.py:efficientnet_b0``.
"""

from __future__ import annotations

import torch
from torch import nn

# (expansion, kernel, stride, output channels, repeats): Table 1 of the paper.
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


def _conv_bn_silu(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(nn.functional.silu(self.reduce(s))))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [] if expansion == 1 else [_conv_bn_silu(cin, hidden)]
        layers += [
            _conv_bn_silu(hidden, hidden, kernel, stride, groups=hidden),
            SqueezeExcite(hidden, max(1, cin // 4)),
            _conv_bn_silu(hidden, cout, act=False),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class EfficientNet(nn.Module):
    def __init__(self, stages=B0_STAGES, num_classes: int = 4, dropout: float = 0.2, stem: int = 32, head: int = 1280):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_silu(3, stem, 3, 2)]
        cin = stem
        for t, k, s, c, n in stages:
            for i in range(n):
                layers.append(MBConv(cin, c, k, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn_silu(cin, head))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x).mean(dim=(2, 3))))


def efficientnet_b0(num_classes: int = 4, dropout: float = 0.2) -> EfficientNet:
    """EfficientNet-B0 (224 x 224 in the paper; any input of at least 32 x 32 runs)."""
    return EfficientNet(B0_STAGES, num_classes=num_classes, dropout=dropout)
