"""A reference interpreter for the Core ML programs skinkit emits: the artifact's own numerics on Linux.

coremltools runs ``predict`` only on macOS. This loads the saved ``.mlpackage`` back into a MIL
program (coremltools' milproto loader: the same weights file, the same ops, in order) and executes
it op by op with PyTorch kernels. Precision follows the program: every op's output is rounded to
the dtype the program declares for it (float16 programs store every intermediate tensor in float16);
an op computes in float32 from its float16 inputs. Compressed weights (``constexpr_*``: affine /
block-wise dequantization, lookup tables, sparse masks) are materialized exactly as the op
definitions specify. An op outside the table is an error naming it.

What this does not model: Core ML's GPU and Neural Engine accumulate some ops in float16, so device
outputs differ from these by a few float16 steps more. On macOS, ``MLModel.predict`` runs as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.errors import VerificationError

_Kernel = Callable[..., object]
KERNELS: dict[str, _Kernel] = {}


def kernel(*names: str):
    def register(fn: _Kernel) -> _Kernel:
        for n in names:
            KERNELS[n] = fn
        return fn
    return register


# ----------------------------------------------------------------------------------- elementwise

_BINARY = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "real_div": torch.div, "pow": torch.pow,
    "maximum": torch.maximum, "minimum": torch.minimum, "floor_div": lambda a, b: torch.div(a, b, rounding_mode="floor"),
    "equal": torch.eq, "not_equal": torch.ne, "greater": torch.gt, "greater_equal": torch.ge, "less": torch.lt, "less_equal": torch.le,
}
def _tensors(x, y):
    dtype = x.dtype if torch.is_tensor(x) else (y.dtype if torch.is_tensor(y) else torch.float32)
    return torch.as_tensor(x, dtype=dtype), torch.as_tensor(y, dtype=dtype)


for _name, _fn in _BINARY.items():
    kernel(_name)(lambda x, y, _fn=_fn, **_: _fn(*_tensors(x, y)))

_UNARY = {
    "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt,
    "abs": torch.abs, "erf": torch.erf, "floor": torch.floor, "ceil": torch.ceil, "round": torch.round, "sign": torch.sign,
    "sin": torch.sin, "cos": torch.cos, "square": torch.square, "silu": F.silu, "softplus": F.softplus, "relu6": F.relu6,
    "identity": lambda x: x, "logical_not": torch.logical_not,
}
for _name, _fn in _UNARY.items():
    kernel(_name)(lambda x, _fn=_fn, **_: _fn(x))


@kernel("rsqrt")
def _rsqrt(x, epsilon=1e-12, **_):
    return torch.rsqrt(x + float(epsilon))


@kernel("inverse")
def _inverse(x, epsilon=1e-4, **_):
    return 1.0 / (x + float(epsilon))


@kernel("clip")
def _clip(x, alpha, beta, **_):
    return torch.clamp(x, float(alpha), float(beta))


@kernel("leaky_relu")
def _leaky(x, alpha=0.01, **_):
    return F.leaky_relu(x, float(alpha))


@kernel("prelu")
def _prelu(x, alpha, **_):
    return F.prelu(x, torch.as_tensor(alpha, dtype=x.dtype))


@kernel("thresholded_relu")
def _thresholded_relu(x, alpha=1.0, **_):
    return torch.where(x >= float(alpha), x, torch.zeros_like(x))  # x where x >= alpha, else 0 (hardswish's lower cut)


@kernel("elu")
def _elu(x, alpha=1.0, **_):
    return torch.where(x > 0, x, float(alpha) * torch.expm1(x))  # MIL: x if x > 0 else alpha * (e^x - 1)


@kernel("softplus_parametric")
def _softplus_parametric(x, alpha, beta, **_):
    """MIL: alpha_c * log(1 + e^(beta_c * x)), one alpha and beta per channel (axis 1)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    a, b = (torch.as_tensor(v, dtype=x.dtype).reshape(shape) for v in (alpha, beta))
    return a * F.softplus(b * x)


@kernel("reverse")
def _reverse(x, axes=None, **_):
    dims = [int(a) % x.dim() for a in np.atleast_1d(axes)] if axes is not None else list(range(x.dim()))
    return torch.flip(x, dims)


@kernel("sigmoid_hard")
def _hard_sigmoid(x, alpha=0.2, beta=0.5, **_):
    return torch.clamp(float(alpha) * x + float(beta), 0.0, 1.0)


@kernel("gelu")
def _gelu(x, mode="EXACT", **_):
    if mode == "EXACT":
        return F.gelu(x)
    if mode == "TANH_APPROXIMATION":
        return F.gelu(x, approximate="tanh")
    return x * torch.sigmoid(1.702 * x)  # SIGMOID_APPROXIMATION


@kernel("softmax")
def _softmax(x, axis=-1, **_):
    return torch.softmax(x, dim=int(axis))


@kernel("select")
def _select(cond, a, b, **_):
    return torch.where(cond.bool(), a, b)


@kernel("cast")
def _cast(x, dtype, **_):
    return x  # the output var's declared dtype does the rounding


# ----------------------------------------------------------------------------------- linear algebra

def _pads_same(size: list[int], kernel_: list[int], stride: list[int], dilation: list[int], lower: bool) -> list[int]:
    pads = []
    for n, k, s, d in zip(size, kernel_, stride, dilation):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small = total // 2
        pads += [total - small, small] if lower else [small, total - small]
    return pads


def _spatial_pad(x, pad_type, pad, kernel_, strides, dilations):
    """MIL padding (valid / same / same_lower / custom [begin, end] per spatial dim) as an explicit F.pad."""
    rank = x.dim() - 2
    strides = list(strides) if strides is not None else [1] * rank
    dilations = list(dilations) if dilations is not None else [1] * rank
    if pad_type == "valid":
        return x
    if pad_type in ("same", "same_lower"):
        pads = _pads_same(list(x.shape[2:]), kernel_, strides, dilations, lower=pad_type == "same_lower")
    elif pad_type == "custom":
        pads = [int(p) for p in pad]
    else:
        raise VerificationError(f"MIL interpreter: pad_type {pad_type!r} is not implemented", fix="report it with the model")
    torch_pads = []  # F.pad wants the last dim first
    for i in reversed(range(rank)):
        torch_pads += [pads[2 * i], pads[2 * i + 1]]
    return F.pad(x, torch_pads) if any(torch_pads) else x


@kernel("conv")
def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1, **_):
    rank = x.dim() - 2
    w = torch.as_tensor(weight, dtype=x.dtype)
    x = _spatial_pad(x, pad_type, pad, list(w.shape[2:]), strides, dilations)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
    b = None if bias is None else torch.as_tensor(bias, dtype=x.dtype)
    return fn(x, w, b, stride=tuple(strides) if strides is not None else 1,
              dilation=tuple(dilations) if dilations is not None else 1, groups=int(groups))


@kernel("conv_transpose")
def _conv_transpose(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1,
                    output_shape=None, **_):
    rank = x.dim() - 2
    w = torch.as_tensor(weight, dtype=x.dtype)
    strides = tuple(int(s) for s in strides) if strides is not None else (1,) * rank
    dilations = tuple(int(d) for d in dilations) if dilations is not None else (1,) * rank
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[rank]
    b = None if bias is None else torch.as_tensor(bias, dtype=x.dtype)
    y = fn(x, w, b, stride=strides, dilation=dilations, groups=int(groups))
    if pad_type == "custom" and pad is not None:
        sl = [slice(None), slice(None)]
        for i in range(rank):
            sl.append(slice(int(pad[2 * i]), y.shape[2 + i] - int(pad[2 * i + 1])))
        y = y[tuple(sl)]
    elif pad_type in ("same", "same_lower"):
        target = [n * s for n, s in zip(x.shape[2:], strides)]
        sl = [slice(None), slice(None)]
        for i, t in enumerate(target):
            extra = y.shape[2 + i] - t
            lo = extra - extra // 2 if pad_type == "same_lower" else extra // 2
            sl.append(slice(lo, lo + t))
        y = y[tuple(sl)]
    if output_shape is not None:
        want = [int(v) for v in np.asarray(output_shape).reshape(-1)][-rank:]
        if list(y.shape[2:]) != want:
            y = F.pad(y, [p for i in reversed(range(rank)) for p in (0, want[i] - y.shape[2 + i])])
    return y


@kernel("linear")
def _linear(x, weight, bias=None, **_):
    return F.linear(x, torch.as_tensor(weight, dtype=x.dtype), None if bias is None else torch.as_tensor(bias, dtype=x.dtype))


@kernel("matmul")
def _matmul(x, y, transpose_x=False, transpose_y=False, **_):
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if transpose_x:
        x = x.transpose(-1, -2)
    if transpose_y:
        y = y.transpose(-1, -2)
    return torch.matmul(x, y.to(x.dtype))


@kernel("scaled_dot_product_attention")
def _sdpa(query, key, value, attn_mask=None, **_):
    """iOS18 fused attention: softmax(Q K^T / sqrt(E) + mask) V. A bool mask keeps the positions where it
    is True (the others get -inf); a float mask is added to the scores."""
    scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(query.shape[-1])
    if attn_mask is not None:
        mask = torch.as_tensor(attn_mask)
        scores = scores.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else scores + mask.to(scores.dtype)
    return torch.matmul(torch.softmax(scores, dim=-1), value)


@kernel("einsum")
def _einsum(values, equation, **_):
    return torch.einsum(str(equation), *values)


# ----------------------------------------------------------------------------------- normalization

def _channel_view(v, x):
    return torch.as_tensor(v, dtype=x.dtype).reshape(1, -1, *([1] * (x.dim() - 2)))


def _standardize(x, dims, epsilon):
    return (x - x.mean(dim=dims, keepdim=True)) / torch.sqrt(x.var(dim=dims, keepdim=True, unbiased=False) + float(epsilon))


def _affine(y, gamma, beta, view):
    if gamma is not None:
        y = y * view(gamma)
    if beta is not None:
        y = y + view(beta)
    return y


@kernel("batch_norm")
def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5, **_):
    y = (x - _channel_view(mean, x)) / torch.sqrt(_channel_view(variance, x) + float(epsilon))
    return _affine(y, gamma, beta, lambda v: _channel_view(v, x))


@kernel("instance_norm")
def _instance_norm(x, gamma=None, beta=None, epsilon=1e-5, **_):
    y = _standardize(x, tuple(range(2, x.dim())), epsilon)
    return _affine(y, gamma, beta, lambda v: _channel_view(v, x))


@kernel("layer_norm")
def _layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5, **_):
    dims = tuple(int(a) for a in axes) if axes is not None else tuple(range(x.dim()))
    return _affine(_standardize(x, dims, epsilon), gamma, beta, lambda v: torch.as_tensor(v, dtype=x.dtype))


@kernel("l2_norm")
def _l2_norm(x, axes=None, epsilon=1e-6, **_):
    dims = tuple(int(a) for a in axes) if axes is not None else tuple(range(1, x.dim()))
    return x / torch.sqrt(torch.clamp((x * x).sum(dim=dims, keepdim=True), min=float(epsilon)))


# ----------------------------------------------------------------------------------- reductions

def _prod(x, dims, keep):
    for dim in sorted((d % x.dim() for d in dims), reverse=True):  # highest first: lower indices stay valid
        x = x.prod(dim=dim, keepdim=keep)
    return x


def _reduce(fn):
    def run(x, axes=None, keep_dims=False, **_):
        dims = tuple(int(a) for a in axes) if axes is not None else tuple(range(x.dim()))
        return fn(x, dims, bool(keep_dims))
    return run


kernel("reduce_mean")(_reduce(lambda x, d, k: x.mean(dim=d, keepdim=k)))
kernel("reduce_sum")(_reduce(lambda x, d, k: x.sum(dim=d, keepdim=k)))
kernel("reduce_max")(_reduce(lambda x, d, k: x.amax(dim=d, keepdim=k)))
kernel("reduce_min")(_reduce(lambda x, d, k: x.amin(dim=d, keepdim=k)))
kernel("reduce_prod")(_reduce(lambda x, d, k: _prod(x, d, k)))
kernel("reduce_l2_norm")(_reduce(lambda x, d, k: torch.sqrt((x * x).sum(dim=d, keepdim=k))))


@kernel("reduce_argmax")
def _argmax(x, axis=-1, keep_dims=False, **_):
    return torch.argmax(x, dim=int(axis), keepdim=bool(keep_dims)).to(torch.int32)


# ----------------------------------------------------------------------------------- pooling, resampling

def _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, fn, **kw):
    ks = [int(k) for k in kernel_sizes]
    x = _spatial_pad(x, pad_type, pad, ks, strides, None) if pad_type != "valid" else x
    return fn(x, kernel_size=tuple(ks), stride=tuple(int(s) for s in strides), ceil_mode=bool(ceil_mode), **kw)


@kernel("max_pool")
def _max_pool(x, kernel_sizes, strides, pad_type="valid", pad=None, ceil_mode=False, **_):
    if pad_type != "valid" and x.is_floating_point():
        # Padding for max pooling never wins: pad with -inf rather than zero.
        rank = x.dim() - 2
        strides_ = list(strides)
        pads = (_pads_same(list(x.shape[2:]), [int(k) for k in kernel_sizes], strides_, [1] * rank, pad_type == "same_lower")
                if pad_type in ("same", "same_lower") else [int(p) for p in pad])
        x = F.pad(x, [p for i in reversed(range(rank)) for p in (pads[2 * i], pads[2 * i + 1])], value=-math.inf)
        pad_type = "valid"
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[x.dim() - 2]
    return _pool(x, kernel_sizes, strides, "valid", pad, ceil_mode, fn)


@kernel("avg_pool")
def _avg_pool(x, kernel_sizes, strides, pad_type="valid", pad=None, ceil_mode=False, exclude_padding_from_average=False, **_):
    rank = x.dim() - 2
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[rank]
    if pad_type == "valid":
        return fn(x, kernel_size=tuple(int(k) for k in kernel_sizes), stride=tuple(int(s) for s in strides), ceil_mode=bool(ceil_mode))
    padded = _spatial_pad(x, pad_type, pad, [int(k) for k in kernel_sizes], strides, None)
    summed = fn(padded, kernel_size=tuple(int(k) for k in kernel_sizes), stride=tuple(int(s) for s in strides), ceil_mode=bool(ceil_mode))
    if not exclude_padding_from_average:
        return summed
    ones = _spatial_pad(torch.ones_like(x[:, :1]), pad_type, pad, [int(k) for k in kernel_sizes], strides, None)
    frac = fn(ones, kernel_size=tuple(int(k) for k in kernel_sizes), stride=tuple(int(s) for s in strides), ceil_mode=bool(ceil_mode))
    return summed / frac


@kernel("upsample_nearest_neighbor")
def _upsample_nn(x, scale_factor_height=1, scale_factor_width=1, **_):
    return F.interpolate(x, scale_factor=(float(scale_factor_height), float(scale_factor_width)), mode="nearest")


@kernel("upsample_bilinear")
def _upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=True, half_pixel_centers=None, **_):
    align = bool(align_corners)
    half_pixel = (not align) if half_pixel_centers is None else bool(half_pixel_centers)
    if not align and not half_pixel:
        raise VerificationError("MIL interpreter: upsample_bilinear without aligned corners or half-pixel centers "
                                "(TF1 'asymmetric' sampling) is not implemented", fix="report it with the model")
    size = (int(round(x.shape[2] * float(scale_factor_height))), int(round(x.shape[3] * float(scale_factor_width))))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align)


@kernel("resize_bilinear")
def _resize_bilinear(x, target_size_height=1, target_size_width=1, sampling_mode="DEFAULT", **_):
    size = (int(target_size_height), int(target_size_width))
    if sampling_mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    if sampling_mode in ("DEFAULT", "OFFSET_CORNERS"):
        raise VerificationError(f"MIL interpreter: resize_bilinear sampling_mode {sampling_mode} is not implemented",
                                fix="export the model with align_corners=False bilinear upsampling")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # UNALIGN_CORNERS


@kernel("pixel_shuffle")
def _pixel_shuffle(x, upscale_factor, **_):
    return F.pixel_shuffle(x, int(upscale_factor))


@kernel("pixel_unshuffle")
def _pixel_unshuffle(x, downscale_factor, **_):
    return F.pixel_unshuffle(x, int(downscale_factor))


# ----------------------------------------------------------------------------------- shape

@kernel("reshape")
def _reshape(x, shape, **_):
    return x.reshape([int(s) for s in np.asarray(shape).reshape(-1)])


@kernel("transpose")
def _transpose(x, perm, **_):
    return x.permute([int(p) for p in perm])


@kernel("squeeze")
def _squeeze(x, axes=None, **_):
    if axes is None:
        return x.squeeze()
    for a in sorted((int(a) % x.dim() for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


@kernel("expand_dims")
def _expand_dims(x, axes, **_):
    rank = x.dim() + len(axes)
    for a in sorted(int(a) % rank for a in axes):
        x = x.unsqueeze(a)
    return x


@kernel("concat")
def _concat(values, axis, interleave=False, **_):
    if interleave:
        raise VerificationError("MIL interpreter: concat with interleave=True is not implemented", fix="report it with the model")
    dtype = next((v.dtype for v in values if torch.is_tensor(v)), torch.float32)
    return torch.cat([torch.as_tensor(v, dtype=dtype) for v in values], dim=int(axis))


@kernel("stack")
def _stack(values, axis, **_):
    dtype = next((v.dtype for v in values if torch.is_tensor(v)), torch.float32)
    return torch.stack([torch.as_tensor(v, dtype=dtype) for v in values], dim=int(axis))


@kernel("split")
def _split(x, axis, num_splits=None, split_sizes=None, **_):
    if split_sizes is not None:
        return tuple(torch.split(x, [int(s) for s in split_sizes], dim=int(axis)))
    return tuple(torch.chunk(x, int(num_splits), dim=int(axis)))


@kernel("slice_by_index")
def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None, **_):
    sl = []
    for i in range(x.dim()):
        b = None if begin_mask is not None and begin_mask[i] else int(begin[i])
        e = None if end_mask is not None and end_mask[i] else int(end[i])
        s = 1 if stride is None else int(stride[i])
        if squeeze_mask is not None and squeeze_mask[i]:
            sl.append(int(begin[i]))
            continue
        if s < 0:
            raise VerificationError("MIL interpreter: negative slice strides are not implemented", fix="report it with the model")
        sl.append(slice(b, e, s))
    return x[tuple(sl)]


@kernel("slice_by_size")
def _slice_by_size(x, begin, size, **_):
    sl = []
    for i in range(x.dim()):
        b, n = int(begin[i]), int(size[i])
        sl.append(slice(b, None if n == -1 else b + n))
    return x[tuple(sl)]


@kernel("gather")
def _gather(x, indices, axis=0, **_):
    idx = torch.as_tensor(indices).long()
    idx = torch.where(idx < 0, idx + x.shape[int(axis)], idx)
    return torch.index_select(x, int(axis), idx.reshape(-1)).reshape(*x.shape[:int(axis) % x.dim()], *idx.shape, *x.shape[int(axis) % x.dim() + 1:])


@kernel("gather_along_axis")
def _gather_along_axis(x, indices, axis=0, **_):
    idx = torch.as_tensor(indices).long()
    idx = torch.where(idx < 0, idx + x.shape[int(axis)], idx)
    return torch.gather(x, int(axis), idx)


@kernel("topk")
def _topk(x, k=1, axis=-1, ascending=False, sort=True, return_indices=True, output_indices_dtype="int32", **_):
    """The k largest (smallest with ``ascending``) along ``axis``, sorted; on ties the first index wins."""
    order = torch.sort(x, dim=int(axis), descending=not bool(ascending), stable=True).indices
    idx = order.narrow(int(axis), 0, int(k))
    return torch.gather(x, int(axis), idx), idx.to(torch.int32)


@kernel("tile")
def _tile(x, reps, **_):
    return x.repeat([int(r) for r in reps])


@kernel("pad")
def _pad(x, pad, mode="constant", constant_val=0.0, **_):
    pads = [int(p) for p in np.asarray(pad).reshape(-1)]
    n = len(pads) // 2
    torch_pads = []
    for i in reversed(range(n)):
        torch_pads += [pads[2 * i], pads[2 * i + 1]]
    if mode == "constant":
        return F.pad(x, torch_pads, value=float(constant_val))
    return F.pad(x, torch_pads, mode={"reflect": "reflect", "replicate": "replicate"}[mode])


@kernel("shape")
def _shape(x, **_):
    return torch.tensor(list(x.shape), dtype=torch.int32)


@kernel("fill")
def _fill(shape, value=0.0, **_):
    return torch.full([int(s) for s in np.asarray(shape).reshape(-1)], float(value))


def _per_axis(v, x, axis):
    """A scale / zero point: scalar, or one value per index of ``axis``."""
    v = torch.as_tensor(v, dtype=torch.float32)
    if v.dim() == 0 or axis is None:
        return v
    shape = [1] * x.dim()
    shape[int(axis) % x.dim()] = -1
    return v.reshape(shape)


@kernel("quantize")
def _quantize(input, scale, zero_point=None, axis=None, output_dtype="int8", **_):
    """Activation quantization (iOS17): round(x / scale + zero point), saturated to the integer type."""
    lo, hi = {"int8": (-128, 127), "uint8": (0, 255)}[str(output_dtype)]
    zp = 0.0 if zero_point is None else _per_axis(zero_point, input, axis)
    return torch.clamp(torch.round(input / _per_axis(scale, input, axis) + zp), lo, hi)


@kernel("dequantize")
def _dequantize(input, scale, zero_point=None, axis=None, **_):
    zp = 0.0 if zero_point is None else _per_axis(zero_point, input, axis)
    return (input.to(torch.float32) - zp) * _per_axis(scale, input, axis)


@kernel("classify")
def _classify(probabilities, classes, **_):
    """The classifier head: the label of the most probable class and the probabilities themselves."""
    return int(torch.argmax(probabilities.reshape(-1))), probabilities


# ----------------------------------------------------------------------------------- the program

_TORCH_DTYPE = {"fp16": torch.float16, "fp32": torch.float32, "fp64": torch.float64, "int32": torch.int32, "int64": torch.int64,
                "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16, "bool": torch.bool}


def _dtype_name(var) -> str | None:
    from coremltools.converters.mil.mil import types

    dt = var.dtype
    if dt is None:
        return None
    try:
        return types.builtin_to_string(dt)
    except Exception:  # a list or dict type: no rounding
        return None


def _as_declared(value, var):
    """Store a computed tensor the way the program declares it: fp16 outputs are rounded to fp16."""
    if not torch.is_tensor(value):
        return value
    name = _dtype_name(var)
    if name == "fp16":
        return value.to(torch.float16).to(torch.float32)
    if name in ("fp32", "fp64"):
        return value.to(torch.float32)
    if name in _TORCH_DTYPE:
        return value.to(_TORCH_DTYPE[name])
    return value


class MILProgram:
    """A saved Core ML ML program, ready to run op by op."""

    def __init__(self, path: Path):
        from toolkit.backends.coreml.proto import coremltools

        ct = coremltools()  # without TensorFlow
        from coremltools.converters.mil.frontend.milproto.load import load_mil_proto

        from toolkit.backends.coreml.convert import package_copy

        path = Path(path)
        if not (path / "Manifest.json").is_file():
            raise VerificationError(f"{path} is not an .mlpackage (no Manifest.json)", fix="pass the .mlpackage folder")
        with package_copy(path) as copy:  # loading must not touch the bundle's own files
            self.spec = ct.utils.load_spec(str(copy))
            if self.spec.WhichOneof("Type") != "mlProgram":
                raise VerificationError(f"{path} is a neural-network model, not an ML program", fix="export with convert_to='mlprogram'")
            weights = copy / "Data" / "com.apple.CoreML" / "weights"
            prog = load_mil_proto(self.spec.mlProgram, self.spec.specificationVersion, str(weights))
            self.function = prog.functions["main"]
            self.ops = list(self.function.operations)
            self._constants = self._materialize()
        unknown = sorted({op.op_type for op in self.ops if not self._is_constant(op) and op.op_type not in KERNELS})
        if unknown:
            raise VerificationError(f"MIL interpreter: {path.name} uses ops it does not implement: {', '.join(unknown)}",
                                    fix="run verification on macOS (MLModel.predict), or add the ops to toolkit/backends/coreml/mil.py")
        self.input_names = list(self.function.inputs)
        self.output_names = [v.name for v in self.function.outputs]

    @staticmethod
    def _is_constant(op) -> bool:
        return op.op_type == "const" or op.op_type.startswith("constexpr_")

    def _materialize(self) -> dict[object, object]:
        """Constant values, decompressed once: const data, and each constexpr op's dense result as its
        op definition computes it (coremltools' reference decompression)."""
        values: dict[object, object] = {}  # keyed by Var: loaded programs may repeat a const's name
        for op in self.ops:
            if op.op_type == "const":
                values[op.outputs[0]] = op.outputs[0].val
            elif op.op_type.startswith("constexpr_"):
                dense = op.materialized_val_inference()
                dense = dense if isinstance(dense, tuple) else (dense,)
                for var, val in zip(op.outputs, dense):
                    values[var] = val
        # float16 constants are exact in float32, the dtype every kernel computes in.
        return {k: (torch.from_numpy(np.array(v, dtype=np.float32)) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
                for k, v in values.items()}

    def _value(self, var, env: dict):
        if var in env:
            return env[var]
        if var in self._constants:
            v = self._constants[var]
        elif var.val is not None:
            v = var.val
        else:
            raise VerificationError(f"MIL interpreter: no value for {var.name!r}", fix="the program is malformed")
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.array(v, dtype=np.float32 if v.dtype.kind == "f" else v.dtype))
        elif isinstance(v, (np.generic,)):
            v = v.item()
        return v

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, object]:
        env: dict[object, object] = {}  # Var -> value
        for name, var in self.function.inputs.items():
            if name not in feeds:
                raise VerificationError(f"MIL interpreter: input {name!r} not given", fix=f"feed {self.input_names}")
            env[var] = _as_declared(torch.as_tensor(np.asarray(feeds[name], dtype=np.float32)), var)
        with torch.inference_mode():
            for op in self.ops:
                if self._is_constant(op):
                    continue
                args = {}
                for key, var in op.inputs.items():
                    args[key] = tuple(self._value(v, env) for v in var) if isinstance(var, (list, tuple)) else self._value(var, env)
                try:
                    result = KERNELS[op.op_type](**args)
                except VerificationError:
                    raise
                except Exception as exc:
                    raise VerificationError(f"MIL interpreter: op {op.op_type} ({op.name}) failed: {exc}",
                                            fix="report it with the model; verify on macOS meanwhile") from exc
                results = result if isinstance(result, tuple) and len(op.outputs) > 1 or op.op_type == "classify" else (result,)
                for var, val in zip(op.outputs, results):
                    env[var] = _as_declared(val, var)
        return {v.name: env[v] for v in self.function.outputs}

    def probabilities_var(self) -> str | None:
        """For a classifier, the tensor the classify op reads (the class probabilities)."""
        for op in self.ops:
            if op.op_type == "classify":
                return op.inputs["probabilities"].name
        return None
