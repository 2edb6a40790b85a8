"""Host latency: warm-up, repeats, p50/p90 — never a single run — and peak memory; the host's roofline."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

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


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak resident memory while a block runs, above what the process held before it.

    Linux: the kernel's high-water mark (VmHWM), reset at entry through /proc/self/clear_refs, so each
    block is measured on its own. Elsewhere the process-wide maximum (ru_maxrss), which cannot be reset:
    ``method`` says which, and only the first block of a process is then exact."""

    def __enter__(self) -> "PeakMemory":
        self.before_kb = _status_kb("VmRSS")
        self.method = "VmHWM (reset per artifact)"
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.method = "ru_maxrss (process-wide, not reset)"
            scale = 1 if sys.platform != "darwin" else 1 / 1024  # macOS reports bytes
            self.before_kb = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)
        return self

    def __exit__(self, *exc) -> None:
        if self.method.startswith("VmHWM"):
            peak = _status_kb("VmHWM") or 0
        else:
            scale = 1 if sys.platform != "darwin" else 1 / 1024
            peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)
        self.peak_mb = round(max(peak - (self.before_kb or 0), 0) / 1024, 1)


def host_roofline(threads: int) -> dict:
    """This machine's fp32 compute peak (a large matrix product) and memory bandwidth (a large copy),
    measured now with ``threads`` threads, for a lower bound on any artifact's latency."""
    import torch

    torch.set_num_threads(threads)
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = []
    for _ in range(10):
        t0 = time.perf_counter()
        a @ b
        t.append(time.perf_counter() - t0)
    macs_per_s = n**3 / min(t)
    src = np.ones(32 * 1024 * 1024 // 4, np.float32)  # 32 MiB: past the last-level cache
    dst = np.empty_like(src)
    bt = []
    for _ in range(10):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        bt.append(time.perf_counter() - t0)
    return {"fp32_gmacs": round(macs_per_s / 1e9, 1), "bandwidth_gb_s": round(2 * src.nbytes / min(bt) / 1e9, 1),
            "threads": threads, "method": "best of 10: 1024² fp32 matmul (torch); 32 MiB copy, read + write (numpy)"}


def roofline_bound_ms(macs: int, weight_bytes: int, roof: dict) -> float:
    """The least time the host could take: every MAC at its fp32 peak, or every stored weight read once at its
    bandwidth (activations may stay in cache, so they do not count toward a lower bound)."""
    return max(macs / (roof["fp32_gmacs"] * 1e9), weight_bytes / (roof["bandwidth_gb_s"] * 1e9)) * 1e3
