"""Host latency: warm-up, repeats, p50/p90 — never a single run."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def measure_latency(fn: Callable[[np.ndarray], object], x: np.ndarray, *, warmup: int, repeats: int) -> dict:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.array(times)
    return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p90_ms": round(float(np.percentile(t, 90)), 3),
            "mean_ms": round(float(t.mean()), 3), "repeats": repeats, "warmup": warmup}
