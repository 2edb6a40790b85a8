"""Glue: the small, documented set of operations that connect the models of an assessment chain.

The host (verification, ``skinkit run``) runs each op in NumPy exactly as an app must; an op that is tensor
arithmetic also has a torch form, so a chain made only of those can be fused into one graph. The NumPy form
is the definition; the torch form is tested equal to it.

Values travel batch-first, float32 unless said otherwise, in these kinds (shapes per image, without N):

- ``image``  H x W x 3, RGB pixels 0–255 (what the artifacts take)
- ``scores`` C x H x W dense class scores, or C per image (logits or probabilities); ``classes`` names them
- ``labels`` H x W (or scalar) int32 class indices; ``classes`` names them
- ``mask``   H x W, 0.0 or 1.0
- ``vector`` K per image (``names`` each entry), in the unit the op states
- ``map``    any other dense output a model makes (C x H x W): shown, passed on, never interpreted

The ops (``OPS``; each one's exact definition is its ``doc``, and the manifest's ``chain.glue_ops`` carries the
table for apps): resize, softmax, argmax, class_mask, threshold, apply_mask, coverage, region_stats, to_image (all
fusable: tensor arithmetic), and crop_to_mask, count_regions and paste_instances (data-dependent: host glue only).
``paste_masks`` is how an app puts an instance segmenter's per-detection masks back on the picture;
paste_instances makes a label map of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.errors import BadInputError

if TYPE_CHECKING:
    import torch

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luminance weights of R, G, B


@dataclass(frozen=True)
class Value:
    """What a link carries: its kind, its per-image shape, and the names of its classes or entries."""

    kind: str  # image | scores | labels | mask | vector | map
    shape: tuple[int, ...]
    names: tuple[str, ...] = ()  # class names (scores, labels) or entry names (vector)
    unit: str = ""

    @property
    def hw(self) -> tuple[int, int] | None:
        """Height and width of a dense value."""
        if self.kind == "image":
            return self.shape[0], self.shape[1]
        if self.kind in ("mask", "labels") and len(self.shape) == 2:
            return self.shape
        if self.kind in ("scores", "map") and len(self.shape) == 3:
            return self.shape[1], self.shape[2]
        return None

    @property
    def drawable(self) -> bool:
        """A mask, label map or dense class scores: what an overlay can draw on the photo."""
        return self.kind in ("mask", "labels") or (self.kind == "scores" and len(self.shape) == 3)

    def describe(self) -> dict:
        return {"kind": self.kind, "shape": list(self.shape), "dtype": "int32" if self.kind == "labels" else "float32",
                **({"names": list(self.names)} if self.names else {}), **({"unit": self.unit} if self.unit else {})}


class GlueError(BadInputError):
    """A chain link that does not connect (kinds, shapes) or an op given bad parameters."""


@dataclass(frozen=True)
class Op:
    name: str
    inputs: tuple[str, ...]  # port names; a port ending in '?' is optional
    kinds: dict[str, tuple[str, ...]]  # port -> kinds it takes
    params: dict[str, Any]  # name -> default (``...``: required)
    makes: Callable[[dict[str, Value], dict], dict[str, Value]]  # input values, params -> output values ('' for one)
    numpy: Callable[..., dict[str, np.ndarray]]
    torch: Callable[..., dict[str, torch.Tensor]] | None = None  # None: host glue, not fusable
    doc: str = ""
    outputs: tuple[str, ...] = ("",)  # '' : the op's one output, referred to by the step id
    units: dict[str, str] = field(default_factory=dict)

    @property
    def fusable(self) -> bool:
        return self.torch is not None

    def ports(self) -> list[tuple[str, bool]]:
        return [(p.rstrip("?"), p.endswith("?")) for p in self.inputs]


# --- helpers --------------------------------------------------------------------------------------------
def _size(params: dict) -> tuple[int, int]:
    size = params["size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or not all(isinstance(v, int) and 1 <= v <= 8192 for v in size):
        raise GlueError(f"size must be [height, width] in pixels (1–8192), got {params['size']!r}", fix="write size: [224, 224]")
    return size


def _class_index(value: Value, cls, where: str) -> int:
    if isinstance(cls, bool) or not isinstance(cls, (int, str)):
        raise GlueError(f"{where}: class must be a class name or index, got {cls!r}", fix="write class: skin (or its index)")
    if isinstance(cls, str):
        if cls not in value.names:
            raise GlueError(f"{where}: no class {cls!r} in {', '.join(value.names) or '(unnamed classes)'}",
                            fix="name one of the classes of the value it reads")
        return value.names.index(cls)
    n = len(value.names) if value.names else None
    if cls < 0 or (n is not None and cls >= n):
        raise GlueError(f"{where}: class index {cls} out of range (0–{(n or 1) - 1})", fix="use an index of an existing class")
    return cls


def _classes(value: Value, params: dict, where: str) -> list[int]:
    chosen = params.get("classes")
    if chosen is None:
        n = len(value.names)
        if n < 2:
            raise GlueError(f"{where}: the labels it reads name no classes", fix="list them in classes: [...]")
        return list(range(1, n))
    return [_class_index(value, c, where) for c in chosen]


def nearest_indices(src: tuple[int, int], dst: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Source rows and columns of a nearest resize: floor((i + 0.5) · in / out), the pixel whose area holds the
    output pixel's centre (the same on every platform; cv2's INTER_NEAREST takes floor(i · in / out))."""
    (ih, iw), (h, w) = src, dst
    rows = np.minimum(((np.arange(h) + 0.5) * ih / h).astype(np.int64), ih - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * iw / w).astype(np.int64), iw - 1)
    return rows, cols


def _resize_np(x: np.ndarray, size: tuple[int, int], nearest: bool, channel_first: bool) -> np.ndarray:
    import cv2

    h, w = size
    if nearest:
        rows, cols = nearest_indices((x.shape[1], x.shape[2]), size)
        return np.ascontiguousarray(x[:, rows][:, :, cols])
    x = x.astype(np.float32)
    if channel_first:  # N x C x H x W
        return np.stack([np.stack([cv2.resize(ch, (w, h), interpolation=cv2.INTER_LINEAR) for ch in img]) for img in x])
    return np.stack([cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1) for img in x])


def _resize_torch(x, size, nearest: bool, channel_first: bool):
    import torch
    from torch.nn import functional as F

    h, w = size
    if nearest:
        # Sizes are static: int() keeps them constants when a converter traces the graph (torch.jit.trace).
        rows, cols = nearest_indices((int(x.shape[1]), int(x.shape[2])), size)
        return x.index_select(1, torch.from_numpy(rows)).index_select(2, torch.from_numpy(cols))
    y = x if channel_first else x.permute(0, 3, 1, 2)
    y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    return y if channel_first else y.permute(0, 2, 3, 1)


def _luma_np(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array(LUMA)


def _within_np(inputs: dict, labels: np.ndarray) -> np.ndarray:
    within = inputs.get("within")
    return np.ones(labels.shape, np.float64) if within is None else within.astype(np.float64)


def _same_hw(values: dict[str, Value], where: str) -> None:
    sizes = {port: v.hw for port, v in values.items() if v is not None}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{p} {list(s) if s else '(not dense)'}" for p, s in sizes.items())
        raise GlueError(f"{where}: its inputs differ in size ({shown})", fix="resize one to the other's size first")


# --- the ops --------------------------------------------------------------------------------------------
def _resize_makes(v, p):
    h, w = _size(p)
    x = v["x"]
    shape = {"image": (h, w, 3), "mask": (h, w), "labels": (h, w)}.get(x.kind, (x.shape[0], h, w))
    if x.hw is None:
        raise GlueError(f"resize takes a picture, mask, label map or dense scores, not a {x.kind} of shape {list(x.shape)}",
                        fix="resize a dense value")
    return {"": Value(x.kind, shape, x.names)}


def _resize_np_op(inputs, params, kinds):
    k = kinds["x"]
    return {"": _resize_np(inputs["x"], _size(params), k in ("mask", "labels"), k in ("scores", "map"))}


def _resize_torch_op(inputs, params, kinds):
    k = kinds["x"]
    return {"": _resize_torch(inputs["x"], _size(params), k in ("mask", "labels"), k in ("scores", "map"))}


def _softmax_np(inputs, params, kinds):
    x = inputs["x"].astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return {"": (e / e.sum(axis=1, keepdims=True)).astype(np.float32)}


def _softmax_torch(inputs, params, kinds):
    import torch

    return {"": torch.softmax(inputs["x"], dim=1)}


def _argmax_np(inputs, params, kinds):
    return {"": np.argmax(inputs["x"], axis=1).astype(np.int32)}


def _argmax_torch(inputs, params, kinds):
    import torch

    return {"": torch.argmax(inputs["x"], dim=1)}  # int64 in the graph (ONNX's ArgMax type); int32 on the host


def _class_mask_np(inputs, params, kinds):
    return {"": (inputs["x"] == params["_index"]).astype(np.float32)}


def _class_mask_torch(inputs, params, kinds):
    import torch

    return {"": (inputs["x"] == params["_index"]).to(torch.float32)}


def _threshold_np(inputs, params, kinds):
    x = inputs["x"]
    x = x[:, 0] if x.ndim == 4 else x
    return {"": (x > float(params["value"])).astype(np.float32)}


def _threshold_torch(inputs, params, kinds):
    import torch

    x = inputs["x"]
    x = x[:, 0] if x.dim() == 4 else x
    return {"": (x > float(params["value"])).to(torch.float32)}


def _apply_mask_np(inputs, params, kinds):
    m = inputs["mask"][..., None].astype(np.float32)
    fill = float(params["fill"])
    return {"": (inputs["image"].astype(np.float32) * m + fill * (1.0 - m)).astype(np.float32)}


def _apply_mask_torch(inputs, params, kinds):
    m = inputs["mask"].unsqueeze(-1)
    return {"": inputs["image"] * m + float(params["fill"]) * (1.0 - m)}


def crop_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), end-exclusive: the mask's bounding box widened by ``margin`` of its size on each side
    (rounded down at the start, up at the end) and clipped to the picture; the whole picture for an empty mask."""
    import math

    h, w = mask.shape
    ys, xs = np.nonzero(mask > 0.5)
    if len(ys) == 0:
        return 0, 0, w, h
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return (max(0, math.floor(x0 - mx)), max(0, math.floor(y0 - my)), min(w, math.ceil(x1 + mx)), min(h, math.ceil(y1 + my)))


def _crop_np(inputs, params, kinds):
    import cv2

    h, w = _size(params)
    out = []
    for img, m in zip(inputs["image"], inputs["mask"]):
        x0, y0, x1, y1 = crop_box(m, float(params["margin"]))
        out.append(cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR))
    return {"": np.stack(out)}


def _coverage_np(inputs, params, kinds):
    m = inputs["x"].astype(np.float64)
    return {"": m.reshape(len(m), -1).mean(axis=1, keepdims=True).astype(np.float32)}


def _coverage_torch(inputs, params, kinds):
    m = inputs["x"]
    return {"": m.reshape(m.shape[0], -1).mean(dim=1, keepdim=True)}


def _region_np(inputs, params, kinds):
    labels = inputs["labels"]
    within = _within_np(inputs, labels)
    gray = _luma_np(inputs["image"])
    total = np.maximum(within.reshape(len(labels), -1).sum(axis=1), 1.0)
    areas, means = [], []
    for k in params["_indices"]:
        sel = (labels == k) * within
        n = sel.reshape(len(labels), -1).sum(axis=1)
        areas.append(n / total)
        means.append(np.where(n > 0, (gray * sel).reshape(len(labels), -1).sum(axis=1) / np.maximum(n, 1.0), 0.0))
    return {"area": np.stack(areas, 1).astype(np.float32), "intensity": np.stack(means, 1).astype(np.float32)}


def _region_torch(inputs, params, kinds):
    """Means, not sums: a float16 graph (Core ML fp16) holds a mean of 0–255 values, never a sum over a picture's
    pixels (which passes 65504, float16's largest). Mathematically the NumPy form: sum / max(count, 1) is
    mean / max(mean count, 1 / pixels)."""
    import torch

    labels = inputs["labels"]
    n_img = labels.shape[0]
    floor = 1.0 / float(int(labels.shape[1]) * int(labels.shape[2]))
    within = inputs.get("within")
    within = torch.ones_like(labels, dtype=torch.float32) if within is None else within
    img = inputs["image"]
    gray = img[..., 0] * LUMA[0] + img[..., 1] * LUMA[1] + img[..., 2] * LUMA[2]
    total = torch.clamp(within.reshape(n_img, -1).mean(dim=1), min=floor)
    areas, means = [], []
    for k in params["_indices"]:
        sel = (labels == k).to(within.dtype) * within
        n = sel.reshape(n_img, -1).mean(dim=1)
        areas.append(n / total)
        means.append((gray * sel).reshape(n_img, -1).mean(dim=1) / torch.clamp(n, min=floor))
    return {"area": torch.stack(areas, 1), "intensity": torch.stack(means, 1)}


def _count_np(inputs, params, kinds):
    import cv2

    labels = inputs["labels"]
    within = _within_np(inputs, labels)
    counts = np.zeros((len(labels), len(params["_indices"])), np.float32)
    for i in range(len(labels)):
        for j, k in enumerate(params["_indices"]):
            sel = ((labels[i] == k) & (within[i] > 0.5)).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(sel, connectivity=8)
            counts[i, j] = int(np.sum(stats[1:, cv2.CC_STAT_AREA] >= int(params["min_pixels"])))
    return {"": counts}


def _named_classes(v: Value, p: dict, where: str) -> tuple[str, ...]:
    idx = _classes(v, p, where)
    p["_indices"] = idx
    return tuple(v.names[i] if v.names else str(i) for i in idx)


def _region_makes(v, p):
    _same_hw({k: v.get(k) for k in ("labels", "image", "within")}, "region_stats")
    names = _named_classes(v["labels"], p, "region_stats")
    return {"area": Value("vector", (len(names),), names, "fraction"),
            "intensity": Value("vector", (len(names),), names, "luminance 0-255")}


def _count_makes(v, p):
    _same_hw({k: v.get(k) for k in ("labels", "within")}, "count_regions")
    names = _named_classes(v["labels"], p, "count_regions")
    return {"": Value("vector", (len(names),), names, "regions")}


def _class_mask_makes(v, p):
    p["_index"] = _class_index(v["x"], p["class"], "class_mask")
    return {"": Value("mask", v["x"].shape)}


def _threshold_makes(v, p):
    x = v["x"]
    if x.kind == "map" and (len(x.shape) != 3 or x.shape[0] != 1):
        raise GlueError(f"threshold takes a map with one channel, got shape {list(x.shape)}", fix="select one channel first")
    return {"": Value("mask", x.shape[1:] if x.kind == "map" else x.shape)}


def _argmax_makes(v, p):
    x = v["x"]
    return {"": Value("labels", x.shape[1:], x.names)}


def _apply_makes(v, p):
    _same_hw({"image": v["image"], "mask": v["mask"]}, "apply_mask")
    if not 0 <= float(p["fill"]) <= 255:
        raise GlueError(f"apply_mask: fill is a pixel value 0–255, got {p['fill']!r}", fix="write fill: 0 (black)")
    return {"": v["image"]}


def _crop_makes(v, p):
    _same_hw({"image": v["image"], "mask": v["mask"]}, "crop_to_mask")
    if not 0 <= float(p["margin"]) <= 1:
        raise GlueError(f"crop_to_mask: margin is a fraction of the box 0–1, got {p['margin']!r}", fix="write margin: 0.1")
    h, w = _size(p)
    return {"": Value("image", (h, w, 3))}


def _to_image_makes(v, p):
    x = v["x"]
    if len(x.shape) != 3 or x.shape[0] != 3:
        raise GlueError(f"to_image takes a three-channel map (an RGB picture a model makes), not one of shape {list(x.shape)}",
                        fix="connect a super-resolution model's image output")
    if not 0 < float(p["scale"]) <= 255:
        raise GlueError(f"to_image: scale maps the model's range to pixels 0–255, got {p['scale']!r}",
                        fix="write scale: 255 for a [0, 1] output, 1 for a 0–255 one")
    return {"": Value("image", (x.shape[1], x.shape[2], 3))}


def _to_image_np(inputs, params, kinds):
    return {"": np.clip(np.transpose(inputs["x"], (0, 2, 3, 1)) * float(params["scale"]), 0.0, 255.0).astype(np.float32)}


def _to_image_torch(inputs, params, kinds):
    return {"": (inputs["x"].permute(0, 2, 3, 1) * float(params["scale"])).clamp(0.0, 255.0)}


def _instances_np(inputs, params, kinds):
    h, w = _size(params)
    boxes, scores, classes, masks = (np.asarray(inputs[k]) for k in ("boxes", "scores", "classes", "masks"))
    n, k = scores.shape[0], scores.shape[1]
    boxes, masks = boxes.reshape(n, k, 4), masks.reshape(n, k, *masks.shape[-2:])
    count = np.clip(np.rint(np.asarray(inputs["count"]).reshape(n, -1)[:, 0]), 0, k).astype(np.int64)
    out = np.zeros((n, h, w), np.int32)
    for i in range(n):
        inside = paste_masks(boxes[i], masks[i], h, w) >= float(params["threshold"])
        inside &= (np.arange(k) < count[i])[:, None, None]
        # The highest-scoring instance covering a pixel labels it (the first, on ties).
        best = np.argmax(np.where(inside, scores[i][:, None, None], -np.inf), axis=0)
        label = np.rint(classes[i]).astype(np.int32) + 1
        out[i] = np.where(inside.any(0), label[best], 0)
    return {"": out}


def _instances_makes(v, p):
    h, w = _size(p)
    names = p["classes"]
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(c, str) for c in names):
        raise GlueError(f"paste_instances: classes lists the detector's class names in index order, got {names!r}",
                        fix="write classes: [forehead, cheek_left, ...] (its labels, as its bundle's labels.txt lists them)")
    k = v["scores"].shape[0] if v["scores"].shape else 0
    # A component's (K, 4) boxes travel as a one-channel map; its masks as a K-channel map.
    fits = {"boxes": tuple(v["boxes"].shape) in ((1, k, 4), (k, 4)), "classes": tuple(v["classes"].shape) == (k,),
            "count": tuple(v["count"].shape) == (1,),
            "masks": len(v["masks"].shape) == 3 and v["masks"].shape[0] == k and v["masks"].shape[1] == v["masks"].shape[2]}
    want = {"boxes": f"[{k}, 4]", "classes": f"[{k}]", "count": "[1]", "masks": f"[{k}, M, M]"}
    for port, ok in fits.items():
        if not ok:
            raise GlueError(f"paste_instances: {port} has shape {list(v[port].shape)}, but {k} detections (scores) need {want[port]}",
                            fix="connect the detector's boxes, scores, classes, masks and count outputs")
    if not 0 < float(p["threshold"]) < 1:
        raise GlueError(f"paste_instances: threshold is a mask probability between 0 and 1, got {p['threshold']!r}",
                        fix="write threshold: 0.5")
    return {"": Value("labels", (h, w), ("none", *names))}


OPS: dict[str, Op] = {op.name: op for op in (
    Op("resize", ("x",), {"x": ("image", "scores", "map", "mask", "labels")}, {"size": ...}, _resize_makes, _resize_np_op, _resize_torch_op,
       "bilinear (half-pixel centres, no antialiasing) for pictures and scores; nearest, floor((i + 0.5) · in / out), for masks and labels"),
    Op("softmax", ("x",), {"x": ("scores",)}, {}, lambda v, p: {"": v["x"]}, _softmax_np, _softmax_torch,
       "probabilities over the class axis"),
    Op("argmax", ("x",), {"x": ("scores",)}, {}, _argmax_makes, _argmax_np, _argmax_torch, "the index of the largest class score (the first, on ties)"),
    Op("class_mask", ("x",), {"x": ("labels",)}, {"class": ...}, _class_mask_makes, _class_mask_np, _class_mask_torch,
       "1.0 where the label is the class, else 0.0"),
    Op("threshold", ("x",), {"x": ("map", "mask")}, {"value": ...}, _threshold_makes, _threshold_np, _threshold_torch,
       "1.0 where the value is greater than the threshold"),
    Op("apply_mask", ("image", "mask"), {"image": ("image",), "mask": ("mask",)}, {"fill": 0}, _apply_makes,
       _apply_mask_np, _apply_mask_torch, "image · mask + fill · (1 − mask), per channel"),
    Op("crop_to_mask", ("image", "mask"), {"image": ("image",), "mask": ("mask",)}, {"size": ..., "margin": 0.1}, _crop_makes,
       _crop_np, None, "the mask's bounding box widened by margin · its width/height on each side (floor at the start, ceil at "
       "the end), clipped to the picture, then resized bilinearly; an empty mask keeps the whole picture"),
    Op("coverage", ("x",), {"x": ("mask",)}, {}, lambda v, p: {"": Value("vector", (1,), ("coverage",), "fraction")},
       _coverage_np, _coverage_torch, "the fraction of the picture the mask covers"),
    Op("region_stats", ("labels", "image", "within?"), {"labels": ("labels",), "image": ("image",), "within": ("mask",)},
       {"classes": None}, _region_makes, _region_np, _region_torch,
       "per class: area = its pixels inside `within` / the pixels of `within` (or of the picture); intensity = the mean "
       "luminance 0.299 R + 0.587 G + 0.114 B of those pixels, 0 where there are none",
       outputs=("area", "intensity")),
    Op("count_regions", ("labels", "within?"), {"labels": ("labels",), "within": ("mask",)}, {"classes": None, "min_pixels": 4},
       _count_makes, _count_np, None, "per class: the separate 8-connected regions of at least min_pixels pixels inside `within`"),
    Op("to_image", ("x",), {"x": ("map",)}, {"scale": 255}, _to_image_makes, _to_image_np, _to_image_torch,
       "a three-channel map (C x H x W, as a super-resolution model makes it) as an RGB picture: x · scale, channel-last, "
       "clipped to 0–255"),
    Op("paste_instances", ("boxes", "scores", "classes", "masks", "count"),
       {"boxes": ("map",), "scores": ("vector",), "classes": ("vector",), "masks": ("map",), "count": ("vector",)},
       {"size": ..., "classes": ..., "threshold": 0.5}, _instances_makes, _instances_np, None,
       "an instance segmenter's first `count` detections on a size picture: each mask pasted onto its box "
       "(paste_masks: separable bilinear, 0 outside the box) and kept where >= threshold; a pixel takes 1 + the class "
       "of the highest-scoring detection that covers it, 0 where none does"),
)}


def get_op(name: str) -> Op:
    if name not in OPS:
        raise GlueError(f"unknown glue op {name!r}", fix=f"use one of: {', '.join(OPS)}")
    return OPS[name]


def resolve_params(op: Op, given: dict, where: str) -> dict:
    """The op's parameters with defaults filled in; one error naming an unknown or missing one."""
    unknown = sorted(set(given) - set(op.params))
    if unknown:
        known = ", ".join(op.params) or "none"
        raise GlueError(f"{where}: {op.name} has no parameter {unknown[0]!r}", fix=f"its parameters: {known}")
    params = {k: given.get(k, default) for k, default in op.params.items()}
    missing = [k for k, v in params.items() if v is ...]
    if missing:
        raise GlueError(f"{where}: {op.name} needs {missing[0]}", fix=f"add {missing[0]}: to the step")
    return params


def infer(op: Op, inputs: dict[str, Value], params: dict, where: str) -> dict[str, Value]:
    """The values ``op`` makes from values of these kinds and shapes; one error naming the port that does not fit.
    ``params`` gains the op's resolved internals (class indices), which ``run_numpy``/``run_torch`` read."""
    for port, optional in op.ports():
        v = inputs.get(port)
        if v is None:
            if not optional:
                raise GlueError(f"{where}: {op.name} needs its input {port!r}", fix=f"give inputs: {{{port}: <value>}}")
            continue
        if v.kind not in op.kinds[port]:
            raise GlueError(f"{where}: {op.name}'s input {port!r} takes {' or '.join(op.kinds[port])}, but gets a {v.kind} "
                            f"of shape {list(v.shape)}", fix=_fix_kind(v.kind, op.kinds[port]))
    extra = sorted(set(inputs) - {p for p, _ in op.ports()})
    if extra:
        raise GlueError(f"{where}: {op.name} has no input {extra[0]!r}", fix=f"its inputs: {', '.join(p for p, _ in op.ports())}")
    try:
        return op.makes(inputs, params)
    except GlueError as exc:
        if exc.cause.startswith(where):
            raise
        raise GlueError(f"{where}: {exc.cause}", fix=exc.fix) from None


def _fix_kind(got: str, want: tuple[str, ...]) -> str:
    if got == "scores" and "labels" in want:
        return "take the argmax of the scores first"
    if got == "labels" and "mask" in want:
        return "make a mask of one class first (class_mask)"
    if got == "scores" and "mask" in want:
        return "argmax then class_mask, or threshold a one-channel map"
    return f"give it a {' or '.join(want)}"


def run_numpy(op: Op, inputs: dict[str, np.ndarray], params: dict, kinds: dict[str, str]) -> dict[str, np.ndarray]:
    return op.numpy(inputs, params, kinds)


def run_torch(op: Op, inputs: dict, params: dict, kinds: dict[str, str]) -> dict:
    if op.torch is None:
        raise GlueError(f"glue op {op.name} runs on the host only and cannot be fused into a graph",
                        fix="drop the fused targets, or use ops marked fusable")
    return op.torch(inputs, params, kinds)


def table() -> list[dict]:
    """The ops as the manifest publishes them for apps."""
    return [{"op": op.name, "inputs": {p.rstrip("?"): list(op.kinds[p.rstrip("?")]) for p in op.inputs},
             "optional_inputs": [p.rstrip("?") for p in op.inputs if p.endswith("?")],
             "params": {k: (None if v is ... else v) for k, v in op.params.items()},
             "required_params": [k for k, v in op.params.items() if v is ...],
             "outputs": [o or "(the step)" for o in op.outputs], "fusable": op.fusable, "definition": op.doc}
            for op in OPS.values()]


def paste_masks(boxes: np.ndarray, masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-detection mask probabilities put back on a ``height`` x ``width`` picture: (K, height, width) float32.

    ``boxes`` (K, 4): [x1, y1, x2, y2] normalized to 0–1 of the picture (x = column / width); ``masks`` (K, M, M):
    probabilities 0–1, mask k covering box k exactly. Pixel row i (centre i + 0.5) reads mask coordinate
    u = ((i + 0.5) / height - y1) / (y2 - y1) · M - 0.5, clamped to [0, M - 1]; its value is linear in u between
    mask rows floor(u) and floor(u) + 1 (the last row where that is past the edge), and 0 where the pixel centre
    (i + 0.5) / height is outside [y1, y2). Columns the same with x1, x2 and ``width``; the two are applied one after
    the other (separable bilinear): pasted = Wy · mask · Wxᵀ. A degenerate box (x2 ≤ x1 or y2 ≤ y1) pastes nothing.
    An instance's binary mask is pasted ≥ 0.5.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    masks = np.asarray(masks, np.float32)
    wy = _paste_weights(boxes[:, 1], boxes[:, 3], int(height), masks.shape[1])
    wx = _paste_weights(boxes[:, 0], boxes[:, 2], int(width), masks.shape[2])
    return np.matmul(np.matmul(wy, masks), np.ascontiguousarray(wx.transpose(0, 2, 1)))  # contiguous: BLAS, not a slow loop


def _paste_weights(lo: np.ndarray, hi: np.ndarray, n: int, m: int) -> np.ndarray:
    """(K, n, m) float32: the weight of mask row (or column) j in picture row i, for each box's [lo, hi)."""
    centre = (np.arange(n) + 0.5) / n
    span = hi - lo
    inside = (centre >= lo[:, None]) & (centre < hi[:, None]) & (span > 0)[:, None]
    u = np.clip((centre - lo[:, None]) / np.where(span > 0, span, 1.0)[:, None] * m - 0.5, 0, m - 1)
    i0 = np.floor(u).astype(np.int64)
    frac = (u - i0) * inside
    k, i = np.arange(len(lo))[:, None], np.arange(n)[None, :]
    w = np.zeros((len(lo), n, m), np.float32)
    w[k, i, np.minimum(i0 + 1, m - 1)] = frac
    w[k, i, i0] += inside - frac  # the same entry where u sits on the last row (frac 0 there)
    return w
