"""MTCNN's three face-detection networks (P-Net, R-Net, O-Net) in plain PyTorch.

Zhang, Zhang, Li, Qiao, "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", IEEE Signal Processing Letters 23(10), 2016 (arXiv:1604.02878), Figure 2, with the layer
shapes of the authors' released Caffe models: PReLU with one slope per channel after every
convolution and hidden fully connected layer, and Caffe's max pooling, which rounds output sizes up
(``ceil_mode=True``).

- P-Net (12 x 12, fully convolutional): 3x3 conv 10, pool 2/2, 3x3 conv 16, 3x3 conv 32, then 1 x 1
  convolutions to 4 box offsets and 2 face / non-face scores. 6,632 parameters.
- R-Net (24 x 24): 3x3 conv 28, pool 3/2, 3x3 conv 48, pool 3/2, 2x2 conv 64, fully connected 128,
  then 4 box offsets and 2 scores. 100,178 parameters.
- O-Net (48 x 48): 3x3 conv 32, pool 3/2, 3x3 conv 64, pool 3/2, 3x3 conv 64, pool 2/2, 2x2 conv 128,
  fully connected 256, then 4 box offsets, 10 landmark coordinates and 2 scores. 389,040 parameters.

Each returns a tuple: box regression first, landmarks next (O-Net only), and the face probability
(softmax over the two scores) last. The flattening before R-Net's and O-Net's fully connected
layers is PyTorch's (channel, height, width) order; loading the Caffe weights would need their
(channel, width, height) order instead.

Use in a recipe as ``benchmarks/byo_models/mtcnn.py:pnet`` (or ``:rnet``, ``:onet``).
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_prelu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k), nn.PReLU(cout)]


def _pool(k: int) -> nn.Module:
    return nn.MaxPool2d(k, 2, ceil_mode=True)


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*_conv_prelu(3, 10, 3), _pool(2), *_conv_prelu(10, 16, 3), *_conv_prelu(16, 32, 3))
        self.box = nn.Conv2d(32, 4, 1)
        self.score = nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.body(x)
        return self.box(y), torch.softmax(self.score(y), dim=1)


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*_conv_prelu(3, 28, 3), _pool(3), *_conv_prelu(28, 48, 3), _pool(3), *_conv_prelu(48, 64, 2),
                                  nn.Flatten(), nn.Linear(3 * 3 * 64, 128), nn.PReLU(128))
        self.box = nn.Linear(128, 4)
        self.score = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.body(x)
        return self.box(y), torch.softmax(self.score(y), dim=1)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*_conv_prelu(3, 32, 3), _pool(3), *_conv_prelu(32, 64, 3), _pool(3), *_conv_prelu(64, 64, 3), _pool(2),
                                  *_conv_prelu(64, 128, 2), nn.Flatten(), nn.Linear(3 * 3 * 128, 256), nn.PReLU(256))
        self.box = nn.Linear(256, 4)
        self.landmarks = nn.Linear(256, 10)
        self.score = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.body(x)
        return self.box(y), self.landmarks(y), torch.softmax(self.score(y), dim=1)


def pnet() -> PNet:
    """P-Net, the proposal network: any input of at least 12 x 12; outputs per 12 x 12 window at stride 2."""
    return PNet()


def rnet() -> RNet:
    """R-Net, the refinement network: 24 x 24 crops."""
    return RNet()


def onet() -> ONet:
    """O-Net, the output network: 48 x 48 crops."""
    return ONet()
