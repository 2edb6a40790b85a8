"""Output numerics, in float64, and the task metrics through the task (``toolkit.tasks``)."""

from __future__ import annotations

import numpy as np

from toolkit.tasks import get_task


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
    """The task's metrics of raw model outputs (as the task reads them) against ground truth."""
    return get_task(task).quick_metrics(outputs, targets, num_classes=num_classes, output_names=output_names)


def agreement(task: str, ref: np.ndarray, out: np.ndarray) -> float | None:
    """Fraction of the task's decisions (top-1, per-pixel argmax) that match float; None where it makes none."""
    return get_task(task).agreement(ref, out)
