"""Semantic segmentation: one per-pixel class-score output (N, classes, H, W; channel-last in the artifact
like the input); mIoU, Dice, pixel accuracy, per-class area error, per-pixel agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import DataError
from toolkit.registry import DENSE_DECISION_TOLERANCES
from toolkit.tasks import measures
from toolkit.tasks.base import Task


class Segmentation(Task):
    name = "segmentation"
    headline = "miou"
    agreement_label = "pixel agreement with float"
    lower_is_better = ("area_error",)

    reads_as = "per-pixel class scores"
    default_tolerances = DENSE_DECISION_TOLERANCES
    default_output = "logits"
    needs_labels = True

    def expected_shape(self, spec) -> tuple[int | None, ...]:
        return (len(spec.labels) or None, None, None)

    def synthetic_problem(self, spec) -> str | None:
        from toolkit.data.synthetic import SEGMENTATION_CLASSES

        if len(spec.labels) != 2 and tuple(spec.labels) != SEGMENTATION_CLASSES:
            return (f"the synthetic images are annotated with a skin mask (2 labels) or the regions "
                    f"{', '.join(SEGMENTATION_CLASSES)}, not {', '.join(spec.labels)}")
        if spec.output_size != spec.input_size:
            return f"the synthetic masks are the input's size {list(spec.input_size)}, not {list(spec.output_size or ())}"
        return None

    def synthetic_target(self, sample, spec) -> np.ndarray:
        """Two labels: the skin mask (non-skin, skin); otherwise the regions of ``SEGMENTATION_CLASSES``."""
        return sample.skin_mask if spec.extra.get("target") == "skin_mask" or len(spec.labels) == 2 else sample.segmentation

    def folder_target(self, row: dict, *, spec, folder: Path, where: str) -> np.ndarray:
        import cv2

        from toolkit.data.image import read_image

        mask_path = folder / "masks" / (Path(row["file"]).stem + ".png")
        fix = "add masks/<image stem>.png with class indices"
        if not mask_path.exists():
            raise DataError(f"missing or unreadable mask {mask_path}", fix=fix)
        mask = read_image(mask_path, flags=cv2.IMREAD_GRAYSCALE, what="mask", fix=fix)
        oh, ow = spec.output_size
        return cv2.resize(mask, (ow, oh), interpolation=cv2.INTER_NEAREST)

    def folder_write(self, data, i: int, *, spec, folder: Path, name: str):
        import cv2

        (folder / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(folder / "masks" / name), data.targets[i].astype(np.uint8))
        return data.inputs[i], []

    def loss(self, spec, model):
        import torch
        import torch.nn.functional as F

        def seg(out, y):
            # Class weights counter the background's dominance (pores and wrinkles are thin).
            counts = torch.bincount(y.flatten(), minlength=out.shape[1]).float()
            w = (counts.sum() / (counts + 1.0)) ** 0.5
            return F.cross_entropy(out, y, weight=w / w.mean())
        return seg

    def targets_from(self, ref: np.ndarray) -> np.ndarray:
        return ref.argmax(1).astype(np.uint8)

    def targets_tensor(self, targets: np.ndarray):
        import torch

        return torch.from_numpy(targets.astype(np.int64))

    def quick_metrics(self, out, targets, *, num_classes=0, output_names=()) -> dict[str, float]:
        pred = out.argmax(1)
        return {"miou": measures.miou(pred, targets, num_classes),
                "dice_mean": float(np.nanmean(measures.dice_per_class(pred, targets, num_classes))),
                "pixel_accuracy": measures.accuracy(pred, targets)}

    def agreement(self, ref, out) -> float:
        return float(np.mean(ref.argmax(1) == out.argmax(1)))

    def per_image(self, out, targets, ref, *, labels=(), probabilities=False) -> dict[str, np.ndarray]:
        n, c = len(out), out.shape[1]
        pred, fpred = out.argmax(1).reshape(n, -1), ref.argmax(1).reshape(n, -1)
        t = targets.reshape(n, -1).astype(np.int64)
        px = t.shape[1]
        idx = np.arange(n)[:, None] * c * c + t * c + pred
        cms = np.bincount(idx.ravel(), minlength=n * c * c).reshape(n, c * c).astype(np.float64)
        cm3 = cms.reshape(n, c, c)
        area_err = np.abs(cm3.sum(1) - cm3.sum(2)) / px * 100.0  # predicted minus true pixels per class
        return {"cm": cms, "area_err": area_err, "agree": np.mean(pred == fpred, axis=1)[:, None], "one": np.ones((n, 1))}

    def aggregate(self, sums, *, labels=(), output_names=()) -> dict[str, np.ndarray]:
        div = measures.ratio
        n = sums["one"][:, 0]
        c = int(round(np.sqrt(sums["cm"].shape[1])))
        cm = sums["cm"].reshape(-1, c, c)
        tp = np.einsum("rii->ri", cm)
        denom = cm.sum(1) + cm.sum(2)
        iou, dice = div(tp, denom - tp), div(2 * tp, denom)
        names = labels or tuple(str(i) for i in range(c))
        with np.errstate(invalid="ignore"):
            out = {"miou": np.nanmean(iou, axis=1), "dice_mean": np.nanmean(dice, axis=1),
                   "pixel_accuracy": div(tp.sum(1), cm.sum((1, 2))), "agreement": div(sums["agree"][:, 0], n)}
        for i, name in enumerate(names):
            out[f"dice.{name}"], out[f"iou.{name}"] = dice[:, i], iou[:, i]
            out[f"area_error.{name}"] = div(sums["area_err"][:, i], n)
        return out
