"""Exact module rewrites applied before a backend lowers a graph, where the backend's own lowering
of an op is poor for phones. Each rewrite returns a new module (the input is never changed) and says
what it replaced; outputs are bit-identical in float32 (tested).

- ``nn.PixelShuffle`` → a transposed convolution with a fixed one-hot kernel (stride r). litert-torch
  decomposes pixel shuffle into RESHAPE/TRANSPOSE chains (4 TRANSPOSE ops per shuffle in the SR
  model); TRANSPOSE_CONV keeps the graph channel-last and runs on XNNPACK and the GPU delegate.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, stride=self.r)


def _set(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def channel_last_rewrites(module: nn.Module, sample: torch.Tensor) -> tuple[nn.Module, list[str]]:
    """A copy of ``module`` with pixel shuffles as transposed convolutions, and what was replaced."""
    shuffles = {name: m for name, m in module.named_modules() if isinstance(m, nn.PixelShuffle)}
    if not shuffles:
        return module, []
    channels: dict[str, int] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, name=name: channels.__setitem__(name, args[0].shape[1]))
             for name, m in shuffles.items()]
    try:
        with torch.no_grad():
            module.eval()(sample)
    finally:
        for h in hooks:
            h.remove()
    twin = copy.deepcopy(module)
    done = []
    for name, m in shuffles.items():
        _set(twin, name, PixelShuffleAsTransposedConv(channels[name], m.upscale_factor))
        done.append(f"{name}: PixelShuffle({m.upscale_factor}) -> one-hot TRANSPOSE_CONV")
    return twin.eval(), done
