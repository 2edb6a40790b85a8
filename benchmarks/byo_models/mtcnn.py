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
(softmax over the two scores) last. Parameter names and the flattening before R-Net's and O-Net's fully
connected layers, (channel, width, height) as in the Caffe release, are those of the weights
facenet-pytorch ships (``facenet_pytorch/data/{p,r,o}net.pt``), so those trained weights load as they are.

Use in a recipe as ``benchmarks/byo_models/mtcnn.py:pnet`` (or ``:rnet``, ``:onet``).
"""

from __future__ import annotations

import torch
from torch import nn


def _stage(net: nn.Module, i: int, cin: int, cout: int, k: int, pool: int | None = None) -> None:
    """``conv{i}`` (k x k), ``prelu{i}`` (one slope per channel) and, if given, ``pool{i}`` (Caffe's ceil mode)."""
    setattr(net, f"conv{i}", nn.Conv2d(cin, cout, k))
    setattr(net, f"prelu{i}", nn.PReLU(cout))
    if pool:
        setattr(net, f"pool{i}", nn.MaxPool2d(pool, 2, ceil_mode=True))


def _run_stages(net: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    for i in range(1, n + 1):
        x = getattr(net, f"prelu{i}")(getattr(net, f"conv{i}")(x))
        pool = getattr(net, f"pool{i}", None)
        x = pool(x) if pool is not None else x
    return x


def _flatten_caffe(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) flattened in Caffe's (C, W, H) order, as the released fully connected weights expect."""
    return x.permute(0, 3, 2, 1).contiguous().flatten(1)


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        _stage(self, 1, 3, 10, 3, pool=2)
        _stage(self, 2, 10, 16, 3)
        _stage(self, 3, 16, 32, 3)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = _run_stages(self, x, 3)
        return self.conv4_2(y), torch.softmax(self.conv4_1(y), dim=1)


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        _stage(self, 1, 3, 28, 3, pool=3)
        _stage(self, 2, 28, 48, 3, pool=3)
        _stage(self, 3, 48, 64, 2)
        self.dense4 = nn.Linear(3 * 3 * 64, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.prelu4(self.dense4(_flatten_caffe(_run_stages(self, x, 3))))
        return self.dense5_2(y), torch.softmax(self.dense5_1(y), dim=1)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        _stage(self, 1, 3, 32, 3, pool=3)
        _stage(self, 2, 32, 64, 3, pool=3)
        _stage(self, 3, 64, 64, 3, pool=2)
        _stage(self, 4, 64, 128, 2)
        self.dense5 = nn.Linear(3 * 3 * 128, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.prelu5(self.dense5(_flatten_caffe(_run_stages(self, x, 4))))
        return self.dense6_2(y), self.dense6_3(y), torch.softmax(self.dense6_1(y), dim=1)


def pnet() -> PNet:
    """P-Net, the proposal network: any input of at least 12 x 12; outputs per 12 x 12 window at stride 2."""
    return PNet()


def rnet() -> RNet:
    """R-Net, the refinement network: 24 x 24 crops."""
    return RNet()


def onet() -> ONet:
    """O-Net, the output network: 48 x 48 crops."""
    return ONet()
