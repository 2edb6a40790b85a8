"""Mask R-CNN (He et al. 2017) for the facial skin regions, written so that one graph exports to every format.

The network is the published one — backbone, feature pyramid (Lin et al. 2017), region proposal network,
RoIAlign, a box head and a mask head — on a MobileNetV2 (width 0.5) backbone at 320 x 320. What makes it
exportable is that every shape is fixed and no op needs torchvision's C++ extension:

- **Proposals**: the top ``PRE_NMS`` anchors by objectness over all pyramid levels, decoded and clipped, then
  *fast NMS* (Bolya et al. 2019, YOLACT): a box is dropped when any higher-scoring box overlaps it by more than
  the threshold, read off the upper triangle of one IoU matrix. It can drop a little more than greedy NMS (a box
  it dropped still suppresses), and it is one matrix expression instead of a data-dependent loop. The top
  ``PROPOSALS`` survivors go on, suppressed ones with score 0.
- **RoIAlign** as two matrix products: along each axis, a RoI's bins sample the map at ``SAMPLING`` points
  per bin with bilinear weights (a triangle kernel), averaged, so pooling is ``Wy @ F @ Wx^T``. (No constant
  averaging matrix: coremltools' 8-bit k-means palettization turned its two values, 0 and 0.5, into one.) The maths is
  RoIAlign's (``aligned=True``: pixel centres at +0.5; samples outside the map weigh 0 rather than clamping).
  Every RoI is pooled from every pyramid level and a one-hot level choice (the FPN rule) selects one: static,
  and no tensor above rank 4.
- **Detections**: each RoI keeps its best class, class-aware fast NMS, the top ``DETECTIONS`` by score; the mask
  head runs on those boxes and each keeps its class's mask. Below ``SCORE_THRESHOLD`` a detection's score is 0
  and ``count`` says how many lead the list.

Outputs, per image: ``boxes`` (K, 4) [x1, y1, x2, y2] in [0, 1] of the input, ``scores`` (K,), ``classes`` (K,)
(index into the labels, as floats), ``masks`` (K, 28, 28) probabilities covering each box
(``toolkit.glue.paste_masks`` puts them back on the picture), ``count`` (1,), in training mode as in eval mode
(quantizers and distillation run the network in training mode and must see the same outputs). Training calls
``training_outputs``: the pyramid and the proposal network's raw outputs, which ``detection_loss`` turns into the loss.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from toolkit.data.synthetic import FACE_REGIONS
from toolkit.models._blocks import ConvBNAct
from toolkit.models._specs import IMAGENET_MEAN, IMAGENET_STD
from toolkit.models.mobilenetv2 import MobileNetV2
from toolkit.registry import INSTANCE_TOLERANCES, ModelSpec, OutputSpec, TrainingConfig, register_model

INPUT = 320
STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((32, 48), (64, 96), (128, 192))  # pixels, per pyramid level
ASPECTS = (1 / 3, 1.0, 3.0)  # height / width
PRE_NMS, PROPOSALS, DETECTIONS = 300, 64, 10
RPN_NMS, DET_NMS, SCORE_THRESHOLD = 0.7, 0.5, 0.3
BOX_POOL, MASK_POOL, SAMPLING = 7, 14, 2
MASK = 2 * MASK_POOL
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
MAX_LOG_SIZE = math.log(1000.0 / 16)


# --- boxes (normalized [x1, y1, x2, y2]) -----------------------------------------------------------------------

def anchors(size: int = INPUT) -> torch.Tensor:
    """Every anchor, level by level, row-major over positions, then sizes x aspects: (A, 4) normalized."""
    out = []
    for stride, sizes in zip(STRIDES, ANCHOR_SIZES):
        n = size // stride
        c = (torch.arange(n, dtype=torch.float32) + 0.5) * stride / size
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        wh = torch.tensor([(s / math.sqrt(a) / size, s * math.sqrt(a) / size) for s in sizes for a in ASPECTS])
        centre = torch.stack([cx, cy], -1).reshape(-1, 1, 2)
        out.append(torch.cat([centre - wh / 2, centre + wh / 2], -1).reshape(-1, 4))
    return torch.cat(out)


def encode(boxes: torch.Tensor, ref: torch.Tensor, weights=BOX_WEIGHTS) -> torch.Tensor:
    wx, wy, ww, wh = weights
    rw, rh = (ref[..., 2] - ref[..., 0]).clamp(min=1e-6), (ref[..., 3] - ref[..., 1]).clamp(min=1e-6)
    bw, bh = (boxes[..., 2] - boxes[..., 0]).clamp(min=1e-6), (boxes[..., 3] - boxes[..., 1]).clamp(min=1e-6)
    dx = wx * ((boxes[..., 0] + boxes[..., 2]) - (ref[..., 0] + ref[..., 2])) / 2 / rw
    dy = wy * ((boxes[..., 1] + boxes[..., 3]) - (ref[..., 1] + ref[..., 3])) / 2 / rh
    return torch.stack([dx, dy, ww * torch.log(bw / rw), wh * torch.log(bh / rh)], -1)


def decode(deltas: torch.Tensor, ref: torch.Tensor, weights=BOX_WEIGHTS) -> torch.Tensor:
    """Boxes from deltas against ``ref``, clipped to the picture."""
    wx, wy, ww, wh = weights
    rw, rh = ref[..., 2] - ref[..., 0], ref[..., 3] - ref[..., 1]
    cx, cy = ref[..., 0] + 0.5 * rw + deltas[..., 0] / wx * rw, ref[..., 1] + 0.5 * rh + deltas[..., 1] / wy * rh
    w = torch.exp((deltas[..., 2] / ww).clamp(max=MAX_LOG_SIZE)) * rw
    h = torch.exp((deltas[..., 3] / wh).clamp(max=MAX_LOG_SIZE)) * rh
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).clamp(0.0, 1.0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of ``a`` (..., n, 4) with every box of ``b`` (..., m, 4): (..., n, m)."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-9)


def take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` (N, k) of ``x`` (N, n, ...) per image: (N, k, ...)."""
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    got = torch.gather(flat, 1, idx[..., None].expand(-1, -1, flat.shape[2]))
    return got.reshape(idx.shape[0], idx.shape[1], *x.shape[2:])


def fast_nms(boxes: torch.Tensor, threshold: float, earlier: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
    """Which of ``boxes`` (N, n, 4), sorted by score, survive fast NMS (1.0 kept, 0.0 dropped): (N, n).
    ``earlier``: the strict upper triangle (n, n) of ones ([i, j]: i scores above j); with ``classes`` (N, n),
    only boxes of the same class suppress each other. IoU > t is tested as inter · (1 + t) > t · (area_i + area_j):
    no division, so no divisor that an 8-bit graph could round to zero."""
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    over = wh[..., 0] * wh[..., 1] * (1.0 + threshold) - threshold * (area[:, :, None] + area[:, None, :])
    if classes is not None:
        over = over * (classes[:, :, None] == classes[:, None, :]).to(over.dtype)
    return ((over * earlier).amax(1) <= 0.0).to(boxes.dtype)


class Constants(nn.Module):
    """The index vectors and matrices the graph multiplies by, as buffers: built in the graph they would be
    iota ops, which the TFLite runtime does not have. Sizes not made up front (the training-only mask crops) are
    computed on the fly."""

    def __init__(self, *, earlier: tuple[int, ...], bins: tuple[int, ...], index: tuple[int, ...]):
        super().__init__()
        for n in earlier:
            self.register_buffer(f"earlier_{n}", _BUILD["earlier"](n), persistent=False)
        for n in bins:
            self.register_buffer(f"steps_{n}", _BUILD["steps"](n), persistent=False)
        for n in sorted(set(index)):
            self.register_buffer(f"index_{n}", _BUILD["index"](n), persistent=False)

    def get(self, kind: str, n: int) -> torch.Tensor:
        made = getattr(self, f"{kind}_{n}", None)
        return made if made is not None else _BUILD[kind](n).to(next(self.buffers()).device)


_BUILD = {
    "earlier": lambda n: torch.ones(n, n).triu(1),  # [i, j] = 1 where i < j
    "index": lambda n: torch.arange(n, dtype=torch.float32),
    # Sample positions across a RoI as fractions of its side: SAMPLING per bin, centred.
    "steps": lambda n: (torch.arange(n * SAMPLING, dtype=torch.float32) + 0.5) / (n * SAMPLING),
}


# --- RoIAlign as two matrix products ------------------------------------------------------------------------

def _axis_weights(lo: torch.Tensor, hi: torch.Tensor, bins: int, length: int, k: Constants) -> torch.Tensor:
    """Bilinear weights of ``bins`` bins between normalized ``lo`` and ``hi`` (each (B,)) over ``length``
    pixels, ``SAMPLING`` samples per bin averaged: (B, bins, length)."""
    at = (lo[:, None] + k.get("steps", bins)[None, :] * (hi - lo)[:, None]) * length - 0.5  # pixel units
    w = (1.0 - (at[:, :, None] - k.get("index", length)[None, None, :]).abs()).clamp(min=0.0)  # (B, bins*S, length)
    return w.reshape(-1, bins, SAMPLING, length).mean(2)


def roi_align(feature: torch.Tensor, boxes: torch.Tensor, size: int, k: Constants) -> torch.Tensor:
    """RoIAlign of ``boxes`` (N, R, 4 normalized) on ``feature`` (N, C, H, W): (N*R, C, size, size)."""
    n, c, h, w = feature.shape
    r = boxes.shape[1]
    flat = boxes.reshape(n * r, 4)
    wy = _axis_weights(flat[:, 1], flat[:, 3], size, h, k).reshape(n, r * size, h)
    wx = _axis_weights(flat[:, 0], flat[:, 2], size, w, k)  # (N*R, size, W)
    rows = torch.matmul(wy, feature.permute(0, 2, 1, 3).reshape(n, h, c * w))  # (N, R*size, C*W)
    rows = rows.reshape(n * r, size * c, w)
    out = torch.matmul(rows, wx.transpose(1, 2))  # (N*R, size*C, size)
    return out.reshape(n * r, size, c, size).permute(0, 2, 1, 3)


def pyramid_roi_align(features: list[torch.Tensor], boxes: torch.Tensor, size: int, k: Constants) -> torch.Tensor:
    """RoIAlign from the level the FPN rule picks for each box (level 3 + log2(sqrt(area) / 64 px), clamped):
    every level pooled, then a one-hot choice."""
    side = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])).clamp(min=1e-8).sqrt() * INPUT
    level = torch.floor(torch.log2(side / 64.0) + 1.0).clamp(0, len(features) - 1).reshape(-1, 1, 1, 1)
    out = 0
    for i, feature in enumerate(features):
        out = out + roi_align(feature, boxes, size, k) * (level == i).to(feature.dtype)
    return out


# --- the network ---------------------------------------------------------------------------------------------

class FPN(nn.Module):
    def __init__(self, channels: tuple[int, ...], width: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in channels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        top = self.lateral[-1](xs[-1])
        outs = [self.smooth[-1](top)]
        for i in range(len(xs) - 2, -1, -1):
            top = self.lateral[i](xs[i]) + F.interpolate(top, scale_factor=2.0, mode="nearest")
            outs.insert(0, self.smooth[i](top))
        return outs


class MaskRCNN(nn.Module):
    def __init__(self, num_classes: int = len(FACE_REGIONS), width: int = 64, head: int = 256):
        super().__init__()
        self.num_classes = num_classes
        feats = MobileNetV2(num_classes=1, width_mult=0.5).features
        # Stage ends at strides 8, 16 and 32 (indices into MobileNetV2's feature list).
        self.stage1, self.stage2, self.stage3 = feats[:7], feats[7:14], feats[14:18]
        self.fpn = FPN((16, 48, 160), width)
        a = len(ANCHOR_SIZES[0]) * len(ASPECTS)
        self.rpn_conv = nn.Conv2d(width, width, 3, padding=1)
        self.rpn_logits = nn.Conv2d(width, a, 1)
        self.rpn_deltas = nn.Conv2d(width, 4 * a, 1)
        self.box_head = nn.Sequential(nn.Flatten(), nn.Linear(width * BOX_POOL * BOX_POOL, head), nn.ReLU(),
                                      nn.Linear(head, head), nn.ReLU())
        self.cls_score = nn.Linear(head, num_classes + 1)  # class 0: background
        self.box_deltas = nn.Linear(head, 4 * (num_classes + 1))
        self.mask_head = nn.Sequential(ConvBNAct(width, width, 3, act=nn.ReLU), ConvBNAct(width, width, 3, act=nn.ReLU),
                                       nn.ConvTranspose2d(width, width, 2, stride=2), nn.ReLU(),
                                       nn.Conv2d(width, num_classes, 1))
        self.register_buffer("anchors", anchors(), persistent=False)
        self.k = Constants(earlier=(PRE_NMS, PROPOSALS), bins=(BOX_POOL, MASK_POOL),
                           index=(num_classes, *(INPUT // s for s in STRIDES)))

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        return self.fpn([c3, c4, self.stage3(c4)])

    def rpn(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Objectness logits (N, A) and box deltas (N, A, 4), in ``anchors`` order."""
        logits, deltas = [], []
        for f in features:
            t = F.relu(self.rpn_conv(f))
            n = t.shape[0]
            logits.append(self.rpn_logits(t).permute(0, 2, 3, 1).reshape(n, -1))
            deltas.append(self.rpn_deltas(t).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return torch.cat(logits, 1), torch.cat(deltas, 1)

    def proposals(self, logits: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """The top ``PROPOSALS`` boxes after fast NMS, best first (N, PROPOSALS, 4)."""
        scores, idx = torch.topk(logits, PRE_NMS, dim=1)
        boxes = decode(take(deltas, idx), self.anchors[idx], weights=(1.0, 1.0, 1.0, 1.0))
        keep = fast_nms(boxes, RPN_NMS, self.k.get("earlier", PRE_NMS))
        _, order = torch.topk(torch.sigmoid(scores) * keep, PROPOSALS, dim=1)
        return take(boxes, order)

    def box_predictions(self, features: list[torch.Tensor], rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (N, R, classes + 1) and class-specific deltas (N, R, classes + 1, 4) of ``rois``."""
        n, r = rois.shape[:2]
        h = self.box_head(pyramid_roi_align(features, rois, BOX_POOL, self.k))
        return self.cls_score(h).reshape(n, r, -1), self.box_deltas(h).reshape(n, r, -1, 4)

    def mask_logits(self, features: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        """Per-class mask logits of ``boxes``: (N, K, classes, MASK, MASK)."""
        n, k = boxes.shape[:2]
        return self.mask_head(pyramid_roi_align(features, boxes, MASK_POOL, self.k)).reshape(n, k, self.num_classes, MASK, MASK)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.pyramid(x)
        logits, deltas = self.rpn(features)
        return self.detect(features, self.proposals(logits, deltas))

    def training_outputs(self, x: torch.Tensor) -> dict:
        """What ``detection_loss`` learns from: the pyramid and the proposal network's raw outputs."""
        features = self.pyramid(x)
        logits, deltas = self.rpn(features)
        return {"features": features, "rpn_logits": logits, "rpn_deltas": deltas}

    def detect(self, features: list[torch.Tensor], rois: torch.Tensor) -> dict[str, torch.Tensor]:
        """The RoI heads: each RoI's best class and its box, class-aware fast NMS, the top ``DETECTIONS``, their masks."""
        dtype = rois.dtype
        cls_logits, box_deltas = self.box_predictions(features, rois)
        probs = torch.softmax(cls_logits, -1)[..., 1:]
        score, cls = probs.max(-1)  # each RoI's best class
        onehot = _one_hot(cls, self.k.get("index", self.num_classes), dtype)  # (N, R, classes)
        chosen = (box_deltas[..., 1:, :] * onehot[..., None]).sum(2)
        boxes = decode(chosen, rois)
        _, order = torch.topk(score, PROPOSALS, dim=1)  # by score, for NMS
        boxes, score, cls = take(boxes, order), take(score, order), take(cls, order)
        keep = fast_nms(boxes, DET_NMS, self.k.get("earlier", PROPOSALS), cls)
        score, top = torch.topk(score * keep, DETECTIONS, dim=1)
        boxes, cls = take(boxes, top), take(cls, top)
        valid = (score >= SCORE_THRESHOLD).to(dtype)
        masks = torch.sigmoid(self.mask_logits(features, boxes))
        onehot = _one_hot(cls, self.k.get("index", self.num_classes), dtype)
        masks = (masks * onehot[..., None, None]).sum(2)
        return {"boxes": boxes, "scores": score * valid, "classes": cls.to(dtype), "masks": masks,
                "count": valid.sum(1, keepdim=True)}

    # --- training --------------------------------------------------------------------------------------------

    def detection_loss(self, out: dict, targets: dict) -> torch.Tensor:
        """RPN (objectness + box), box head (class + box) and mask losses, as Mask R-CNN trains them, on
        ``targets`` {"boxes" (N, G, 4), "classes" (N, G) with -1 for padding, "masks" (N, G, H, W)}."""
        features, logits, deltas = out["features"], out["rpn_logits"], out["rpn_deltas"]
        gt_boxes, gt_cls, gt_masks = targets["boxes"], targets["classes"], targets["masks"].float()
        valid = gt_cls >= 0
        n = logits.shape[0]
        # RPN: positives IoU >= 0.7 or an object's best anchor, negatives < 0.3; 256 anchors, <= half positive.
        iou = box_iou(self.anchors.expand(n, -1, -1), gt_boxes) * valid[:, None, :]
        best, match = iou.max(2)
        label = torch.full_like(best, -1.0)
        label[best < 0.3] = 0.0
        label[best >= 0.7] = 1.0
        per_object = iou.amax(1, keepdim=True)
        label[((iou == per_object) & (per_object > 0) & valid[:, None, :]).any(2)] = 1.0
        label = _sample(label, 256, 0.5)
        matched = take(gt_boxes, match)
        pos = label == 1
        rpn_cls = F.binary_cross_entropy_with_logits(logits[label >= 0], label[label >= 0])
        target = encode(matched, self.anchors.expand(n, -1, -1), weights=(1.0, 1.0, 1.0, 1.0))
        rpn_box = F.smooth_l1_loss(deltas[pos], target[pos], beta=1 / 9, reduction="sum") / max(int((label >= 0).sum()), 1)

        # Box head: proposals plus the true boxes; foreground at IoU >= 0.5.
        with torch.no_grad():
            rois = torch.cat([self.proposals(logits.detach(), deltas.detach()), gt_boxes], 1)
            iou = box_iou(rois, gt_boxes) * valid[:, None, :]
            best, match = iou.max(2)
            roi_cls = torch.where(best >= 0.5, take(gt_cls, match) + 1, torch.zeros_like(match))
            roi_cls = torch.where(valid.any(1, keepdim=True), roi_cls, torch.zeros_like(roi_cls))
        cls_logits, box_deltas = self.box_predictions(features, rois)
        cls_loss = F.cross_entropy(cls_logits.reshape(-1, cls_logits.shape[-1]), roi_cls.reshape(-1))
        fg = roi_cls > 0
        chosen = box_deltas[fg, roi_cls[fg]]
        box_loss = F.smooth_l1_loss(chosen, encode(take(gt_boxes, match)[fg], rois[fg]), beta=1.0,
                                    reduction="sum") / roi_cls.numel()

        # Mask head on the foreground RoIs: the true mask cropped to the RoI, at MASK x MASK.
        if not bool(fg.any()):
            return rpn_cls + rpn_box + cls_loss + box_loss
        pooled = pyramid_roi_align(features, rois, MASK_POOL, self.k)[fg.reshape(-1)]
        mask_logits = self.mask_head(pooled)  # (F, classes, MASK, MASK), foreground RoIs only
        mask_logits = mask_logits[torch.arange(len(mask_logits)), roi_cls[fg] - 1]
        with torch.no_grad():
            image = torch.arange(n, device=fg.device)[:, None].expand_as(fg)[fg]
            truth = gt_masks[image, match[fg]]  # (F, H, W): each RoI's matched object's mask
            crops = roi_align(truth[:, None], rois[fg][:, None], MASK, self.k)[:, 0]
            crops = (crops >= 0.5).float()
        mask_loss = F.binary_cross_entropy_with_logits(mask_logits, crops)
        return rpn_cls + rpn_box + cls_loss + box_loss + mask_loss


def _one_hot(index: torch.Tensor, classes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One-hot as a comparison with the class indices (``F.one_hot`` asserts its range, an op no converter lowers)."""
    return (index[..., None].to(classes.dtype) == classes).to(dtype)


def _sample(label: torch.Tensor, total: int, positive_fraction: float) -> torch.Tensor:
    """At most ``total`` labelled anchors per image, at most ``positive_fraction`` of them positive; the rest -1."""
    out = torch.full_like(label, -1.0)
    for i in range(label.shape[0]):
        pos, neg = torch.nonzero(label[i] == 1).flatten(), torch.nonzero(label[i] == 0).flatten()
        pos = pos[torch.randperm(len(pos))[:int(total * positive_fraction)]]
        neg = neg[torch.randperm(len(neg))[:total - len(pos)]]
        out[i, pos], out[i, neg] = 1.0, 0.0
    return out


def _skin_regions_maskrcnn() -> MaskRCNN:
    return MaskRCNN()


register_model(ModelSpec(
    name="skin_regions_maskrcnn", task="instance_segmentation",
    architecture="Mask R-CNN: MobileNetV2 (width 0.5) + FPN, static proposals, fast NMS, matrix RoIAlign",
    factory=_skin_regions_maskrcnn,
    description="Facial skin regions (forehead, cheeks, nose, chin) as instances: boxes, scores, classes, masks.",
    input_size=(INPUT, INPUT), output_size=(INPUT // 2, INPUT // 2), labels=FACE_REGIONS,
    outputs=(OutputSpec("boxes", "[x1, y1, x2, y2] per detection, normalized to the input", "[0, 1]", (DETECTIONS, 4)),
             OutputSpec("scores", "detection confidence, 0 past count", "[0, 1]", (DETECTIONS,)),
             OutputSpec("classes", "index into the labels, as a float", "", (DETECTIONS,)),
             OutputSpec("masks", "mask probability over each box (toolkit.glue.paste_masks), channel-last like the input",
                        "[0, 1]", (DETECTIONS, MASK, MASK)),
             OutputSpec("count", "detections at or above the score threshold, leading the list", "", (1,))),
    tolerances=INSTANCE_TOLERANCES,
    training=TrainingConfig(n_train=1200, n_val=200, epochs=6, batch_size=8, lr=2e-3),
    mean=IMAGENET_MEAN, std=IMAGENET_STD, metric="mask_ap",
    # Box arithmetic, fast NMS and RoIAlign's sampling weights cannot live on an 8-bit grid (a suppression test
    # near 0, pixel positions 0-40 at 1/256 of their range): full-integer targets quantize the layers only.
    extra={"float_postprocess": True},
))
