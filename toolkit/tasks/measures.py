"""The arithmetic task metrics share, in float64: confusion counts, F1, IoU/Dice, PSNR, SSIM, and the safe
ratio every bootstrapped metric is built from."""

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


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two H x W x C images in [0, 1]: Gaussian window (σ 1.5, 11 × 11), mean over channels."""
    import cv2

    c1, c2 = 0.01**2, 0.03**2
    a, b = a.astype(np.float64), b.astype(np.float64)
    blur = lambda v: cv2.GaussianBlur(v, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def onehot(index: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((len(index), size))
    out[np.arange(len(index)), index] = 1.0
    return out


def ratio(a, b):
    """``a / b`` where ``b > 0``, NaN elsewhere (an empty class or subgroup has no value, not zero)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)
