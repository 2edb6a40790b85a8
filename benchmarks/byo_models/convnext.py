"""ConvNeXt-Tiny in plain PyTorch, at its published widths.

Liu et al., "A ConvNet for the 2020s", CVPR 2022 (arXiv:2201.03545). A 4 x 4 stride-4 "patchify"
stem with LayerNorm, four stages of 3, 3, 9 and 3 blocks at widths 96, 192, 384 and 768 separated
by LayerNorm + 2 x 2 stride-2 convolutions. A block is a depthwise 7 x 7 convolution, then, channels
last, LayerNorm, a 4x pointwise (Linear) expansion, GELU, a pointwise projection and a learned
per-channel layer scale (initialised to 1e-6), added to the input. Global average pooling, LayerNorm
and a linear head. LayerNorm epsilon 1e-6; the stem's and downsampling layers' LayerNorm normalise
over the channels of an NCHW tensor, written out as mean / variance over dim 1. 28.6 M parameters
with 1000 classes. Stochastic depth is a training-time regularizer and is left out.

Use in a recipe as ``benchmarks/byo_models/convnext.py:convnext_tiny``.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over dim 1 of an NCHW tensor."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Block(nn.Module):
    def __init__(self, dim: int, layer_scale: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # NCHW -> NHWC
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes: int = 4, layer_scale: float = 1e-6):
        super().__init__()
        self.downsample = nn.ModuleList([nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), ChannelsFirstLayerNorm(dims[0]))])
        for i in range(3):
            self.downsample.append(nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, 2)))
        self.stages = nn.ModuleList(nn.Sequential(*(Block(d, layer_scale) for _ in range(n))) for n, d in zip(depths, dims))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x.mean(dim=(2, 3))))


def convnext_tiny(num_classes: int = 4, layer_scale: float = 1e-6) -> ConvNeXt:
    """ConvNeXt-T: depths 3/3/9/3, widths 96/192/384/768 (any input of at least 32 x 32 runs)."""
    return ConvNeXt((3, 3, 9, 3), (96, 192, 384, 768), num_classes=num_classes, layer_scale=layer_scale)
