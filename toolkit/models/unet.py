"""U-Net (Ronneberger et al. 2015) for skin-region segmentation, and the region statistics derived
from its masks (per-class area fraction and mean intensity)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from toolkit.data.synthetic import SEGMENTATION_CLASSES
from toolkit.models._specs import IMAGENET_MEAN, IMAGENET_STD, SEG_OUT, SEG_TOL
from toolkit.registry import ModelSpec, TrainingConfig, register_model


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class Up(nn.Module):
    """Bilinear ×2 (align_corners=False, the half-pixel convention every runtime implements) + concat + convs."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = _double_conv(cin + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    def __init__(self, num_classes: int, base: int = 16, depth: int = 4):
        super().__init__()
        chans = [base * 2**i for i in range(depth + 1)]
        self.inc = _double_conv(3, chans[0])
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), _double_conv(chans[i], chans[i + 1])) for i in range(depth))
        self.ups = nn.ModuleList(Up(chans[i + 1], chans[i], chans[i]) for i in reversed(range(depth)))
        self.outc = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.outc(y)


def region_stats(image_rgb: np.ndarray, mask: np.ndarray, labels: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Area fraction and mean luminance (0–255) of each class in a label map.

    ``image_rgb`` is HxWx3 uint8 at the mask's resolution; ``mask`` is HxW class indices.
    A class absent from the mask has area 0 and mean intensity NaN.
    """
    gray = image_rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(labels):
        sel = mask == k
        n = int(sel.sum())
        out[name] = {"area_fraction": n / mask.size, "mean_intensity": float(gray[sel].mean()) if n else float("nan")}
    return out


def _lesion_unet() -> UNet:
    return UNet(num_classes=len(SEGMENTATION_CLASSES), base=8, depth=4)


register_model(ModelSpec(
    name="lesion_unet", task="segmentation", architecture="U-Net (4 levels, base 8, bilinear up)",
    factory=_lesion_unet, description="Melanin, trouble (acne/inflammation), wrinkle and pore regions, plus background.",
    input_size=(192, 192), output_size=(192, 192), labels=SEGMENTATION_CLASSES, outputs=SEG_OUT, tolerances=SEG_TOL,
    training=TrainingConfig(n_train=1200, n_val=200, epochs=6, batch_size=16, lr=3e-3),
    mean=IMAGENET_MEAN, std=IMAGENET_STD, metric="miou",
))
