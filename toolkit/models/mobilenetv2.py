"""MobileNetV2 (Sandler et al. 2018): inverted residuals, linear bottlenecks, ReLU6."""

from __future__ import annotations

import torch
from torch import nn

from toolkit.data.synthetic import ACNE_GRADES
from toolkit.models._blocks import ClassifierHead, ConvBNAct, make_divisible
from toolkit.models._specs import register_acne

# (expansion t, output channels c, repeats n, first stride s) — the paper's table 2.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(cin, hidden, 1))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden), ConvBNAct(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, width_mult: float = 1.0, last_channels: int = 1280, dropout: float = 0.2):
        super().__init__()
        cin = make_divisible(32 * width_mult)
        last = make_divisible(last_channels * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(3, cin, 3, 2)]
        for t, c, n, s in _SETTINGS:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(ConvBNAct(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(last, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _acne_mobilenetv2() -> MobileNetV2:
    return MobileNetV2(num_classes=len(ACNE_GRADES), width_mult=0.5)


register_acne("acne_mobilenetv2", "MobileNetV2 (width 0.5)", _acne_mobilenetv2,
              "Acne severity grade from a face image (default reference model).")

# The same network and training, on what a selfie chain feeds it after its skin segmenter: the photo times
# the segmenter's hard skin mask, non-skin black (fill 0 in 0–255 pixels); trained on jittered masks.
register_acne("acne_gated_mobilenetv2", "MobileNetV2 (width 0.5)", _acne_mobilenetv2,
              "Acne severity grade from the skin a segmenter found (photo x skin mask, non-skin black).",
              extra={"masked_input": {"fill": 0}})
