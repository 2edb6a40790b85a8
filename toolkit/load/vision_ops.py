"""torchvision's C++ operators in plain torch, for when its extension does not load.

The only torchvision built for torch 2.13 is a CUDA build whose ``_C`` library needs CUDA's libraries, so with
the CPU torch ``import torchvision`` fails (``operator torchvision::nms does not exist``). ``register`` defines
the ``torchvision::`` operators with ``torch.library`` and gives the ones detection models run — ``nms``,
``roi_align``, ``roi_pool`` and their backwards — CPU kernels written here, with the C++ kernels' semantics
(bilinear sampling grid, ``aligned``, adaptive ``sampling_ratio``, ``round`` half away from zero, first maximum
wins). The others are defined so that torchvision's Python imports, and fail by name when called.

The kernels are vectorized over RoIs: RoIs are grouped by image and sampling-grid (or pooling-window) size and
processed in chunks that bound the sampled tensor, so the only Python loops run over groups and chunks (and, in
NMS, over the boxes kept). RoIAlign samples with ``grid_sample`` (on 2 cores: 1000 RoIs of 256 channels, 7x7
bins of 2x2 samples, about 0.6 s); its backward and RoIPool gather explicitly.
"""

from __future__ import annotations

import torch
from torch import Tensor

FLT_MAX = 3.4028234663852886e38  # the C++ RoIPool kernel starts every bin's maximum at -FLT_MAX, for any dtype
CHUNK_ELEMENTS = 1 << 24  # bound on one chunk's gathered samples (RoIs x bins x samples x channels)

SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align": "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
                 "int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward": "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
                           "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
                           "int sampling_ratio, bool aligned) -> Tensor",
    "roi_pool": "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
                "-> (Tensor, Tensor)",
    "_roi_pool_backward": "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
                          "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
                          "SymInt height, SymInt width) -> Tensor",
    # Defined so torchvision's meta, autograd and autocast registrations find them; no plain-torch kernel.
    "ps_roi_align": "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
                    "SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward": "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
                              "float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
                              "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool": "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
                   "SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward": "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, "
                             "float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
                             "SymInt channels, SymInt height, SymInt width) -> Tensor",
    "qroi_align": "qroi_align(Tensor input, Tensor rois, float input_scale, int input_zero_point, float rois_scale, "
                  "int rois_zero_point, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
                  "int sampling_ratio, bool aligned) -> Tensor",
    "deform_conv2d": "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
                     "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
                     "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward": "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
                               "Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, "
                               "SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, "
                               "SymInt offset_groups, bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "box_iou_rotated": "box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor",
    "_cuda_version": "_cuda_version() -> int",
}


def _check_rois(input: Tensor, rois: Tensor) -> None:
    torch._check(input.dim() == 4, lambda: f"input must be a 4d (N, C, H, W) tensor, got {input.dim()}D")
    torch._check(rois.dim() == 2 and rois.size(1) == 5, lambda: f"rois must have shape (K, 5), got {tuple(rois.shape)}")
    torch._check(input.dtype == rois.dtype, lambda: f"input ({input.dtype}) and rois ({rois.dtype}) must have the same dtype")


def nms(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, highest score first: a box is dropped when
    its IoU with a kept, higher-scoring box is above ``iou_threshold``."""
    torch._check(dets.dim() == 2 and dets.size(1) == 4, lambda: f"boxes should be a (N, 4) tensor, got {tuple(dets.shape)}")
    torch._check(scores.dim() == 1 and scores.size(0) == dets.size(0),
                 lambda: f"scores should be a 1d tensor of {dets.size(0)} elements, got {tuple(scores.shape)}")
    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=dets.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    x1, y1, x2, y2 = dets[order].unbind(1)
    area = (x2 - x1) * (y2 - y1)
    alive = torch.ones(order.numel(), dtype=torch.bool, device=dets.device)
    kept = []
    i = 0
    while True:  # one pass per kept box, each vectorized over the boxes after it
        kept.append(i)
        alive[i] = False
        w = (torch.minimum(x2[i], x2[i + 1:]) - torch.maximum(x1[i], x1[i + 1:])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[i + 1:]) - torch.maximum(y1[i], y1[i + 1:])).clamp(min=0)
        inter = w * h
        iou = inter / (area[i] + area[i + 1:] - inter)
        alive[i + 1:] &= ~(iou.double() > iou_threshold)  # the C++ kernel compares in double; NaN IoU keeps the box
        if not bool(alive.any()):
            break
        i = int(alive.to(torch.uint8).argmax())
    return order[torch.tensor(kept, dtype=torch.long, device=dets.device)]


def qnms(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """NMS of quantized boxes, given as their integer representations (as ``torchvision.ops.nms`` passes them)."""
    return nms(dets.double(), scores.double(), iou_threshold)


def _groups(keys: Tensor):
    """(key, member indices) for each distinct row of ``keys`` (K, n)."""
    values, inverse = torch.unique(keys, dim=0, return_inverse=True)
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse, minlength=values.size(0)).tolist()
    return zip(values.tolist(), torch.split(order, counts), strict=True)


def _chunks(members: Tensor, per_roi: int):
    step = max(1, CHUNK_ELEMENTS // max(per_roi, 1))
    return torch.split(members, step)


def _roi_align_grids(rois: Tensor, spatial_scale: float, pooled_height: int, pooled_width: int, sampling_ratio: int,
                     aligned: bool, per_sample: int):
    """The sampling points of RoIAlign, as the C++ kernel places them: for each chunk of RoIs on one image sharing
    a grid of (gh, gw) samples per bin, (RoI indices, image, gh, gw, y (k, PH, gh), x (k, PW, gw))."""
    if rois.size(0) == 0:
        return
    offset = 0.5 if aligned else 0.0
    batch = rois[:, 0].long()
    x0, y0, x1, y1 = (rois[:, 1:] * spatial_scale - offset).unbind(1)
    roi_w, roi_h = x1 - x0, y1 - y0
    if not aligned:  # legacy: malformed RoIs are forced to 1x1
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / pooled_height, roi_w / pooled_width
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(batch, sampling_ratio)
    else:
        grid_h, grid_w = torch.ceil(bin_h).long(), torch.ceil(bin_w).long()
    grid_h, grid_w = grid_h.clamp(min=0), grid_w.clamp(min=0)  # a negative grid samples nothing

    def points(start, bin_size, grid, pooled):
        p = torch.arange(pooled, device=start.device).to(start.dtype)
        i = torch.arange(grid, device=start.device).to(start.dtype) + 0.5
        return start[:, None, None] + p[None, :, None] * bin_size[:, None, None] + (i * bin_size[:, None, None]) / grid

    for (image, gh, gw), members in _groups(torch.stack([batch, grid_h, grid_w], dim=1)):
        if gh == 0 or gw == 0:
            continue  # no samples: the output stays 0
        for chunk in _chunks(members, pooled_height * pooled_width * gh * gw * per_sample):
            yield (chunk, image, gh, gw, points(y0[chunk], bin_h[chunk], gh, pooled_height),
                   points(x0[chunk], bin_w[chunk], gw, pooled_width))


def _inside(c: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Whether each sample counts (within [-1, size]; False for NaN, as the kernel's !(in range)), and its
    coordinate clamped to the map as the kernel clamps it (0 where it does not count)."""
    inside = (c >= -1.0) & (c <= size)
    return inside, torch.where(inside, c, 0).clamp(0, size - 1)


def roi_align(input: Tensor, rois: Tensor, spatial_scale: float, pooled_height: int, pooled_width: int,
              sampling_ratio: int, aligned: bool) -> Tensor:
    """RoIAlign (Mask R-CNN): each of (PH, PW) bins of each RoI ``(batch, x1, y1, x2, y2)`` is the mean of a
    grid of bilinear samples; (K, 5) RoIs on (N, C, H, W) features give (K, C, PH, PW).

    The samples are taken with ``grid_sample`` at the kernel's clamped coordinates (for which the kernel's
    interpolation is plain bilinear; a sample the kernel skips is moved off the map, where zero padding gives 0)
    and averaged per bin with ``avg_pool2d``."""
    import torch.nn.functional as F

    _check_rois(input, rois)
    n, c, h, w = input.shape
    out = input.new_zeros((rois.size(0), c, pooled_height, pooled_width))
    if out.numel() == 0:
        return out

    def normalized(coords, size):  # align_corners=False: -1 and 1 are the outer edges of the first and last pixels
        inside, coords = _inside(coords.reshape(coords.size(0), -1), size)
        return torch.where(inside, (2.0 * coords + 1.0) / size - 1.0, -3.0)  # -3: both taps off the map

    for chunk, image, gh, gw, ys, xs in _roi_align_grids(rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
                                                         aligned, c):
        k = chunk.numel()
        y, x = normalized(ys, h), normalized(xs, w)
        grid = torch.stack(torch.broadcast_tensors(x[:, None, :], y[:, :, None]), dim=-1)  # (k, PH*gh, PW*gw, 2)
        samples = F.grid_sample(input[image:image + 1].expand(k, c, h, w), grid, mode="bilinear", padding_mode="zeros",
                                align_corners=False)
        out[chunk] = F.avg_pool2d(samples, (gh, gw))
    return out


def _taps(c: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The two bilinear taps of each sample along one axis, as the C++ kernel's pre-calculation: indices and
    weights (..., 2), weight 0 for a sample that does not count."""
    inside, c = _inside(c, size)
    low = c.long()
    high = torch.where(low >= size - 1, size - 1, low + 1)
    frac = c - low
    return torch.stack([low, high], dim=-1), torch.stack([1.0 - frac, frac], dim=-1) * inside[..., None]


def roi_align_backward(grad: Tensor, rois: Tensor, spatial_scale: float, pooled_height: int, pooled_width: int,
                       batch_size: int, channels: int, height: int, width: int, sampling_ratio: int, aligned: bool) -> Tensor:
    """The gradient of ``roi_align`` with respect to its input: each sample's bilinear weights scatter its bin's
    gradient, divided by the bin's sample count."""
    grad_flat = grad.new_zeros((batch_size * height * width, channels))
    g = grad.permute(0, 2, 3, 1)  # (K, PH, PW, C)
    for chunk, image, gh, gw, ys, xs in _roi_align_grids(rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
                                                         aligned, 4 * channels):
        k = chunk.numel()
        rows, wy = _taps(ys, height)  # (k, PH, gh, 2)
        cols, wx = _taps(xs, width)  # (k, PW, gw, 2)
        index = (image * height + rows[:, :, None, :, :, None, None]) * width + cols[:, None, :, None, None, :, :]
        weight = (wy[:, :, None, :, :, None, None] * wx[:, None, :, None, None, :, :]).reshape(k, pooled_height, pooled_width, -1)
        contrib = g[chunk][:, :, :, None, :] * (weight / (gh * gw))[..., None]
        grad_flat.index_add_(0, index.reshape(-1), contrib.reshape(-1, channels))
    return grad_flat.view(batch_size, height, width, channels).permute(0, 3, 1, 2).contiguous()


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` rounds them to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def roi_pool(input: Tensor, rois: Tensor, spatial_scale: float, pooled_height: int, pooled_width: int) -> tuple[Tensor, Tensor]:
    """RoIPool (Fast R-CNN): the maximum of each of (PH, PW) integer windows of each RoI, and where it is
    (``h * W + w``, the first in row-major order; -1 for an empty window, whose output is 0)."""
    _check_rois(input, rois)
    n, c, h, w = input.shape
    k_all = rois.size(0)
    out = input.new_zeros((k_all, pooled_height, pooled_width, c))
    argmax = torch.full((k_all, pooled_height, pooled_width, c), -1, dtype=torch.int32, device=input.device)
    if out.numel() == 0:
        return out.permute(0, 3, 1, 2), argmax.permute(0, 3, 1, 2)
    flat = input.permute(0, 2, 3, 1).reshape(n * h * w, c)
    batch = rois[:, 0].long()
    x0, y0, x1, y1 = _round_half_away(rois[:, 1:] * spatial_scale).long().unbind(1)
    roi_w, roi_h = (x1 - x0 + 1).clamp(min=1), (y1 - y0 + 1).clamp(min=1)  # malformed RoIs are forced to 1x1

    def windows(start, roi_size, pooled, size):
        bin_size = roi_size.to(input.dtype) / pooled
        p = torch.arange(pooled, device=input.device).to(input.dtype)
        lo = torch.floor(p[None] * bin_size[:, None]).long() + start[:, None]
        hi = torch.ceil((p[None] + 1) * bin_size[:, None]).long() + start[:, None]
        return lo.clamp(0, size), hi.clamp(0, size)

    hs, he = windows(y0, roi_h, pooled_height, h)  # (K, PH)
    ws, we = windows(x0, roi_w, pooled_width, w)  # (K, PW)
    span_h, span_w = (he - hs).clamp(min=0).amax(dim=1), (we - ws).clamp(min=0).amax(dim=1)
    for (gh, gw), members in _groups(torch.stack([span_h, span_w], dim=1)):
        if gh == 0 or gw == 0:
            continue  # every window empty
        for chunk in _chunks(members, pooled_height * pooled_width * gh * gw * c):
            k = chunk.numel()
            rows = hs[chunk][:, :, None] + torch.arange(gh, device=input.device)  # (k, PH, gh)
            cols = ws[chunk][:, :, None] + torch.arange(gw, device=input.device)  # (k, PW, gw)
            row_in, col_in = rows < he[chunk][:, :, None], cols < we[chunk][:, :, None]
            rows, cols = torch.where(row_in, rows, 0), torch.where(col_in, cols, 0)
            pos = (rows[:, :, None, :, None] * w + cols[:, None, :, None, :]).reshape(k, pooled_height, pooled_width, -1)
            inside = (row_in[:, :, None, :, None] & col_in[:, None, :, None, :]).reshape(k, pooled_height, pooled_width, -1)
            values = flat[batch[chunk].view(k, 1, 1, 1) * (h * w) + pos]  # (k, PH, PW, samples, C)
            # The kernel keeps the first value strictly above the running maximum, from -FLT_MAX: NaN never wins.
            values = torch.where(inside[..., None] & ~values.isnan(), values, float("-inf"))
            best, where = values.max(dim=3)
            found = best > -FLT_MAX
            empty = ~inside.any(dim=3, keepdim=True)
            out[chunk] = torch.where(empty, 0.0, torch.where(found, best, -FLT_MAX)).to(input.dtype)
            at = pos.gather(3, where)  # (k, PH, PW, C): window sample -> h * W + w
            argmax[chunk] = torch.where(found & ~empty, at, -1).to(torch.int32)
    return out.permute(0, 3, 1, 2).contiguous(), argmax.permute(0, 3, 1, 2).contiguous()


def roi_pool_backward(grad: Tensor, rois: Tensor, argmax: Tensor, spatial_scale: float, pooled_height: int,
                      pooled_width: int, batch_size: int, channels: int, height: int, width: int) -> Tensor:
    """The gradient of ``roi_pool``: each bin's gradient goes to the input element that was its maximum."""
    grad_input = grad.new_zeros(batch_size * channels * height * width)
    picked = argmax >= 0
    batch = rois[:, 0].long().view(-1, 1, 1, 1)
    channel = torch.arange(channels, device=grad.device).view(1, -1, 1, 1)
    index = (batch * channels + channel) * (height * width) + argmax.long()
    grad_input.index_add_(0, index[picked], grad[picked])
    return grad_input.view(batch_size, channels, height, width)


def _unsupported(name: str):
    def kernel(*args, **kwargs):
        raise NotImplementedError(f"torchvision::{name} has no plain-torch fallback in skinkit (torchvision's C++ "
                                  f"extension did not load; skinkit provides nms, roi_align and roi_pool)")

    return kernel


KERNELS = {"nms": nms, "qnms": qnms, "roi_align": roi_align, "_roi_align_backward": roi_align_backward,
           "roi_pool": roi_pool, "_roi_pool_backward": roi_pool_backward}


def _fake_nms(dets, scores, iou_threshold):
    torch._check(dets.dim() == 2 and dets.size(1) == 4, lambda: f"boxes should be a (N, 4) tensor, got {tuple(dets.shape)}")
    torch._check(scores.dim() == 1 and scores.size(0) == dets.size(0), lambda: "scores should be 1d, one per box")
    kept = torch.library.get_ctx().new_dynamic_size()
    return dets.new_empty(kept, dtype=torch.long)


def _fake_roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    _check_rois(input, rois)
    return input.new_empty((rois.size(0), input.size(1), pooled_height, pooled_width))


def _fake_roi_pool(input, rois, spatial_scale, pooled_height, pooled_width):
    _check_rois(input, rois)
    shape = (rois.size(0), input.size(1), pooled_height, pooled_width)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int32)


FAKES = {
    "nms": _fake_nms,
    "qnms": _fake_nms,
    "roi_align": _fake_roi_align,
    "_roi_align_backward": lambda grad, rois, s, ph, pw, n, c, h, w, sr, al: grad.new_empty((n, c, h, w)),
    "roi_pool": _fake_roi_pool,
    "_roi_pool_backward": lambda grad, rois, argmax, s, ph, pw, n, c, h, w: grad.new_empty((n, c, h, w)),
}

_LIBRARY: list = []  # the torch.library.Library holding the registrations; they last as long as it does
_WITH_FAKES: list = []


def defined() -> bool:
    """Whether ``torchvision::nms`` exists in this process (torchvision's own or these)."""
    return bool(_LIBRARY) or hasattr(torch.ops.torchvision, "nms")


def registered() -> bool:
    """Whether this module's kernels are the ``torchvision::`` operators in this process."""
    return bool(_LIBRARY)


def register(*, fakes: bool = True) -> bool:
    """Define the ``torchvision::`` operators with these kernels (idempotent). With ``fakes``, also their fake
    kernels, so ``torch.export`` traces them without torchvision (whose ``_meta_registrations`` gives its own
    when it imports). False, registering nothing, when torchvision's own operators are loaded."""
    if not _LIBRARY:
        if defined():
            return False
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for schema in SCHEMAS.values():
            lib.define(schema)
        for name in SCHEMAS:
            if name != "_cuda_version":
                lib.impl(name, KERNELS.get(name) or _unsupported(name), "CPU")
        lib.impl("_cuda_version", lambda: -1, "CompositeExplicitAutograd")
        _LIBRARY.append(lib)
    if fakes and not _WITH_FAKES:
        register_fakes(FAKES)
        _WITH_FAKES.append(True)
    return True


def register_fakes(names) -> None:
    """(Re-)register these fake kernels over whatever is registered. torchvision 0.28's own fake ``nms`` declares
    at least 2 kept boxes (``create_unbacked_symint``'s default), so an exported program that keeps fewer fails
    its runtime assertion; ``toolkit.load.torchvision_support`` puts these back after torchvision imports."""
    for name in names:
        torch.library.register_fake(f"torchvision::{name}", FAKES[name], lib=_LIBRARY[0])
