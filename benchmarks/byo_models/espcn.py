"""ESPCN super-resolution in plain PyTorch, at its published widths.

Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network", CVPR 2016 (arXiv:1609.05158). Three convolutions at the low
resolution, (f1, n1) = (5, 64), (f2, n2) = (3, 32) with tanh, then a 3 x 3 convolution to
``channels * scale**2`` maps that a periodic shuffle (``pixel_shuffle``) rearranges into the
``scale``-times larger image. The paper super-resolves the luminance channel; ``channels=3`` (the
default) works on RGB as a device contract hands it over.

Use in a recipe as ``benchmarks/byo_models/espcn.py:espcn``.
"""

from __future__ import annotations

import torch
from torch import nn


class ESPCN(nn.Module):
    def __init__(self, scale: int = 2, channels: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 64, 5, padding=2), nn.Tanh(),
            nn.Conv2d(64, 32, 3, padding=1), nn.Tanh(),
            nn.Conv2d(32, channels * scale**2, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


def espcn(scale: int = 2, channels: int = 3) -> ESPCN:
    """ESPCN: ``channels`` x H x W -> ``channels`` x (scale H) x (scale W)."""
    return ESPCN(scale=scale, channels=channels)
