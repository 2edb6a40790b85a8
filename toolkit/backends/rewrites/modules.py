"""The equivalent computations a rewrite puts in place of one call. Each is built on the real tensors of the
model's forward pass (its constants are buffers, so every tracer stores them as weights), is called with the
replaced call's own arguments, and computes the same values: bit-identical where it only moves or selects
values, equal to float32 rounding where it sums in another order (tested in ``tests/test_rewrites.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PReLUAsRelu(nn.Module):
    """``prelu(x, a) = relu(x) − a·relu(−x)``, ``a`` broadcast along dim 1: for x < 0 it is the same product a·x."""

    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def forward(self, x: torch.Tensor, weight: torch.Tensor, *_, **__) -> torch.Tensor:
        a = weight.reshape([1, -1] + [1] * (self.rank - 2))
        return torch.relu(x) - a * torch.relu(-x)


class SeparableResample(nn.Module):
    """A linear resize that acts on each axis alone (area, bilinear, bicubic, antialiased or not) as one fixed
    matrix per axis (out × in), applied as a linear layer along W and along H: the constant is the weight of a
    fully-connected op, which every converter and quantizer handles (a constant left operand of a matmul broke
    TFLite int8). An axis the resize leaves alone has no matrix."""

    def __init__(self, rows: torch.Tensor | None, cols: torch.Tensor | None):
        super().__init__()
        self.register_buffer("rows", rows)  # (out H, in H)
        self.register_buffer("cols", cols)  # (out W, in W)

    def forward(self, x: torch.Tensor, *_, **__) -> torch.Tensor:
        if self.cols is not None:
            x = F.linear(x, self.cols)
        if self.rows is not None:
            x = F.linear(x.transpose(-1, -2), self.rows).transpose(-1, -2)
        return x


class NearestGather(nn.Module):
    """A nearest-neighbour resize as one gather per axis, with the source indices PyTorch itself picks."""

    def __init__(self, rows: torch.Tensor | None, cols: torch.Tensor | None):
        super().__init__()
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)

    def forward(self, x: torch.Tensor, *_, **__) -> torch.Tensor:
        if self.rows is not None:
            x = x.index_select(-2, self.rows)
        if self.cols is not None:
            x = x.index_select(-1, self.cols)
        return x


def _adaptive_windows(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows along one axis: [floor(i·in/out), ceil((i+1)·in/out))."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


def _window_cover(n_in: int, n_out: int) -> tuple[int, torch.Tensor]:
    """Windows of unequal length as the union of stride-1 windows of the shortest length ``m``: output i is the
    max over rows ``idx[j, i]`` (j < k) of a stride-1 max pool of kernel m. Overlaps repeat values; max ignores that."""
    windows = _adaptive_windows(n_in, n_out)
    m = min(e - s for s, e in windows)
    k = max(-(-(e - s) // m) for s, e in windows)
    idx = torch.tensor([[min(s + j * m, e - m) for s, e in windows] for j in range(k)], dtype=torch.long)
    return m, idx


class AdaptiveMaxAsPools(nn.Module):
    """``adaptive_max_pool2d`` as a max over H, W (output 1×1), a max pool with kernel = stride (sizes divide),
    or, along an axis whose sizes do not divide, a stride-1 max pool of the shortest window and a max over
    gathered rows that covers each window exactly."""

    def __init__(self, size_in: tuple[int, int], size_out: tuple[int, int]):
        super().__init__()
        self.global_max = tuple(size_out) == (1, 1)
        kernel, stride, covers = [], [], []
        for n_in, n_out in zip(size_in, size_out):
            if n_in % n_out == 0:
                kernel.append(n_in // n_out)
                stride.append(n_in // n_out)
                covers.append(None)
            else:
                m, idx = _window_cover(n_in, n_out)
                kernel.append(m)
                stride.append(1)
                covers.append(idx)
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.register_buffer("rows", covers[0])
        self.register_buffer("cols", covers[1])

    def forward(self, x: torch.Tensor, *_, **__) -> torch.Tensor:
        if self.global_max:
            return x.amax(dim=(-2, -1), keepdim=True)
        if self.kernel != (1, 1):
            x = F.max_pool2d(x, self.kernel, self.stride)
        for dim, idx in ((-2, self.rows), (-1, self.cols)):
            if idx is not None:
                parts = [x.index_select(dim, idx[j]) for j in range(idx.shape[0])]
                x = parts[0]
                for p in parts[1:]:
                    x = torch.maximum(x, p)
        return x


def _avg_divisors(n_in: int, n_out: int, k: int, s: int, p: int, count_pad: bool) -> list[int]:
    """Per output position along one axis, what PyTorch's avg_pool2d counts in a window (before override)."""
    out = []
    for i in range(n_out):
        start = i * s - p
        end = min(start + k, n_in + p)
        out.append(end - start if count_pad else min(end, n_in) - max(start, 0))
    return out


class AvgPoolExplicit(nn.Module):
    """``avg_pool2d`` with padding, ceil mode, ``count_include_pad=False`` or a divisor override as explicit
    zero padding, a valid average pool (kernel, stride) and a fixed per-position factor that turns its
    kernel-area divisor into the one PyTorch uses."""

    def __init__(self, size_in: tuple[int, int], size_out: tuple[int, int], kernel: tuple[int, int],
                 stride: tuple[int, int], padding: tuple[int, int], *, count_include_pad: bool, divisor_override: int | None):
        super().__init__()
        pads, crop = [], False
        for n_in, n_out, k, s, p in zip(size_in, size_out, kernel, stride, padding):
            after = max((n_out - 1) * s + k - n_in - p, 0)  # ceil mode may read past the padding
            pads.append((p, after))
            crop |= (n_in + p + after - k) // s + 1 > n_out
        (top, bottom), (left, right) = pads
        self.pad = (left, right, top, bottom)
        self.kernel, self.stride, self.size_out, self.crop = tuple(kernel), tuple(stride), tuple(size_out), crop
        if divisor_override:
            divisor = torch.full(tuple(size_out), float(divisor_override), dtype=torch.float64)
        else:
            dh, dw = (torch.tensor(_avg_divisors(n, o, k, s, p, count_include_pad), dtype=torch.float64)
                      for n, o, k, s, p in zip(size_in, size_out, kernel, stride, padding))
            divisor = dh[:, None] * dw[None, :]
        factor = (kernel[0] * kernel[1] / divisor).float()
        self.register_buffer("factor", None if bool((factor == 1).all()) else factor)

    def forward(self, x: torch.Tensor, *_, **__) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        y = F.avg_pool2d(x, self.kernel, self.stride)
        if self.crop:
            y = y[..., : self.size_out[0], : self.size_out[1]]
        return y if self.factor is None else y * self.factor


class ExpLinear(nn.Module):
    """``scale · elu(x, alpha)`` (ELU, SELU) from exp: ``relu(x) + alpha·(exp(min(x, 0)) − 1)``."""

    def __init__(self, alpha: float, scale: float = 1.0):
        super().__init__()
        self.alpha, self.scale = float(alpha), float(scale)

    def forward(self, x: torch.Tensor, *_, **__) -> torch.Tensor:
        y = torch.relu(x) + self.alpha * (torch.exp(torch.clamp(x, max=0.0)) - 1.0)
        return y if self.scale == 1.0 else y * self.scale


class ChannelShuffleAsReshape(nn.Module):
    """``channel_shuffle(x, g)``: view the channels as (g, C/g), swap the two, flatten again."""

    def __init__(self, shape: tuple[int, ...], groups: int):
        super().__init__()
        self.shape, self.groups = tuple(shape), int(groups)

    def forward(self, x: torch.Tensor, *_, **__) -> torch.Tensor:
        n, c, *rest = self.shape
        g = self.groups
        return x.reshape(n, g, c // g, *rest).transpose(1, 2).reshape(n, c, *rest)


class PixelShuffleAsTransposedConv(nn.Module):
    """``pixel_shuffle(x, r)`` as ``conv_transpose2d`` with kernel r, stride r and a one-hot weight:
    output channel k at offset (i, j) reads input channel k·r² + i·r + j, exactly."""

    def __init__(self, in_channels: int, upscale_factor: int):
        super().__init__()
        r = upscale_factor
        if in_channels % (r * r):
            raise ValueError(f"pixel shuffle by {r} needs channels divisible by {r * r}, got {in_channels}")
        out = in_channels // (r * r)
        w = torch.zeros(in_channels, out, r, r)
        for k in range(out):
            for i in range(r):
                for j in range(r):
                    w[k * r * r + i * r + j, k, i, j] = 1.0
        self.register_buffer("weight", w)
        self.r = r

    def forward(self, x: torch.Tensor, *_, **__) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, stride=self.r)


__all__ = ["AdaptiveMaxAsPools", "AvgPoolExplicit", "ChannelShuffleAsReshape", "ExpLinear", "NearestGather", "PReLUAsRelu",
           "PixelShuffleAsTransposedConv", "SeparableResample"]
