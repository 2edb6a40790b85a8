"""The device contract: what an app feeds an exported model, baked into the graph.

The app hands over RGB pixels as the camera gives them (0–255, channel-last by default); the graph
does the scaling, normalization and layout change itself, so app and model cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from toolkit.outputs import name_outputs
from toolkit.registry import ModelSpec

Layout = Literal["nhwc", "nchw"]
PixelRange = Literal["0-255", "0-1"]


@dataclass(frozen=True)
class InputContract:
    layout: Layout = "nhwc"
    pixel_range: PixelRange = "0-255"

    def input_shape(self, spec: ModelSpec) -> tuple[int, ...]:
        h, w = spec.input_size
        return (1, h, w, 3) if self.layout == "nhwc" else (1, 3, h, w)

    def describe(self, spec: ModelSpec) -> dict:
        return {
            "shape": list(self.input_shape(spec)),
            "layout": self.layout.upper(),
            "dtype": "float32",
            "range": [0, 255] if self.pixel_range == "0-255" else [0, 1],
            "color_order": "RGB",
            "normalization": {
                "applied_in_graph": True,
                "network_color_order": spec.color_order,
                "formula": "(pixel / scale - mean) / std" + ("" if spec.color_order == "RGB" else f", channels reordered to {spec.color_order} first"),
                "scale": 255.0 if self.pixel_range == "0-255" else 1.0,
                "mean": list(spec.mean),
                "std": list(spec.std),
            },
        }


def to_network_order(x: torch.Tensor, color_order: str) -> torch.Tensor:
    """NCHW RGB → the channel order the network was trained on (slices and a concat: every converter has them)."""
    if color_order == "RGB":
        return x
    return torch.cat([x[:, 2:3], x[:, 1:2], x[:, 0:1]], dim=1)


def normalize(pixels: torch.Tensor, spec: ModelSpec, *, pixel_range: PixelRange = "0-255") -> torch.Tensor:
    """NCHW RGB pixels in ``pixel_range`` → what the network was trained on (its channel order, normalized)."""
    pixels = to_network_order(pixels, spec.color_order)
    scale = 255.0 if pixel_range == "0-255" else 1.0
    mean = torch.tensor(spec.mean, dtype=pixels.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=pixels.dtype).view(1, 3, 1, 1)
    return (pixels / scale - mean) / std


def to_network_input(images: "object", spec: ModelSpec) -> torch.Tensor:
    """uint8 NHWC RGB (numpy) → normalized NCHW float tensor."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return normalize(x, spec)


def output_ranks(model: nn.Module, spec: ModelSpec) -> tuple[int, ...]:
    """The rank of each declared output, from one forward pass of a zero image at the spec's input size
    (eval mode for the pass; the model's mode is restored)."""
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            named = name_outputs(model(torch.zeros(1, 3, *spec.input_size)), [o.name for o in spec.outputs])
    finally:
        model.train(training)
    return tuple(v.dim() for v in named.values())


class DeviceContract(nn.Module):
    """Wraps a network so that it takes the contract's input and returns its outputs in the contract's
    layout: image-shaped (rank-4, N x C x H x W) outputs channel-last when the input is. One declared
    output is returned as that tensor (the graph is the network's own); several as a tuple in the spec's
    order. Scale and shift fold into a single multiply-add per channel."""

    def __init__(self, model: nn.Module, spec: ModelSpec, contract: InputContract, *, input_layout: Layout | None = None):
        super().__init__()
        self.model = model
        self.layout = contract.layout
        # Core ML image inputs arrive channel-first whatever the bundle's tensor layout.
        self.input_layout = input_layout or contract.layout
        self.output_names = tuple(o.name for o in spec.outputs)
        # Which outputs are image-shaped is fixed per network: read once on a real input, so tracing (torch.fx,
        # torch.export) sees no shape-dependent branch, and a network whose outputs do not match the declared
        # ones is refused here, before any conversion.
        self.output_ranks = output_ranks(model, spec)
        self.color_order = spec.color_order
        scale = 255.0 if contract.pixel_range == "0-255" else 1.0
        std = torch.tensor(spec.std)
        self.register_buffer("mul", (1.0 / (scale * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("add", (-torch.tensor(spec.mean) / std).view(1, 3, 1, 1), persistent=False)

    def with_input_layout(self, layout: Layout) -> "DeviceContract":
        """The same network and output contract, fed in ``layout`` (shares the weights)."""
        import copy

        twin = copy.copy(self)  # a new attribute dict over the same submodules and buffers
        twin.input_layout = layout
        return twin

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.input_layout == "nhwc":
            x = x.permute(0, 3, 1, 2)
        named = name_outputs(self.model(to_network_order(x, self.color_order) * self.mul + self.add), self.output_names)
        ys = tuple(y.permute(0, 2, 3, 1) if self.layout == "nhwc" and rank == 4 else y
                   for y, rank in zip(named.values(), self.output_ranks))
        return ys[0] if len(ys) == 1 else ys
