"""Output numerics, in float64 (the task metrics are each task's own: ``toolkit.tasks``)."""

from __future__ import annotations

import numpy as np


def numerics(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """How far ``out`` is from ``ref``: max/mean absolute error, mean signed error, cosine, SQNR (dB), and the
    reference's range (max - min over every value given: the evaluation set) with the max abs error relative
    to it. A constant reference is measured against its magnitude instead (or 1 where it is all zeros). An
    integer reference (class indices, counts) is measured in quantization steps: its scale is one step, 1, so
    ``max_rel_error`` is the max abs error in steps and ``quantization_step`` says so."""
    r = np.asarray(ref).astype(np.float64).ravel()
    o = np.asarray(out).astype(np.float64).ravel()
    if r.shape != o.shape:
        raise ValueError(f"output size {o.size} differs from the reference's {r.size}")
    d = o - r
    nr, no = np.linalg.norm(r), np.linalg.norm(o)
    cos = float(r @ o / (nr * no)) if nr > 0 and no > 0 else float(nr == no)
    noise = float(d @ d)
    signal = float(r @ r)
    # An all-zero reference has no signal: any noise is -inf dB (without log10's divide-by-zero warning).
    sqnr = float("inf") if noise == 0 else float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")
    max_abs = float(np.max(np.abs(d))) if d.size else 0.0
    span = float(r.max() - r.min()) if r.size else 0.0
    integer = np.issubdtype(np.asarray(ref).dtype, np.integer)
    scale = 1.0 if integer else span or (float(np.max(np.abs(r))) if r.size else 0.0) or 1.0
    return {
        "max_abs_error": max_abs,
        "reference_range": span,
        "max_rel_error": max_abs / scale,
        **({"quantization_step": 1.0} if integer else {}),
        "mean_abs_error": float(np.mean(np.abs(d))) if d.size else 0.0,
        "mean_signed_error": float(np.mean(d)) if d.size else 0.0,
        "cosine": cos,
        "sqnr_db": sqnr,
    }

