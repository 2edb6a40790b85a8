"""A light skin / non-skin segmenter: the filter that runs in front of the acne classifier."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from toolkit.models._blocks import ConvBNAct


class SkinSegmenter(nn.Module):
    """Depthwise-separable encoder at 1/8 resolution, a context branch at 1/16, bilinear decoding."""

    def __init__(self, base: int = 16, num_classes: int = 2):
        super().__init__()
        self.enc1 = ConvBNAct(3, base, 3, 2, act=nn.ReLU)  # 1/2
        self.enc2 = nn.Sequential(ConvBNAct(base, base, 3, 2, groups=base, act=nn.ReLU), ConvBNAct(base, base * 2, 1, act=nn.ReLU))  # 1/4
        self.enc3 = nn.Sequential(ConvBNAct(base * 2, base * 2, 3, 2, groups=base * 2, act=nn.ReLU), ConvBNAct(base * 2, base * 4, 1, act=nn.ReLU))  # 1/8
        self.ctx = nn.Sequential(ConvBNAct(base * 4, base * 4, 3, 2, groups=base * 4, act=nn.ReLU), ConvBNAct(base * 4, base * 4, 1, act=nn.ReLU))  # 1/16
        self.fuse = ConvBNAct(base * 8, base * 2, 1, act=nn.ReLU)
        self.skip = ConvBNAct(base, base * 2, 1, act=nn.ReLU)
        self.out = nn.Conv2d(base * 2, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.enc1(x)
        s3 = self.enc3(self.enc2(s1))
        ctx = F.interpolate(self.ctx(s3), scale_factor=2.0, mode="bilinear", align_corners=False)
        y = self.fuse(torch.cat([s3, ctx], dim=1))
        y = F.interpolate(y, scale_factor=4.0, mode="bilinear", align_corners=False) + self.skip(s1)
        return F.interpolate(self.out(y), scale_factor=2.0, mode="bilinear", align_corners=False)
