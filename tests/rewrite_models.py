"""Tiny models that show each converter gap a rewrite avoids (its witness), and the two end-to-end models of the
issue: an MTCNN R-Net-like network (per-channel PReLU after a Linear) and one with an in-graph area resize."""

import torch
import torch.nn.functional as F
from torch import nn


def prelu(n: int) -> nn.PReLU:
    p = nn.PReLU(n)
    with torch.no_grad():
        p.weight.copy_(torch.linspace(-0.5, 0.5, n))  # per-channel slopes that differ (the default 0.25 everywhere converts)
    return p


class Call(nn.Module):
    """Calls a torch function in its own forward (as a user's model does), with optional submodules."""

    def __init__(self, fn, *modules):
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(modules)

    def forward(self, x):
        return self.fn(x, *self.mods)


class RNetLike(nn.Module):
    """MTCNN's R-Net shape: conv + per-channel PReLU + max pool (ceil mode), then Linear + PReLU(128) on a rank-2
    tensor, and two heads (face score, box offsets) concatenated into one output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), prelu(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), prelu(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.dense4, self.prelu4 = nn.Linear(48 * 4 * 4, 128), prelu(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return torch.cat([torch.softmax(self.dense5_1(x), 1), self.dense5_2(x)], 1)


class AreaResize(nn.Module):
    """An in-graph area resize of the input to ``size`` (as MTCNN's O-Net resized 224 → 48), then a small CNN."""

    def __init__(self, size: int):
        super().__init__()
        torch.manual_seed(0)
        self.size = size
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = F.interpolate(x, size=(self.size, self.size), mode="area")
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


# name -> (model factory, input shape): one witness per rewrite, the smallest model that shows the gap.
WITNESSES = {
    "prelu_rank": (lambda: nn.Sequential(nn.Linear(8, 16), prelu(16)), (1, 8)),
    "area_resize": (lambda: nn.AdaptiveAvgPool2d((3, 5)), (1, 4, 10, 11)),
    "nearest_resize": (lambda: Call(lambda x: F.interpolate(x, size=(5, 12), mode="nearest")), (1, 3, 8, 8)),
    "antialias_resize": (lambda: Call(lambda x: F.interpolate(x, size=(5, 7), mode="bilinear", antialias=True)), (1, 3, 16, 16)),
    "bicubic_resize": (lambda: Call(lambda x: F.interpolate(x, scale_factor=2, mode="bicubic")), (1, 3, 8, 8)),
    "adaptive_max_pool": (lambda: nn.AdaptiveMaxPool2d(1), (1, 4, 10, 10)),
    "adaptive_max_pool_uneven": (lambda: nn.AdaptiveMaxPool2d((3, 5)), (1, 4, 10, 11)),
    "avg_pool_window": (lambda: nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), nn.AvgPool2d(2, 2, ceil_mode=True)), (1, 4, 8, 8)),
    "avg_pool_divisor": (lambda: nn.AvgPool2d(3, 1, 1, divisor_override=4), (1, 4, 8, 8)),
    "elu": (lambda: nn.ELU(), (1, 4, 8, 8)),
    "channel_shuffle": (lambda: nn.ChannelShuffle(2), (1, 8, 4, 4)),
    # NHWC in and out, as the device contract feeds a network: a channel-last graph needs no TRANSPOSE but the shuffle's
    "pixel_shuffle": (lambda: Call(lambda x: F.pixel_shuffle(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)), (1, 4, 4, 8)),
}
