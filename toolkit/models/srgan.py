"""SRGAN-style generator (Ledig et al. 2017): residual blocks with PReLU, pixel-shuffle upsampling.

Trained here with a pixel (L1) loss only — the SRResNet stage of SRGAN — since the synthetic data
has an exact high-resolution target; the architecture is the SRGAN generator unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from toolkit.registry import ModelSpec, OutputSpec, Tolerance, TrainingConfig, register_model


class ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.PReLU(ch),
            nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRGenerator(nn.Module):
    def __init__(self, scale: int = 2, channels: int = 32, blocks: int = 4,
                 mean: tuple[float, ...] = (0.5, 0.5, 0.5), std: tuple[float, ...] = (0.25, 0.25, 0.25)):
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f"scale must be 2 or 4, got {scale}")
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU(channels))
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        ups: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            ups += [nn.Conv2d(channels, channels * 4, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(channels)]
        self.upsample = nn.Sequential(*ups)
        self.tail = nn.Conv2d(channels, 3, 9, padding=4)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized LR in, HR RGB in [0, 1] out (residual over bilinear upsampling of the input)."""
        h = self.head(x)
        h = self.upsample(h + self.body_tail(self.body(h)))
        base = nn.functional.interpolate(x * self.std + self.mean, scale_factor=float(self.scale), mode="bilinear", align_corners=False)
        return (base + self.tail(h)).clamp(0.0, 1.0)


def _texture_sr() -> SRGenerator:
    return SRGenerator(scale=2, channels=32, blocks=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


register_model(ModelSpec(
    name="texture_sr", task="super_resolution", architecture="SRGAN generator (×2, 4 residual blocks, 32 ch)",
    factory=_texture_sr, description="×2 super-resolution of skin texture patches (64×64 → 128×128).",
    input_size=(64, 64), output_size=(128, 128),
    outputs=(OutputSpec("hr_image", "high-resolution RGB, channel-last like the input", "[0, 1]"),),
    # Pixels span [0, 1]: relative to that range, the bounds read as absolute ones.
    tolerances={
        "fp32": Tolerance(max_rel=1e-3, min_cosine=0.99999, max_metric_drop=0.05),
        "fp16": Tolerance(max_rel=0.02, min_cosine=0.9999, max_metric_drop=0.3),
        "int8": Tolerance(min_cosine=0.999, max_metric_drop=0.5),
        "lowbit": Tolerance(min_cosine=0.998, max_metric_drop=1.0),
    },
    training=TrainingConfig(n_train=1500, n_val=200, epochs=4, batch_size=16, lr=2e-3),
    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), metric="psnr",
))
