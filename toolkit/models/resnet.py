"""ResNet-50 (He et al. 2016): bottleneck blocks in stages of 3, 4, 6, 3."""

from __future__ import annotations

import torch
from torch import nn

from toolkit.data.synthetic import ACNE_GRADES
from toolkit.models._blocks import ClassifierHead, ConvBNAct
from toolkit.models._specs import register_acne
from toolkit.registry import TrainingConfig


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = ConvBNAct(cin, width, 1, act=nn.ReLU)
        self.conv2 = ConvBNAct(width, width, 3, stride, act=nn.ReLU)
        self.conv3 = ConvBNAct(width, cout, 1, act=None)
        self.downsample = ConvBNAct(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))


class ResNet50(nn.Module):
    def __init__(self, num_classes: int, base_width: int = 64, layers: tuple[int, ...] = (3, 4, 6, 3), dropout: float = 0.0):
        super().__init__()
        self.stem = nn.Sequential(ConvBNAct(3, base_width, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        cin = base_width
        for i, n in enumerate(layers):
            width = base_width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(cin, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def _acne_resnet50() -> ResNet50:
    return ResNet50(num_classes=len(ACNE_GRADES), base_width=16)


register_acne("acne_resnet50", "ResNet-50 (bottlenecks 3-4-6-3, base width 16)", _acne_resnet50,
              "Acne severity grade from a face image.",
              TrainingConfig(n_train=2000, n_val=300, epochs=4, batch_size=32, lr=2e-3))
