"""A DeepLabV3 semantic segmenter on a MobileNetV2 backbone, in plain PyTorch.

Chen, Papandreou, Schroff, Adam, "Rethinking Atrous Convolution for Semantic Image Segmentation",
2017 (arXiv:1706.05587), with the MobileNetV2 backbone of Sandler et al., "MobileNetV2: Inverted
Residuals and Linear Bottlenecks", CVPR 2018 (arXiv:1801.04381), Section 6.3.

Backbone: MobileNetV2 at width 1.0 (32-channel stem; inverted residuals with ReLU6 and linear
bottlenecks; Table 2 of the MobileNetV2 paper) without its final 1280-wide convolution. At output
stride 16 the last stride-2 stage keeps stride 1 and its depthwise convolutions dilate by 2
instead; at output stride 8 the stage before it does the same, and later ones dilate by 4.
Atrous spatial pyramid pooling on the 320-channel features: a 1 x 1 branch, three 3 x 3 branches at
rates 6, 12, 18 (doubled at output stride 8), and an image-pooling branch (global average, 1 x 1,
bilinear upsampling back to the feature size), each 256 channels with batch norm and ReLU;
concatenated, projected by 1 x 1 to 256, then a 3 x 3 convolution and a 1 x 1 classifier. The
per-pixel class logits are bilinearly upsampled to the input size (half-pixel centers,
``align_corners=False``).

Use in a recipe as ``benchmarks/byo_models/deeplabv3.py:deeplabv3``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (expansion, output channels, repeats, stride): Table 2 of the MobileNetV2 paper.
MOBILENETV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, dilation: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU6):
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, dilation * (k - 1) // 2, dilation=dilation, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int, dilation: int = 1):
        super().__init__()
        hidden = cin * expansion
        layers = [] if expansion == 1 else [_conv_bn(cin, hidden)]
        layers += [_conv_bn(hidden, hidden, 3, stride, dilation, groups=hidden), _conv_bn(hidden, cout, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 features at ``output_stride`` (8, 16 or 32): later strides become dilations."""

    out_channels = 320

    def __init__(self, output_stride: int = 16):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        cin, stride_so_far, dilation = 32, 2, 1
        for t, c, n, s in MOBILENETV2:
            if s == 2 and stride_so_far >= output_stride:
                stage_stride, next_dilation = 1, dilation * 2
            else:
                stage_stride, next_dilation = s, dilation
                stride_so_far *= s
            for i in range(n):
                # The first block of a dilated stage still sees the previous dilation (as in the paper's code base).
                layers.append(InvertedResidual(cin, c, stage_stride if i == 0 else 1, t, dilation if i == 0 else next_dilation))
                cin = c
            dilation = next_dilation
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ASPPPooling(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.project = _conv_bn(cin, cout, act=nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(F.adaptive_avg_pool2d(x, 1))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, cin: int, rates: tuple[int, ...], cout: int = 256):
        super().__init__()
        branches: list[nn.Module] = [_conv_bn(cin, cout, act=nn.ReLU)]
        branches += [_conv_bn(cin, cout, 3, dilation=r, act=nn.ReLU) for r in rates]
        branches.append(ASPPPooling(cin, cout))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(_conv_bn(cout * len(branches), cout, act=nn.ReLU), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class DeepLabV3(nn.Module):
    def __init__(self, num_classes: int = 2, output_stride: int = 16):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, not {output_stride}")
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        self.backbone = MobileNetV2Backbone(output_stride)
        self.aspp = ASPP(self.backbone.out_channels, rates)
        self.head = nn.Sequential(_conv_bn(256, 256, 3, act=nn.ReLU), nn.Conv2d(256, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.aspp(self.backbone(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def deeplabv3(num_classes: int = 2, output_stride: int = 16) -> DeepLabV3:
    """DeepLabV3 (MobileNetV2 backbone, ASPP with image pooling): per-pixel logits at the input size.
    Input sides should be multiples of 32."""
    return DeepLabV3(num_classes=num_classes, output_stride=output_stride)
