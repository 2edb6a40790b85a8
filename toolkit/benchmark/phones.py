"""Real phones, when one is attached. Each runner first says plainly whether it can run, and why not.

Android: ``adb`` pushes the TFLite file and TensorFlow Lite's ``benchmark_model`` binary (``--benchmark-model
PATH``, built for the phone's ABI, or already at /data/local/tmp/benchmark_model) and runs it on the CPU
(XNNPACK) or the GPU delegate; its own timing lines are parsed. Nothing but the model file goes to the
phone, over USB; nothing leaves the machine.

iOS: phones are reached through a macOS host with Xcode (``xcrun devicectl``). Timing on the phone needs an
app or Xcode's Core ML performance report; skinkit detects the phone, says so, and on macOS measures the
same .mlpackage with ``MLModel.predict`` on the Mac itself, labelled as the Mac.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REMOTE_DIR = "/data/local/tmp/skinkit"
REMOTE_BENCHMARK = "/data/local/tmp/benchmark_model"


def _run(cmd: list[str], timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def android_devices(adb: str | None = None) -> dict:
    """{"available": bool, "devices": [serial…], "reason": str}."""
    adb = adb or shutil.which("adb")
    if adb is None:
        return {"available": False, "devices": [], "reason": "adb is not on PATH (install Android platform-tools to benchmark on a phone)"}
    try:
        proc = _run([adb, "devices"], timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"available": False, "devices": [], "reason": f"adb did not answer: {exc}"}
    serials = [line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip().endswith("\tdevice")]
    unauthorized = [line.split()[0] for line in proc.stdout.splitlines()[1:] if "unauthorized" in line]
    if serials:
        return {"available": True, "devices": serials, "reason": ""}
    why = f"phone(s) {', '.join(unauthorized)} attached but not authorized (accept the USB debugging prompt)" if unauthorized \
        else "no Android device attached (`adb devices` lists none)"
    return {"available": False, "devices": [], "reason": why}


_TIMINGS = re.compile(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
                      r"Warmup \(avg\): ([\d.]+), Inference \(avg\): ([\d.]+)")
_COUNT = re.compile(r"count=(\d+) first=([\d.]+) curr=([\d.]+) min=([\d.]+) max=([\d.]+) avg=([\d.]+) std=([\d.]+)")
_MEMORY = re.compile(r"Memory footprint delta from the start of the tool \(MB\): init=([\d.]+) overall=([\d.]+)")


def parse_benchmark_model(text: str) -> dict:
    """The figures of a ``benchmark_model`` run (the last measurement block; warm-up blocks come first)."""
    timings = _TIMINGS.findall(text)
    counts = _COUNT.findall(text)
    if not timings or not counts:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise RuntimeError(f"benchmark_model printed no timings; its last lines:\n{tail}")
    init, first, warm, avg = (float(v) for v in timings[-1])
    n, _first, _curr, lo, hi, mean, std = counts[-1]
    out = {"init_ms": init / 1e3, "first_ms": first / 1e3, "mean_ms": float(mean) / 1e3, "min_ms": float(lo) / 1e3,
           "max_ms": float(hi) / 1e3, "std_ms": float(std) / 1e3, "runs": int(n), "source": "benchmark_model"}
    mem = _MEMORY.findall(text)
    if mem:
        out["memory_overall_mb"] = float(mem[-1][1])
    return out


def run_android(artifact: Path, *, serial: str, delegate: str = "xnnpack", threads: int = 4,
                benchmark_binary: Path | None = None, adb: str | None = None, runs: int = 50) -> dict:
    """Push ``artifact`` and time it on the phone with ``benchmark_model``; delegate: xnnpack | gpu."""
    adb = adb or shutil.which("adb") or "adb"
    base = [adb, "-s", serial]
    remote = f"{REMOTE_DIR}/{artifact.name}"
    _run(base + ["shell", "mkdir", "-p", REMOTE_DIR])
    if _run(base + ["push", str(artifact), remote], timeout=300).returncode != 0:
        raise RuntimeError(f"adb push of {artifact.name} to {serial} failed")
    binary = REMOTE_BENCHMARK
    if benchmark_binary is not None:
        if _run(base + ["push", str(benchmark_binary), binary], timeout=300).returncode != 0:
            raise RuntimeError(f"adb push of {benchmark_binary} failed")
        _run(base + ["shell", "chmod", "755", binary])
    elif _run(base + ["shell", "ls", binary]).returncode != 0:
        raise RuntimeError(f"{binary} is not on the phone: pass --benchmark-model with TFLite's benchmark_model for its ABI")
    flags = [f"--graph={remote}", f"--num_threads={threads}", f"--num_runs={runs}", "--warmup_runs=5"]
    flags += ["--use_gpu=true"] if delegate == "gpu" else ["--use_xnnpack=true"]
    proc = _run(base + ["shell", binary, *flags], timeout=600)
    result = parse_benchmark_model(proc.stdout + proc.stderr)
    result.update(device=serial, delegate=delegate, threads=threads, measured=True)
    return result


def ios_devices() -> dict:
    """{"available": bool, "devices": [name…], "reason": str}."""
    if sys.platform != "darwin":
        return {"available": False, "devices": [], "reason": "iPhones are reached through a macOS host with Xcode; this machine is not macOS"}
    xcrun = shutil.which("xcrun")
    if xcrun is None:
        return {"available": False, "devices": [], "reason": "xcrun not found: install Xcode's command-line tools"}
    try:
        proc = _run([xcrun, "devicectl", "list", "devices", "--json-output", "/dev/stdout"], timeout=30)
        data = json.loads(proc.stdout[proc.stdout.find("{"):] or "{}")
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return {"available": False, "devices": [], "reason": f"xcrun devicectl did not answer: {exc}"}
    phones = [d.get("deviceProperties", {}).get("name", "?") for d in data.get("result", {}).get("devices", [])
              if d.get("hardwareProperties", {}).get("platform") == "iOS"]
    if not phones:
        return {"available": False, "devices": [], "reason": "no iPhone attached (`xcrun devicectl list devices` lists none)"}
    return {"available": True, "devices": phones,
            "reason": "timing on the phone needs an app or Xcode's Core ML performance report (open the .mlpackage in Xcode, "
                      "Performance tab); skinkit measures the .mlpackage on this Mac instead"}


def status() -> dict:
    """What phones this machine can reach now."""
    return {"android": android_devices(), "ios": ios_devices()}
