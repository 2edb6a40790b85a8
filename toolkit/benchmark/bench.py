"""``skinkit bench BUNDLE``: what each artifact costs and how fast it runs, measured where it can be and
estimated where it cannot, every figure labelled as one or the other.

1. Host, measured side by side in one run: the float PyTorch model (the reference every ratio divides by),
   each artifact on its runtime (TFLite with XNNPACK, ONNX Runtime; Core ML on macOS) at each thread count,
   and — when the bundle has an ONNX model — an ONNX Runtime int8 twin quantized here from it (QDQ, per-channel,
   calibrated on the synthetic calibration split), so TFLite int8 can be compared with ORT int8. p50/p90 over
   repeats after warm-up, peak memory, and the host roofline's lower bound.
2. Cost per artifact from its graph (MACs, parameters, weight and activation bytes).
3. Estimated latency per device profile (``toolkit.benchmark.devices``).
4. Attached phones (``toolkit.benchmark.phones``), when asked for and present.
5. The artifact to ship per device — host runtime and thread count, profile, phone — and the artifacts slower than a
   more precise sibling (``toolkit.benchmark.recommend``), among the bundle's own artifacts, with their manifest's
   gate verdicts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from toolkit.compress.stage import Compressed


# Precisions whose host kernels compute in integers: faster than the fp32 peak, so no fp32 roofline bound.
INTEGER_COMPUTE = ("int8", "dynamic_int8", "int16x8")


def _sample(compressed: Compressed, recipe_input: dict, n: int = 1, split: str = "test") -> np.ndarray:
    from toolkit.load.stage import contract_images
    from toolkit.tasks.data import task_data

    data = task_data(compressed.spec, n, split=split, seed=0, labelled=False)
    return contract_images(data.inputs, recipe_input["pixel_range"], recipe_input["layout"])


def bench_bundle(bundle: str | Path, *, threads: tuple[int, ...] = (1, 2), profiles: list[str] | None = None,
                 warmup: int = 5, repeats: int = 30, android: bool = False, benchmark_binary: Path | None = None,
                 ort_int8_baseline: bool = True) -> dict:
    import torch

    from toolkit._io import captured
    from toolkit.backends import get_backend
    from toolkit.benchmark.cost import artifact_cost
    from toolkit.benchmark.devices import estimate, load_profiles
    from toolkit.benchmark.host import PeakMemory, host_roofline, measure_latency, roofline_bound_ms
    from toolkit.benchmark.phones import android_devices, ios_devices, run_android
    from toolkit.benchmark.recommend import recommend_rows
    from toolkit.convert.base import tree_size
    from toolkit.errors import VerificationError
    from toolkit.verify.bundle import bundle_context, check_integrity, not_converted, read_manifest, reference

    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    check_integrity(bundle, manifest)
    device_profiles = load_profiles(profiles)
    fd, log_name = tempfile.mkstemp(prefix="skinkit-bench-", suffix=".log")
    os.close(fd)
    log = Path(log_name)
    tmp = Path(tempfile.mkdtemp(prefix="skinkit-bench-"))  # the ORT int8 baseline lives here, then goes
    t_start = time.perf_counter()
    inp = manifest["recipe"]["resolved"]["input"]
    try:
        with captured(log):
            compressed = reference(bundle_context(bundle, manifest, log))
        x = _sample(compressed, inp)
        wrapped = compressed.wrapped
        roof = host_roofline(max(threads))
        reference = {}
        for t in threads:
            torch.set_num_threads(t)
            with torch.inference_mode(), PeakMemory() as mem:
                reference[t] = measure_latency(lambda v: wrapped(torch.from_numpy(v)), x, warmup=warmup, repeats=repeats)
            reference[t].update(runtime=f"PyTorch {torch.__version__} eager fp32", peak_memory_mb=mem.peak_mb, memory_method=mem.method)
        rows = []
        base = baseline_backend()
        base_fp32 = next((a for a in manifest["artifacts"] if base and a["format"] == base.name and a["precision"] == "fp32"), None)
        entries = [(a["path"], a["format"], a["precision"], bundle / a["path"], True) for a in manifest["artifacts"]]
        has_int8 = any(base and a["format"] == base.name and a["precision"] == "int8" for a in manifest["artifacts"])
        if ort_int8_baseline and base_fp32 is not None and not has_int8:  # a bundle's own onnx int8 is that baseline
            with captured(log):
                q = base.int8_baseline(bundle / base_fp32["path"], _sample(compressed, inp, 16, split="val"), tmp)
            entries.append((f"(baseline) {q.name}", base.name, "int8", q, False))
        for label, fmt, precision, path, in_bundle in entries:
            with captured(log):
                cost = artifact_cost(path)
            row = {"artifact": label, "format": fmt, "precision": precision, "in_bundle": in_bundle,
                   "size_bytes": tree_size(path),
                   "cost": cost.as_dict(), "host": {}, "estimates": []}
            for t in threads:
                try:
                    with PeakMemory() as mem:  # loading the model counts: that is what a phone app pays too
                        with captured(log):
                            runner = get_backend(fmt).runner(path, threads=t, layout=inp["layout"], pixel_range=inp["pixel_range"])
                        m = measure_latency(runner.run, x, warmup=warmup, repeats=repeats) if runner.timed else None
                except VerificationError as exc:
                    row["host"][t] = {"skipped": exc.one_line()}
                    continue
                if m is None:
                    row["host"][t] = {"skipped": "Core ML executes on macOS only (the MIL interpreter's speed means nothing)"}
                    continue
                m.update(runtime=runner.check, peak_memory_mb=mem.peak_mb, memory_method=mem.method,
                         ratio_to_torch_fp32=round(m["p50_ms"] / reference[t]["p50_ms"], 3))
                if t == max(threads) and precision not in INTEGER_COMPUTE:  # the roofline is the fp32 one
                    bound = roofline_bound_ms(cost.macs, cost.weight_bytes, roof)
                    m.update(roofline_bound_ms=round(bound, 4), ratio_to_roofline=round(m["p50_ms"] / bound, 1))
                row["host"][t] = m
            row["estimates"] = [estimate(p, cost, precision) for p in device_profiles]
            rows.append(row)
        _ratios_to_ort(rows, threads)
        phones = {"android": android_devices(), "ios": ios_devices()}
        if android and phones["android"]["available"]:
            for row in rows:
                if "android" in get_backend(row["format"]).phones and row["in_bundle"]:
                    row["phones"] = []
                    for serial in phones["android"]["devices"]:
                        for delegate in ("xnnpack", "gpu"):
                            try:
                                row["phones"].append(run_android(bundle / row["artifact"], serial=serial, delegate=delegate,
                                                                 benchmark_binary=benchmark_binary))
                            except RuntimeError as exc:
                                row["phones"].append({"device": serial, "delegate": delegate, "error": str(exc)})
    finally:
        log.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    passed = {a["path"]: a["verification"]["passed"] for a in manifest["artifacts"]}
    recommended = recommend_rows([{**r, "passed": passed[r["artifact"]]} for r in rows if r["in_bundle"]], device_profiles)
    return {"bundle": str(bundle), "model": manifest["model"]["name"], "threads": list(threads),
            "host": {"machine": _machine(), "roofline": roof, "reference": {str(t): v for t, v in reference.items()}},
            "artifacts": [{**r, "host": {str(t): v for t, v in r["host"].items()}} for r in rows],
            "phones": phones, "recommended": recommended.model_dump(mode="json"),
            "failed_targets": not_converted(manifest), "seconds": round(time.perf_counter() - t_start, 1),
            "note": "host figures are measured; device figures are estimates from each profile (see 'basis')"}


def _ratios_to_ort(rows: list[dict], threads: tuple[int, ...]) -> None:
    """Each artifact's p50 against ONNX Runtime at the same threads: fp32 against the bundle's ONNX,
    int8 against the int8 baseline."""
    base = baseline_backend()
    if base is None:
        return
    by = {(r["format"], r["precision"]): r for r in rows}
    for r in rows:
        ort = by.get((base.name, "int8" if r["precision"] == "int8" else "fp32"))
        if ort is None or ort is r:
            continue
        for t in threads:
            a, b = r["host"].get(t, {}), ort["host"].get(t, {})
            if "p50_ms" in a and "p50_ms" in b:
                a["ratio_to_onnxruntime"] = round(a["p50_ms"] / b["p50_ms"], 3)
                a["onnxruntime_reference"] = f"{base.baseline_runtime} {ort['precision']}"


def baseline_backend():
    """The backend whose host runtime every ratio compares with (ONNX Runtime), or None."""
    from toolkit.backends import BACKENDS

    return next((b for b in BACKENDS.values() if b.baseline_runtime), None)


def _machine() -> str:
    import platform

    from toolkit._io import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"
