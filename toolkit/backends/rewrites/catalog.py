"""The rewrites, one entry each: the converter gap it avoids (measured with the pinned converters), the torch
functions it intercepts, and its plan: on the real tensors of a call, whether the call needs it and what
computes the same. A backend lists the names its converter needs (``Backend.rewrites``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.backends.rewrites import modules as m
from toolkit.errors import ConversionError


@dataclass(frozen=True)
class Plan:
    replacement: nn.Module  # called with the replaced call's arguments
    call: str  # what the call was, for the record: "prelu, 128 slopes, rank-2 input"


@dataclass(frozen=True)
class Rewrite:
    name: str
    why: str  # the converter gap, with what was seen
    functions: tuple[Callable, ...]  # the torch functions whose calls it may replace, as a TorchFunctionMode sees them
    plan: Callable[[Callable, tuple, dict], Plan | None]  # (function, args, kwargs) on real tensors -> Plan where needed


def _arg(args: tuple, kwargs: dict, index: int, name: str, default=None):
    return args[index] if len(args) > index else kwargs.get(name, default)


def _pair(v) -> tuple:
    v = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    return v * 2 if len(v) == 1 else v


def _prelu(func, args, kwargs) -> Plan | None:
    x, w = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight")
    if x.dim() == 4 or x.dim() < 2 or w.numel() == 1 or bool((w == w.reshape(-1)[0]).all()):
        return None  # rank 4, or one slope: coremltools converts it
    return Plan(m.PReLUAsRelu(x.dim()), f"prelu, {w.numel()} slopes, rank-{x.dim()} input")


def _interpolate_call(args, kwargs) -> dict | None:
    call = inspect.signature(F.interpolate).bind(*args, **kwargs)
    call.apply_defaults()
    call = dict(call.arguments)
    return call if call["input"].dim() == 4 and call["input"].is_floating_point() else None


def _axis_operators(call: dict) -> tuple[torch.Tensor | None, torch.Tensor | None, tuple[int, int], tuple[int, int]]:
    """The resize's matrix along H and along W (out × in), read off by resizing a one-hot basis with the call's
    own arguments, so that the weights are PyTorch's (None where the axis is left as it is)."""
    x = call["input"]
    (h, w), out = x.shape[-2:], tuple(F.interpolate(x[:1, :1], **{k: v for k, v in call.items() if k != "input"}).shape[-2:])
    opts = {k: call[k] for k in ("mode", "align_corners", "recompute_scale_factor", "antialias")}
    with torch.no_grad():
        if call["size"] is not None:
            rows = F.interpolate(torch.eye(h).reshape(1, 1, h, h), size=(out[0], h), **opts)[0, 0]
            cols = F.interpolate(torch.eye(w).reshape(1, 1, w, w), size=(w, out[1]), **opts)[0, 0]
        else:
            sh, sw = _pair(call["scale_factor"])
            rows = F.interpolate(torch.eye(h).reshape(1, 1, h, h), scale_factor=(sh, 1.0), **opts)[0, 0]
            cols = F.interpolate(torch.eye(w).reshape(1, 1, w, w), scale_factor=(1.0, sw), **opts)[0, 0]
    identity = [a.shape[0] == a.shape[1] and bool(torch.equal(a, torch.eye(a.shape[0]))) for a in (rows, cols)]
    return (None if identity[0] else rows.contiguous(), None if identity[1] else cols.t().contiguous(), (h, w), out)


def _area(func, args, kwargs) -> Plan | None:
    if func is F.interpolate:
        call = _interpolate_call(args, kwargs)
        if call is None or call["mode"] != "area":
            return None
    else:
        x = _arg(args, kwargs, 0, "input")
        if x.dim() not in (3, 4) or not x.is_floating_point():
            return None
        out = tuple(func(x, _arg(args, kwargs, 1, "output_size")).shape[-2:])
        call = {"input": x.reshape(-1, *x.shape[-3:]), "size": out, "scale_factor": None, "mode": "area",
                "align_corners": None, "recompute_scale_factor": None, "antialias": False}
    rows, cols, (h, w), (oh, ow) = _axis_operators(call)
    if h % oh == 0 and w % ow == 0:
        return None  # kernel = stride = in/out: every converter makes it one average pool
    return Plan(m.SeparableResample(rows, cols), f"area resize {h}×{w} → {oh}×{ow}")


def _nearest(func, args, kwargs) -> Plan | None:
    call = _interpolate_call(args, kwargs)
    if call is None or call["mode"] != "nearest":
        return None
    rows, cols, (h, w), (oh, ow) = _axis_operators(call)
    idx = [None if a is None else a.argmax(1) for a in (rows, cols)]
    upscale = [i is None or (o % n == 0 and torch.equal(i, torch.arange(o) // (o // n))) for i, n, o in zip(idx, (h, w), (oh, ow))]
    if all(upscale):
        return None  # identity or an integer upscale: every converter repeats pixels as PyTorch does
    return Plan(m.NearestGather(*idx), f"nearest resize {h}×{w} → {oh}×{ow}")


def _separable(mode_test: Callable[[dict], bool], label: Callable[[dict], str]):
    def plan(func, args, kwargs) -> Plan | None:
        call = _interpolate_call(args, kwargs)
        if call is None or not mode_test(call):
            return None
        rows, cols, (h, w), (oh, ow) = _axis_operators(call)
        return Plan(m.SeparableResample(rows, cols), f"{label(call)} resize {h}×{w} → {oh}×{ow}")
    return plan


def _adaptive_max(*, uneven_only: bool):
    def plan(func, args, kwargs) -> Plan | None:
        x, size = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "output_size")
        if _arg(args, kwargs, 2, "return_indices", False) or x.dim() not in (3, 4):
            return None
        (h, w), (oh, ow) = x.shape[-2:], F.adaptive_max_pool2d(x, size).shape[-2:]
        if uneven_only and h % oh == 0 and w % ow == 0:
            return None
        return Plan(m.AdaptiveMaxAsPools((h, w), (oh, ow)), f"adaptive max pool {h}×{w} → {oh}×{ow}")
    return plan


def _avg_pool(needs: Callable[[bool, tuple, bool, int | None], bool]):
    def plan(func, args, kwargs) -> Plan | None:
        x = _arg(args, kwargs, 0, "input")
        kernel = _pair(_arg(args, kwargs, 1, "kernel_size"))
        stride = _arg(args, kwargs, 2, "stride")
        stride = kernel if stride is None or (isinstance(stride, (list, tuple)) and not stride) else _pair(stride)
        padding = _pair(_arg(args, kwargs, 3, "padding", 0))
        ceil_mode, count_pad = bool(_arg(args, kwargs, 4, "ceil_mode", False)), bool(_arg(args, kwargs, 5, "count_include_pad", True))
        divisor = _arg(args, kwargs, 6, "divisor_override")
        if x.dim() not in (3, 4) or not needs(ceil_mode, padding, count_pad, divisor):
            return None
        out = tuple(func(*args, **kwargs).shape[-2:])
        replacement = m.AvgPoolExplicit(tuple(x.shape[-2:]), out, kernel, stride, padding, count_include_pad=count_pad,
                                        divisor_override=divisor)
        flags = [f for f, on in (("ceil_mode", ceil_mode), ("count_include_pad=False", not count_pad and any(padding)),
                                 (f"divisor_override={divisor}", divisor)) if on]
        return Plan(replacement, f"avg pool {kernel[0]}×{kernel[1]} stride {stride[0]}×{stride[1]}, {', '.join(flags)}")
    return plan


def _elu(func, args, kwargs) -> Plan | None:
    if func is F.selu:
        return Plan(m.ExpLinear(1.6732632423543772848170429916717, 1.0507009873554804934193349852946), "selu")
    alpha = float(_arg(args, kwargs, 1, "alpha", 1.0))
    return Plan(m.ExpLinear(alpha), f"elu, alpha {alpha:g}")


def _channel_shuffle(func, args, kwargs) -> Plan | None:
    x, groups = _arg(args, kwargs, 0, "input"), int(_arg(args, kwargs, 1, "groups"))
    return Plan(m.ChannelShuffleAsReshape(tuple(x.shape), groups), f"channel shuffle, {groups} groups")


def _pixel_shuffle(func, args, kwargs) -> Plan | None:
    x, r = _arg(args, kwargs, 0, "input"), int(_arg(args, kwargs, 1, "upscale_factor"))
    if x.dim() != 4:
        return None
    return Plan(m.PixelShuffleAsTransposedConv(x.shape[1], r), f"pixel shuffle by {r} → one-hot transposed conv")


_CATALOG = (
    Rewrite("prelu_rank",
            "coremltools 9.0 converts a PReLU with per-channel slopes only on rank-4 input (after a Linear layer: 'rank 3 or "
            "rank 5 input is only supported when all the values of alpha are same'); relu(x) − a·relu(−x) is exact",
            (torch.prelu,), _prelu),
    Rewrite("area_resize",
            "an area resize (adaptive average pooling) whose sizes do not divide: coremltools 9.0 and coreai-torch 0.4.3 make "
            "per-pixel slice and mean ops (224→48: 2,304 of each, 106 s to convert to Core ML, 6,921 Core AI ops), the "
            "ONNX exporter and litert-torch a GatherND over a padded window table with boolean masks (224→48: 1.0–1.3 MB of index "
            "tables, 100+ ops, GATHER_ND off the TFLite GPU delegate, BOOL initializers in ONNX), and coreai-torch refuses an "
            "enlarging one; a fixed pooling matrix per axis (two linear layers) computes the same",
            (F.adaptive_avg_pool2d, F.interpolate), _area),
    Rewrite("nearest_resize",
            "nearest-neighbour resizing other than an integer upscale: litert-torch (8→12, 8→4, 9→3), coreai-torch (8→5, 9→3) "
            "and coremltools 9.0 (8→12, 8→4, 9→3) pick other pixels than PyTorch's floor(i·in/out), a wrong output and no "
            "error; a gather per axis with PyTorch's own indices is exact",
            (F.interpolate,), _nearest),
    Rewrite("antialias_resize",
            "antialiased bilinear / bicubic resizing: litert-torch and coreai-torch have no lowering for it, coremltools 9.0 drops "
            "the antialiasing (wrong output when shrinking); a fixed resampling matrix per axis is exact",
            (F.interpolate,), _separable(lambda c: c["antialias"] and c["mode"] in ("bilinear", "bicubic"), lambda c: f"antialiased {c['mode']}")),
    Rewrite("bicubic_resize",
            "coremltools 9.0 has no converter for upsample_bicubic2d; a fixed resampling matrix per axis is exact",
            (F.interpolate,), _separable(lambda c: not c["antialias"] and c["mode"] == "bicubic", lambda c: "bicubic")),
    Rewrite("adaptive_max_pool",
            "litert-torch and coreai-torch 0.4.3 have no lowering for adaptive_max_pool2d (global ones too); a max over H, W, a "
            "max pool with kernel = stride, or a stride-1 max pool and gathers (sizes that do not divide) is exact",
            (F.adaptive_max_pool2d,), _adaptive_max(uneven_only=False)),
    Rewrite("adaptive_max_pool_uneven",
            "adaptive_max_pool2d whose sizes do not divide: the ONNX exporter has no function for it ('No decompositions "
            "registered for the real-valued input'), coremltools 9.0 makes per-pixel slice and max ops (30→7: 100 ops); a "
            "stride-1 max pool and gathers that cover each window are exact",
            (F.adaptive_max_pool2d,), _adaptive_max(uneven_only=True)),
    Rewrite("avg_pool_window",
            "coreai-torch 0.4.3 fails on avg_pool2d with ceil_mode ('tuple index out of range') and ignores "
            "count_include_pad=False (wrong output with padding); explicit zero padding, a valid average pool and a fixed "
            "per-position divisor are exact",
            (F.avg_pool2d,), _avg_pool(lambda ceil, pad, count_pad, divisor: ceil or (not count_pad and any(pad)))),
    Rewrite("avg_pool_divisor",
            "avg_pool2d with divisor_override: the ONNX exporter drops the override (wrong output), coremltools 9.0 refuses it; "
            "a valid average pool and a fixed per-position divisor are exact",
            (F.avg_pool2d,), _avg_pool(lambda ceil, pad, count_pad, divisor: divisor is not None)),
    Rewrite("elu",
            "coreai-torch 0.4.3 has no lowering for elu (nn.ELU, nn.SELU); relu(x) + α·(exp(min(x, 0)) − 1) computes it",
            (F.elu, F.selu), _elu),
    Rewrite("channel_shuffle",
            "coremltools 9.0 has no converter for channel_shuffle (nn.ChannelShuffle); reshape, transpose, reshape is exact",
            (torch.channel_shuffle, torch.native_channel_shuffle), _channel_shuffle),
    Rewrite("pixel_shuffle",
            "litert-torch lowers pixel shuffle to RESHAPE / TRANSPOSE chains (4 TRANSPOSE ops per shuffle in the SR model); "
            "a transposed convolution with a one-hot kernel keeps the graph channel-last (XNNPACK, GPU delegate) and is exact",
            (torch.pixel_shuffle,), _pixel_shuffle),
)
REWRITES: dict[str, Rewrite] = {r.name: r for r in _CATALOG}


def get_rewrite(name: str) -> Rewrite:
    """A rewrite by name; an unknown name is an error listing the known ones."""
    try:
        return REWRITES[name]
    except KeyError:
        raise ConversionError(f"unknown rewrite {name!r}", fix=f"use one of: {', '.join(REWRITES)}") from None
