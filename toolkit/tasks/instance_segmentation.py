"""Instance segmentation: a Mask R-CNN-style model's detections, matched to ground-truth instances by class
and IoU; mask and box AP, matched-mask IoU, count error, per-class recall, instance agreement with float.

Outputs (batch-first, K detections per image, sorted by score, the first ``count`` valid; ``OUTPUTS``):
``boxes`` (N, K, 4) [x1, y1, x2, y2] normalized to the input (x = column / width); ``scores`` (N, K) 0–1;
``classes`` (N, K) class indices into the labels (no background entry), as floats; ``masks`` (N, K, M, M)
probabilities, mask k covering box k exactly (``toolkit.glue.paste_masks`` puts it on the picture, and an
instance's mask is the pasted probability ≥ 0.5); ``count`` (N, 1) the number of valid detections. ``read``
gives an N-length structured array (``boxes``, ``scores``, ``classes``, ``masks``, ``count``); entries at or
past ``count`` are ignored everywhere.

Targets: an N-length structured array of ``boxes`` (G, 4) normalized, ``classes`` (G,) (-1: padding) and
``masks`` (G, H, W) 0/1 at the evaluation resolution (H, W) = ``output_size or input_size``. The synthetic data
has one instance per face region (``FACE_REGIONS``, G = 5). A folder holds ``instances/<image stem>.png``: one
channel, 8- or 16-bit, 1 + class index per pixel (0: none); each 8-connected region of a class (at the
evaluation resolution, after a nearest resize) is one instance, so two instances of a class must not touch; at
most ``MAX_INSTANCES`` per image.

Matching, never by index: in each image the valid detections, by score (highest first), each take the unmatched
ground truth of the same class with the highest IoU ≥ t (COCO's greedy rule; ties: the first truth); mask IoU on
the pasted binary masks at the evaluation resolution, box IoU on the boxes; two empty masks (or boxes) have IoU 1.

Metrics: ``mask_ap50``, ``mask_ap`` (mean over t = 0.50, 0.55 … 0.95), ``box_ap50``, ``box_ap``; ``mask_iou``
(mean mask IoU of the pairs matched at 0.5); ``count_error`` (mean |count − truths|); ``recall.<class>`` (truths
matched at mask IoU 0.5); ``agreement``: the same matching of the artifact's instances to float's, 2 · matched /
(both counts), an image where both are empty counting as one matched pair. Where no evaluation resolution is
known (agreement, float's detections standing for the truth) masks are pasted at ``REF_SCALE`` · M square.

AP is image-averaged: each image's AP over its detections (COCO's 101-point interpolated precision at recall
0, 0.01 … 1, recall over that image's ground truth; an image without ground truth scores 1 without detections,
else 0), averaged over images. COCO pools detections over the dataset per class instead; here every metric is a
ratio of per-image sums, so the bootstrap resamples images (one matrix product), and a face has one instance of
each region, so the per-image AP is the question an app asks of one photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import BadInputError, DataError
from toolkit.glue import paste_masks
from toolkit.registry import INSTANCE_TOLERANCES
from toolkit.tasks import measures
from toolkit.tasks.base import Task

OUTPUTS = ("boxes", "scores", "classes", "masks", "count")
# What each output is taken for and its per-image shape; letters are sizes every output must share.
_READS = {"boxes": ("detection boxes [x1, y1, x2, y2] normalized to the input", ("K", 4)),
          "scores": ("detection scores", ("K",)),
          "classes": ("detection class indices into the labels", ("K",)),
          "masks": ("per-detection mask probabilities", ("K", "M", "M")),
          "count": ("the number of valid detections", (1,))}
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's; mask_ap and box_ap average over them
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_INSTANCES = 32  # per image of a folder: more is a speckled annotation, not faces' regions
# Where no evaluation resolution is known (the float model's detections as truth, agreement with float): masks
# are pasted at REF_SCALE · M square, which keeps the detail of a mask spanning a quarter of the picture.
REF_SCALE = 4
_PASTE_BUDGET = 1 << 24  # pixels pasted at once (64 MB of float32)


class InstanceSegmentation(Task):
    name = "instance_segmentation"
    headline = "mask_ap"
    agreement_label = "instance agreement with float"
    lower_is_better = ("count_error",)
    report_title = "Recall per class (mask IoU ≥ 0.5)"
    reads_as = "detections (boxes, scores, classes, masks, count)"
    # Detections reorder and flip in and out under quantization: elementwise error means nothing, so no
    # max_abs or min_cosine; the matched instances and the mask AP decide.
    default_tolerances = INSTANCE_TOLERANCES
    default_output = None
    needs_labels = True

    # --- outputs -------------------------------------------------------------------------------------
    def reads(self, spec) -> tuple[str, ...]:
        return OUTPUTS

    def check_outputs(self, spec, outputs) -> None:
        sizes: dict[str, int] = {}
        for name, (words, want) in _READS.items():
            shown = "[" + ", ".join(str(w) for w in want) + "]"
            if name not in outputs:
                raise BadInputError(f"the {self.name} task reads output {name!r} as {words} of shape {shown} per image, "
                                    f"but the model has no output of that name (it has {', '.join(outputs) or 'none'})",
                                    fix=f"name the model's outputs {', '.join(OUTPUTS)} (model.outputs)")
            got = tuple(int(g) for g in np.shape(outputs[name])[1:])
            fits = len(got) == len(want) and all(sizes.setdefault(w, g) == g if isinstance(w, str) else w == g for w, g in zip(want, got))
            if not fits:
                bound = ", ".join(f"{k} = {v}" for k, v in sizes.items())
                raise BadInputError(f"the {self.name} task reads output {name!r} as {words} of shape {shown} per image"
                                    f"{f' ({bound})' if bound else ''}, but it has shape {list(got)}",
                                    fix=f"return {', '.join(OUTPUTS)} batch-first with the same K detections each, square masks")

    def read(self, outputs, spec) -> np.ndarray:
        """The detections as an N-length structured array; ``classes`` and ``count`` rounded to integers."""
        boxes = np.asarray(outputs["boxes"], np.float32)
        masks = np.asarray(outputs["masks"], np.float32)
        n, k = boxes.shape[:2]
        rec = np.zeros(n, detections_dtype(k, masks.shape[2]))
        rec["boxes"], rec["masks"] = boxes, masks
        rec["scores"] = np.asarray(outputs["scores"], np.float32)
        rec["classes"] = np.rint(outputs["classes"])
        rec["count"] = np.clip(np.rint(np.asarray(outputs["count"]).reshape(n, -1)[:, 0]), 0, k)
        return rec

    # --- data ------------------------------------------------------------------------------------------
    def synthetic_problem(self, spec) -> str | None:
        from toolkit.data.synthetic import FACE_REGIONS

        if tuple(spec.labels) != FACE_REGIONS:
            return f"the synthetic images are annotated with the face regions {', '.join(FACE_REGIONS)}, not {', '.join(spec.labels) or 'no labels'}"
        return None

    def synthetic_target(self, sample, spec) -> np.ndarray:
        """One instance per face region (region k + 1 of ``sample.regions``, resized nearest to the evaluation
        resolution); an absent region is padding (class -1)."""
        import cv2

        problem = self.synthetic_problem(spec)
        if problem:
            raise DataError(problem, fix="label the model's classes as those regions, or evaluate on a folder with instances/ maps "
                                         "(evaluation: {source: folder, folder: ...})")
        h, w = eval_size(spec)
        regions = cv2.resize(sample.regions, (w, h), interpolation=cv2.INTER_NEAREST)
        masks = (regions[None] == np.arange(1, len(spec.labels) + 1)[:, None, None]).astype(np.uint8)
        classes = np.where(masks.any((1, 2)), np.arange(len(spec.labels)), -1)
        return instances(masks, classes)

    def stack_targets(self, targets: list) -> np.ndarray:
        """The images' records, padded to the largest instance count (class -1)."""
        g = max(t["classes"].shape[-1] for t in targets)
        return np.stack([_pad(np.asarray(t).reshape(()), g) for t in targets])

    def targets_from(self, ref: np.ndarray) -> np.ndarray:
        """The float model's valid detections as ground truth (G = K; the rest padding), masks pasted at
        ``REF_SCALE`` · M square: the evaluation resolution is not in the outputs."""
        valid = _valid(ref)
        size = _ref_size(ref)
        masks = np.zeros((len(ref), ref["classes"].shape[1], *size), np.uint8)
        for s, e in _chunks(ref, size):
            masks[s:e] = _paste(ref[s:e], size).reshape(e - s, -1, *size)
        out = np.zeros(len(ref), targets_dtype(ref["classes"].shape[1], size))
        out["boxes"] = np.where(valid[..., None], ref["boxes"], 0)
        out["classes"] = np.where(valid, ref["classes"], -1)
        out["masks"] = masks * valid[..., None, None]
        return out

    def folder_target(self, row: dict, *, spec, folder: Path, where: str) -> np.ndarray:
        import cv2

        from toolkit.data.image import read_image

        path = folder / "instances" / (Path(row["file"]).stem + ".png")
        fix = "add instances/<image stem>.png: one channel, 8- or 16-bit, 1 + class index per pixel (0: none)"
        if not path.exists():
            raise DataError(f"{where}: missing or unreadable instance map {path}", fix=fix)
        try:
            raw = read_image(path, flags=cv2.IMREAD_UNCHANGED, what="instance map", fix=fix)
        except DataError as e:
            raise DataError(f"{where}: {e.cause}", fix=fix) from None
        if raw.ndim != 2:
            raise DataError(f"{where}: instance map {path} has {raw.shape[2]} channels", fix=fix)
        if int(raw.max()) > len(spec.labels):
            raise DataError(f"{where}: instance map {path} holds {int(raw.max())}, but the model has {len(spec.labels)} classes "
                            f"(values 1–{len(spec.labels)})", fix=f"write 1 + the class index into {', '.join(spec.labels)}")
        h, w = eval_size(spec)
        cmap = cv2.resize(raw, (w, h), interpolation=cv2.INTER_NEAREST)
        masks, classes = [], []
        for c in np.unique(cmap[cmap > 0]):
            n, lab = cv2.connectedComponents((cmap == c).astype(np.uint8), connectivity=8)
            masks.append(lab[None] == np.arange(1, n)[:, None, None])
            classes += [int(c) - 1] * (n - 1)
        if len(classes) > MAX_INSTANCES:
            raise DataError(f"{where}: instance map {path} holds {len(classes)} instances, more than {MAX_INSTANCES}",
                            fix="remove specks: each 8-connected region of a class is one instance")
        stacked = np.concatenate(masks) if masks else np.zeros((0, h, w), bool)
        return instances(stacked.astype(np.uint8), np.array(classes, np.int32))

    def folder_write(self, data, i: int, *, spec, folder: Path, name: str):
        import cv2

        t = data.targets[i]
        cmap = np.zeros(t["masks"].shape[1:], np.uint8 if len(spec.labels) < 255 else np.uint16)
        for mask, c in zip(t["masks"], t["classes"]):
            if c >= 0:
                cmap[mask > 0] = c + 1
        (folder / "instances").mkdir(exist_ok=True)
        cv2.imwrite(str(folder / "instances" / name), cmap)
        return data.inputs[i], []

    # --- training --------------------------------------------------------------------------------------
    def loss(self, spec, model):
        fn = getattr(model, "detection_loss", None)
        if not callable(fn):
            raise BadInputError(f"the {self.name} task trains only models that define detection_loss(outputs, targets); "
                                f"{spec.name}'s model does not", fix="give the model a method detection_loss(outputs, targets) "
                                "returning a scalar tensor (targets: a dict of boxes, classes, masks tensors), or train it elsewhere")
        return fn

    def training_outputs(self, model, x):
        """A detector's loss needs what comes before its post-processing (proposals, the pyramid): the model's
        ``training_outputs(x)`` where it has one; its forward stays the deployed, post-processed graph."""
        fn = getattr(model, "training_outputs", None)
        return fn(x) if callable(fn) else model(x)

    def targets_tensor(self, targets: np.ndarray) -> TargetBatches:
        return TargetBatches(targets)

    # --- metrics ---------------------------------------------------------------------------------------
    def quick_metrics(self, out, targets, *, num_classes=0, output_names=()) -> dict[str, float]:
        """The set-wide metrics (no per-class recall: no labels here, no agreement: no float model)."""
        labels = tuple(str(i) for i in range(num_classes))
        stats = self.per_image(out, targets, out, labels=labels)
        got = self.aggregate({k: v.sum(0, keepdims=True) for k, v in stats.items()}, labels=labels)
        return {k: float(v[0]) for k, v in got.items() if k != "agreement" and not k.startswith("recall.")}

    def agreement(self, ref, out) -> float:
        agree = _agreement(out, ref).sum(0)
        return float(2 * agree[0] / agree[1])

    def per_image(self, out, targets, ref, *, labels=(), probabilities=False) -> dict[str, np.ndarray]:
        """Per image: AP at each IoU threshold (mask, box), the matched pairs' mask IoU sum and their number at
        0.5, |count − truths|, truths and those found per class, and agreement with ``ref`` (matched, both counts)."""
        n = len(out)
        order, valid = _ranked(out)
        classes = np.take_along_axis(out["classes"], order, 1)
        g_cls = targets["classes"]
        g_valid = g_cls >= 0
        ok = (classes[:, :, None] == g_cls[:, None, :]) & valid[:, :, None] & g_valid[:, None, :]
        n_gt = g_valid.sum(1)
        mask_iou = np.take_along_axis(_mask_ious(out, targets["masks"]), order[:, :, None], 1)
        box_iou = np.take_along_axis(_box_ious(out["boxes"], targets["boxes"]), order[:, :, None], 1)
        m_tp, m_iou, m_taken = _match(mask_iou, ok, IOU_THRESHOLDS)
        b_tp, _, _ = _match(box_iou, ok, IOU_THRESHOLDS)
        c = len(labels) or int(max(g_cls.max(initial=-1), out["classes"].max(initial=-1)) + 1)
        return {"one": np.ones((n, 1)),
                "mask_ap": _ap(m_tp, valid, n_gt), "box_ap": _ap(b_tp, valid, n_gt),
                "iou": np.stack([m_iou[:, 0].sum(1), m_tp[:, 0].sum(1)], axis=1).astype(np.float64),
                "count_err": np.abs(out["count"] - n_gt).astype(np.float64)[:, None],
                "gt": _per_class(g_cls, g_valid, c), "found": _per_class(g_cls, m_taken[:, 0], c),
                "agree": _agreement(out, ref)}

    def aggregate(self, sums, *, labels=(), output_names=()) -> dict[str, np.ndarray]:
        div = measures.ratio
        n = sums["one"][:, 0]
        out = {"mask_ap50": div(sums["mask_ap"][:, 0], n), "mask_ap": div(sums["mask_ap"].mean(1), n),
               "box_ap50": div(sums["box_ap"][:, 0], n), "box_ap": div(sums["box_ap"].mean(1), n),
               "mask_iou": div(sums["iou"][:, 0], sums["iou"][:, 1]), "count_error": div(sums["count_err"][:, 0], n),
               "agreement": div(2 * sums["agree"][:, 0], sums["agree"][:, 1])}
        names = labels or tuple(str(i) for i in range(sums["gt"].shape[1]))
        out.update({f"recall.{name}": div(sums["found"][:, i], sums["gt"][:, i]) for i, name in enumerate(names)})
        return out

    def report_lines(self, verification: dict, *, labels=()) -> list[str]:
        rows = verification.get("metrics") or {}
        found = [(name, rows[f"recall.{name}"]) for name in labels if f"recall.{name}" in rows]
        if not found:
            return []
        cell = lambda r: "–" if r is None or not np.isfinite(r["value"]) else f"{r['value']:.3f}"  # noqa: E731
        return ["| class | float | artifact |", "|---|---|---|",
                *(f"| {name} | {cell(r.get('float'))} | {cell(r['artifact'])} |" for name, r in found)]

    def app_contract(self, spec) -> dict:
        from toolkit.glue import OPS

        shapes = {o.name: o.shape for o in spec.outputs}
        k = (shapes.get("scores") or (None,))[0]
        m = (shapes.get("masks") or (None, None))[-1]
        return {
            "kind": "instances",
            "detections": k, "mask_size": m, "mask_threshold": 0.5,
            "valid": "the first round(count) detections, by score (highest first); the rest have score 0 and are padding",
            "boxes": "[x1, y1, x2, y2] normalized to the network's input picture (x = column / width, y = row / height)",
            "classes": "index into labels (a float holding an integer)",
            "masks": "detection k's M x M mask probabilities cover its box exactly; the artifact holds them as (1, K, M, M) "
                     "with a channel-first input, (1, M, M, K) with a channel-last one (detection k: masks[0, :, :, k])",
            "paste": " ".join(paste_masks.__doc__.split()),
            "label_map": OPS["paste_instances"].doc,
        }


class TargetBatches:
    """Targets as training batches: ``batches[idx]`` (an index array) is a dict of torch tensors ``boxes``
    (n, G, 4) float32, ``classes`` (n, G) int64 (-1: padding), ``masks`` (n, G, H, W) uint8."""

    def __init__(self, targets: np.ndarray):
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, idx) -> dict:
        import torch

        t = self.targets[idx]
        return {"boxes": torch.from_numpy(np.ascontiguousarray(t["boxes"], np.float32)),
                "classes": torch.from_numpy(t["classes"].astype(np.int64)),
                "masks": torch.from_numpy(np.ascontiguousarray(t["masks"], np.uint8))}


def detections_dtype(k: int, m: int) -> np.dtype:
    """One image's detections, as ``read`` gives them."""
    return np.dtype([("boxes", "f4", (k, 4)), ("scores", "f4", (k,)), ("classes", "i4", (k,)), ("masks", "f4", (k, m, m)),
                     ("count", "i4")])


def targets_dtype(g: int, size: tuple[int, int]) -> np.dtype:
    """One image's ground truth: G instances at the evaluation resolution."""
    return np.dtype([("boxes", "f4", (g, 4)), ("classes", "i4", (g,)), ("masks", "u1", (g, *size))])


def eval_size(spec) -> tuple[int, int]:
    """(H, W) at which masks are judged: the spec's output size, else its input size."""
    return tuple(spec.output_size or spec.input_size)


def instances(masks: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One image's ground-truth record (0-d) from its instance masks (G, H, W) 0/1 and classes (G,) (-1:
    padding): boxes are the masks' tight bounds, [x_min / W, y_min / H, (x_max + 1) / W, (y_max + 1) / H]."""
    g, h, w = masks.shape
    rows, cols = masks.any(2), masks.any(1)
    y0, y1 = rows.argmax(1), h - rows[:, ::-1].argmax(1)
    x0, x1 = cols.argmax(1), w - cols[:, ::-1].argmax(1)
    boxes = np.stack([x0 / w, y0 / h, x1 / w, y1 / h], axis=1) * rows.any(1)[:, None]
    rec = np.zeros((), targets_dtype(g, (h, w)))
    rec["boxes"], rec["classes"], rec["masks"] = boxes, classes, masks
    return rec


def _pad(rec: np.ndarray, g: int) -> np.ndarray:
    have = rec["classes"].shape[0]
    if have == g:
        return rec
    out = np.zeros((), targets_dtype(g, rec["masks"].shape[1:]))
    out["classes"] = -1
    out["boxes"][:have], out["classes"][:have], out["masks"][:have] = rec["boxes"], rec["classes"], rec["masks"]
    return out


def _valid(d: np.ndarray) -> np.ndarray:
    """(N, K): the detections before ``count``."""
    return np.arange(d["scores"].shape[1])[None, :] < d["count"][:, None]


def _ranked(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The detections' order (valid ones by score, highest first; ties in index order; the rest after) and
    which of them, in that order, are valid: (N, K) each."""
    valid = _valid(d)
    order = np.argsort(np.where(valid, -d["scores"].astype(np.float64), 2.0), axis=1, kind="stable")
    return order, np.take_along_axis(valid, order, 1)


def _ref_size(d: np.ndarray) -> tuple[int, int]:
    m = d["masks"].shape[-1]
    return REF_SCALE * m, REF_SCALE * m


def _chunks(d: np.ndarray, size: tuple[int, int]):
    step = max(1, _PASTE_BUDGET // max(1, d["scores"].shape[1] * size[0] * size[1]))
    return ((s, min(s + step, len(d))) for s in range(0, len(d), step))


def _paste(d: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, K, H·W) float32 0/1: the detections' binary masks at ``size`` (none past ``count``)."""
    n, k = d["scores"].shape
    valid = _valid(d)
    out = np.zeros((n, k, size[0] * size[1]), np.float32)
    if valid.any():
        out[valid] = (paste_masks(d["boxes"][valid], d["masks"][valid], *size) >= 0.5).reshape(int(valid.sum()), -1)
    return out


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of 0/1 masks (n, A, P) and (n, B, P): (n, A, B) float64; two empty masks have IoU 1."""
    inter = np.matmul(a, b.transpose(0, 2, 1)).astype(np.float64)  # exact: 0/1 sums below 2^24
    union = a.sum(2, dtype=np.float64)[:, :, None] + b.sum(2, dtype=np.float64)[:, None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)


def _mask_ious(d: np.ndarray, gt_masks: np.ndarray) -> np.ndarray:
    """(N, K, G): IoU of each detection's pasted mask with each ground-truth mask (the truth's resolution)."""
    size = gt_masks.shape[2:]
    out = np.zeros((len(d), d["scores"].shape[1], gt_masks.shape[1]))
    for s, e in _chunks(d, size):
        out[s:e] = _overlap(_paste(d[s:e], size), gt_masks[s:e].reshape(e - s, gt_masks.shape[1], -1).astype(np.float32))
    return out


def _box_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, A, B) IoU of boxes (N, A, 4) and (N, B, 4); two empty boxes have IoU 1."""
    a, b = a.astype(np.float64)[:, :, None], b.astype(np.float64)[:, None]
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)


def _match(iou: np.ndarray, ok: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCO's greedy matching at every threshold at once. ``iou`` and ``ok`` (which pairs may match: same class,
    both valid) are (N, K, G) with detections in rank order. Returns, per threshold: which detections matched
    (N, T, K), their IoU (0 if none) and which ground truth was taken (N, T, G)."""
    n, k, g = iou.shape
    t = len(thresholds)
    tp, hit_iou = np.zeros((n, t, k), bool), np.zeros((n, t, k))
    taken = np.zeros((n, t, g), bool)
    if g == 0:
        return tp, hit_iou, taken
    for d in range(k):
        row = iou[:, None, d, :]
        cand = np.where(ok[:, None, d, :] & ~taken & (row >= thresholds[None, :, None]), row, -1.0)
        best = cand.argmax(2)
        value = np.take_along_axis(cand, best[..., None], 2)[..., 0]
        hit = value >= 0
        tp[:, :, d], hit_iou[:, :, d] = hit, np.where(hit, value, 0.0)
        taken |= hit[..., None] & (np.arange(g) == best[..., None])
    return tp, hit_iou, taken


def _ap(tp: np.ndarray, valid: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """(N, T) each image's AP: 101-point interpolated precision over its ranked detections."""
    n, t, k = tp.shape
    if k == 0:
        return np.broadcast_to((n_gt == 0)[:, None], (n, t)).astype(np.float64)
    v = valid[:, None, :]
    tpc, fpc = np.cumsum(tp & v, 2), np.cumsum(~tp & v, 2)
    recall = tpc / np.maximum(n_gt, 1)[:, None, None]
    precision = tpc / np.maximum(tpc + fpc, 1)
    envelope = np.maximum.accumulate(precision[..., ::-1], axis=2)[..., ::-1]
    first = (recall[..., None, :] < RECALL_POINTS[:, None]).sum(3)  # (N, T, 101): first rank reaching each recall
    at = np.take_along_axis(envelope, np.minimum(first, k - 1), 2)
    ap = np.where(first < k, at, 0.0).mean(2)
    empty = np.where(valid.any(1), 0.0, 1.0)[:, None]
    return np.where((n_gt == 0)[:, None], empty, ap)


def _per_class(classes: np.ndarray, counted: np.ndarray, c: int) -> np.ndarray:
    """(N, C): how many instances of each class are ``counted`` in each image."""
    n = len(classes)
    keep = counted & (classes >= 0) & (classes < c)
    idx = (np.arange(n)[:, None] * c + classes)[keep]
    return np.bincount(idx, minlength=n * c).reshape(n, c).astype(np.float64)


def _agreement(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(N, 2) per image: the instances of ``out`` matched to ``ref``'s (same class, mask IoU ≥ 0.5 at
    ``REF_SCALE`` · M, greedy by ``out``'s score) and both counts summed; an image where both are empty is
    one agreed pair (1, 2)."""
    o_order, o_valid = _ranked(out)
    n_out, n_ref = _valid(out).sum(1), _valid(ref).sum(1)
    if out is ref:  # float against itself: every instance its own match
        matched = n_out.astype(np.float64)
    else:
        r_order, r_valid = _ranked(ref)
        size = _ref_size(out)
        iou = np.zeros((len(out), out["scores"].shape[1], ref["scores"].shape[1]))
        for s, e in _chunks(out, size):
            iou[s:e] = _overlap(_paste(out[s:e], size), _paste(ref[s:e], size))
        iou = np.take_along_axis(np.take_along_axis(iou, o_order[:, :, None], 1), r_order[:, None, :], 2)
        o_cls = np.take_along_axis(out["classes"], o_order, 1)
        r_cls = np.take_along_axis(ref["classes"], r_order, 1)
        ok = (o_cls[:, :, None] == r_cls[:, None, :]) & o_valid[:, :, None] & r_valid[:, None, :]
        matched = _match(iou, ok, IOU_THRESHOLDS[:1])[0][:, 0].sum(1).astype(np.float64)
    both_empty = (n_out + n_ref) == 0
    return np.stack([np.where(both_empty, 1.0, matched), np.where(both_empty, 2.0, n_out + n_ref)], axis=1)
