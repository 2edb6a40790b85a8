"""A light skin / non-skin segmenter: the filter that runs in front of the acne classifier."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from toolkit.models._blocks import ConvBNAct
from toolkit.models._specs import IMAGENET_MEAN, IMAGENET_STD, SEG_OUT, SEG_TOL
from toolkit.registry import ModelSpec, TrainingConfig, register_model


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


def _skin_segmenter() -> SkinSegmenter:
    return SkinSegmenter(base=16)


register_model(ModelSpec(
    name="skin_segmenter", task="segmentation", architecture="depthwise-separable encoder, bilinear decoder",
    factory=_skin_segmenter, description="Skin / non-skin mask; filters the input of the acne classifier.",
    input_size=(224, 224), output_size=(224, 224), labels=("non_skin", "skin"), outputs=SEG_OUT, tolerances=SEG_TOL,
    training=TrainingConfig(n_train=1500, n_val=200, epochs=3, batch_size=32, lr=5e-3),
    mean=IMAGENET_MEAN, std=IMAGENET_STD, metric="miou", extra={"target": "skin_mask"},
))
