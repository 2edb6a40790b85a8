"""Host latency: warm-up, repeats, p10/p50/p90 and the spread — never a single run — and peak memory; the
host's roofline. A measurement whose spread or machine load says it cannot be trusted says so."""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# A timing is flagged noisy when its runs spread more than this (coefficient of variation, std / mean) or when
# more processes wanted the CPUs than there are (1-minute load average over the logical CPU count).
NOISY_CV = 0.15
NOISY_LOAD = 1.0
# The fewest timed runs a time-budgeted measurement makes.
MIN_REPEATS = 3


def measure_latency(fn: Callable[[np.ndarray], object], x: np.ndarray, *, warmup: int, repeats: int,
                    max_seconds: float | None = None, min_repeats: int = MIN_REPEATS) -> dict:
    """``warmup`` untimed runs, then ``repeats`` timed ones. ``max_seconds``: a time budget for the whole
    measurement, so that a slow runtime (Core AI's Linux CPU runtime: about a second a run) is not run 23 times
    over: warm-up stops once it has taken a fifth of the budget (after one run at least), and the timed runs stop at the budget but
    never before ``min_repeats`` (the percentiles need a few runs). The record says how many ran, and why fewer."""
    start = time.perf_counter()
    done_warmup = 0
    for _ in range(warmup):
        fn(x)
        done_warmup += 1
        if max_seconds is not None and time.perf_counter() - start > max_seconds / 5:  # warm-up: a fifth of the budget
            break
    budget_start, times = time.perf_counter(), []
    for i in range(repeats):
        if i >= min_repeats and max_seconds is not None and time.perf_counter() - budget_start > max_seconds:
            break
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
    out = {**latency_summary(np.array(times)), "repeats": len(times), "warmup": done_warmup}
    if len(times) < repeats or done_warmup < warmup:
        out["time_budget"] = (f"{done_warmup} of {warmup} warm-up and {len(times)} of {repeats} timed runs: "
                              f"the {max_seconds:g} s budget (benchmark.max_seconds) was spent")
    return out


def latency_summary(t: np.ndarray, load: float | None = None) -> dict:
    """p10 / p50 / p90 / mean of run times ``t`` (ms), their coefficient of variation, the machine's load per CPU
    (``load``: measured now unless given) and, when either says the figure cannot be trusted, ``noisy`` with why."""
    import os

    p10, p50, p90 = (float(np.percentile(t, q)) for q in (10, 50, 90))
    cv = float(t.std() / t.mean()) if len(t) > 1 and t.mean() > 0 else 0.0
    if load is None:
        try:
            load = os.getloadavg()[0] / (os.cpu_count() or 1)
        except OSError:  # no load average on this platform
            load = None
    why = []
    if cv > NOISY_CV:
        why.append(f"runs vary by {cv:.0%} (coefficient of variation > {NOISY_CV:.0%})")
    if load is not None and load > NOISY_LOAD:
        why.append(f"the machine is busy (load {load:.2f} per CPU > {NOISY_LOAD:.1f})")
    out = {"p10_ms": round(p10, 3), "p50_ms": round(p50, 3), "p90_ms": round(p90, 3), "mean_ms": round(float(t.mean()), 3),
           "cv": round(cv, 3), "load_per_cpu": None if load is None else round(load, 2)}
    if why:
        out["noisy"] = "; ".join(why) + ": compare ratios measured side by side, or re-run on an idle machine"
    return out


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
    roof = {"fp32_gmacs": round(macs_per_s / 1e9, 1), "bandwidth_gb_s": round(2 * src.nbytes / min(bt) / 1e9, 1),
            "threads": threads, "method": "best of 10: 1024² fp32 matmul (torch); 32 MiB copy, read + write (numpy)"}
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if load > 1.0:  # other work held the cores: the peak is understated, so the bound may exceed real timings
        roof["noisy"] = f"measured at a load of {load:.1f} per CPU: the peak is understated and the bound too high"
    return roof


def roofline_bound_ms(macs: int, weight_bytes: int, roof: dict) -> float:
    """The least time the host could take: every MAC at its fp32 peak, or every stored weight read once at its
    bandwidth (activations may stay in cache, so they do not count toward a lower bound)."""
    return max(macs / (roof["fp32_gmacs"] * 1e9), weight_bytes / (roof["bandwidth_gb_s"] * 1e9)) * 1e3
