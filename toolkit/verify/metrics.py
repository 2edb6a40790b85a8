"""Task metrics and output numerics, in float64."""

from __future__ import annotations

import numpy as np


def confusion(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(num_classes * target.ravel().astype(np.int64) + pred.ravel().astype(np.int64),
                       minlength=num_classes**2).reshape(num_classes, num_classes)


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(pred == target))


def macro_f1(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    """Mean F1 over the classes present in target or prediction (absent from both: not counted)."""
    cm = confusion(pred, target, num_classes).astype(np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1)
    present = denom > 0
    return float(np.mean(2 * tp[present] / denom[present]))


def iou_per_class(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """IoU per class; NaN for a class absent from both prediction and target."""
    cm = confusion(pred, target, num_classes).astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def dice_per_class(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    cm = confusion(pred, target, num_classes).astype(np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)


def miou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    return float(np.nanmean(iou_per_class(pred, target, num_classes)))


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(pred.astype(np.float64) - target.astype(np.float64))))


def psnr(pred: np.ndarray, target: np.ndarray, *, peak: float = 1.0) -> float:
    """Mean over images of PSNR in dB; inputs N x ... in the same units as ``peak``."""
    d = (pred.astype(np.float64) - target.astype(np.float64)).reshape(len(pred), -1)
    mse = np.maximum(np.mean(d * d, axis=1), 1e-12)
    return float(np.mean(10.0 * np.log10(peak * peak / mse)))


def numerics(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """How far ``out`` is from ``ref``: max/mean absolute error, mean signed error, cosine, SQNR (dB)."""
    r = ref.astype(np.float64).ravel()
    o = out.astype(np.float64).ravel()
    if r.shape != o.shape:
        raise ValueError(f"output size {o.size} differs from the reference's {r.size}")
    d = o - r
    nr, no = np.linalg.norm(r), np.linalg.norm(o)
    cos = float(r @ o / (nr * no)) if nr > 0 and no > 0 else float(nr == no)
    noise = float(d @ d)
    sqnr = float(10 * np.log10((r @ r) / noise)) if noise > 0 else float("inf")
    return {
        "max_abs_error": float(np.max(np.abs(d))) if d.size else 0.0,
        "mean_abs_error": float(np.mean(np.abs(d))) if d.size else 0.0,
        "mean_signed_error": float(np.mean(d)) if d.size else 0.0,
        "cosine": cos,
        "sqnr_db": sqnr,
    }


def task_metric(task: str, outputs: np.ndarray, targets: np.ndarray, num_classes: int = 0,
                output_names: tuple[str, ...] = ()) -> dict[str, float]:
    """The task's metrics of raw model outputs against ground truth."""
    if task == "classification":
        pred = outputs.argmax(-1)
        return {"accuracy": accuracy(pred, targets), "macro_f1": macro_f1(pred, targets, num_classes)}
    if task == "regression":
        per = np.mean(np.abs(outputs.astype(np.float64) - targets), axis=0)
        names = output_names or tuple(str(i) for i in range(len(per)))
        return {"mae": float(per.mean()), **{f"mae_{n}": float(v) for n, v in zip(names, per)}}
    if task == "segmentation":
        pred = outputs.argmax(1)
        return {"miou": miou(pred, targets, num_classes),
                "dice_mean": float(np.nanmean(dice_per_class(pred, targets, num_classes))),
                "pixel_accuracy": accuracy(pred, targets)}
    if task == "super_resolution":
        hr = targets.astype(np.float64) / 255.0  # N x H x W x 3
        return {"psnr": psnr(np.transpose(outputs, (0, 2, 3, 1)), hr)}
    raise ValueError(f"unknown task {task!r}")


def agreement(task: str, ref: np.ndarray, out: np.ndarray) -> float | None:
    """Fraction of top-1 (classification) or per-pixel argmax (segmentation) decisions that match float."""
    if task == "classification":
        return float(np.mean(ref.argmax(-1) == out.argmax(-1)))
    if task == "segmentation":
        return float(np.mean(ref.argmax(1) == out.argmax(1)))
    return None
