"""Compare an artifact's outputs with the float reference's on held-out data and apply the gate.

Every criterion is evaluated and recorded; the artifact passes only if all hold. Nothing here
turns a failure into a warning.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from toolkit.convert.base import PRECISIONS, Artifact
from toolkit.convert.coreml import COMPRESSED_OPS
from toolkit.data.tasks import TaskData
from toolkit.registry import ModelSpec, Tolerance
from toolkit.verify import metrics
from toolkit.verify.runners import Runner


def resolve_tolerance(spec: ModelSpec, precision: str, override) -> Tolerance:
    """The spec's tolerance for the precision's tier, with the recipe's per-precision override on top."""
    tol = spec.tolerance(PRECISIONS[precision].tier)
    if override is None:
        return tol
    return replace(tol, **{k: v for k, v in override.model_dump().items() if v is not None})


def contract_inputs(data: TaskData, pixel_range: str, layout: str) -> np.ndarray:
    x = data.inputs.astype(np.float32)
    if pixel_range == "0-1":
        x = x / 255.0
    return x if layout == "nhwc" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def reference_outputs(wrapped, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return np.concatenate([wrapped(torch.from_numpy(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)])


def _to_nchw(y: np.ndarray, spec: ModelSpec, layout: str) -> np.ndarray:
    dense = spec.task in ("segmentation", "super_resolution")
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if dense and layout == "nhwc" else y


def _headline(spec: ModelSpec, out: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    return metrics.task_metric(spec.task, out, targets, num_classes=len(spec.labels),
                              output_names=tuple(o.name for o in spec.outputs))


def _criterion(name: str, value: float | None, bound: float | None, *, op: str) -> dict | None:
    if bound is None or value is None:
        return None
    ok = (value <= bound) if op == "<=" else (value >= bound)
    if isinstance(value, float) and math.isnan(value):
        ok = False
    return {"name": name, "value": value, "bound": bound, "op": op, "passed": bool(ok)}


def failed_criteria(path: str, criteria: list[dict]) -> list[str]:
    """One line per failed criterion of an artifact, as the CLI and the errors print them."""
    return [f"{path}: {c['name']} = {c['value']} (required {c['op']} {c['bound']})" for c in criteria if not c["passed"]]


def _check(name: str, value, bound, ok: bool, op: str = "==") -> dict:
    return {"name": name, "value": value, "bound": bound, "op": op, "passed": bool(ok)}


def structural_checks(artifact: Artifact, ref_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> list[dict]:
    """What the saved file itself must show, on every platform: I/O shapes of the contract and the
    asked-for storage precision (never silently float)."""
    d, p = artifact.details, artifact.precision
    out: list[dict] = []
    if artifact.format == "coreml":
        first = d["inputs"][0]
        got_in = tuple(first.get("shape", ()))
        if first.get("type") == "imageType":  # a pixel buffer: channel-first by definition
            want = (1, 3, *(input_shape[1:3] if input_shape[-1] == 3 else input_shape[2:4]))
            out.append(_check("image input size matches contract", list(got_in), list(want), got_in == want))
        else:
            out.append(_check("input shape matches contract", list(got_in), list(input_shape), got_in == input_shape))
        tensor_out = d["outputs"][0].get("shape")
        if tensor_out:
            out.append(_check("output shape matches reference", list(tensor_out), list(ref_shape), tuple(tensor_out) == ref_shape))
        if p != "fp32":
            n16, n32 = d["weight_dtypes"].get("FLOAT16", 0), d["weight_dtypes"].get("FLOAT32", 0)
            out.append(_check("no float32 weight tensors (kernels, matrices)", f"{n16} fp16 / {n32} fp32 tensors", "0 fp32", n32 == 0))
        if p in COMPRESSED_OPS:
            n = sum(d["compressed_weight_ops"].get(op, 0) for op in COMPRESSED_OPS[p])
            out.append(_check(f"compressed weights ({' / '.join(COMPRESSED_OPS[p])})", n, 1, n >= 1, ">="))
        if p == "int8":
            n = d["op_histogram"].get("quantize", 0)
            out.append(_check("int8 activations (quantize ops)", n, 1, n >= 1, ">="))
    if artifact.format == "tflite" and p != "fp32":
        want_dtype = {"fp16": "float16"}.get(p, "int8")
        n = d["tensor_dtypes"].get(want_dtype, 0)
        out.append(_check(f"weights stored as {want_dtype}", n, 1, n >= 1, ">="))
        if p in ("int8", "int16x8"):
            io = d["inputs"][0]["dtype"]
            want_io = "int8" if p == "int8" else "int16"
            out.append(_check("integer input", io, want_io, io == want_io))
    return out


def verify_artifact(artifact: Artifact, runner: Runner, *, spec: ModelSpec, data: TaskData, x: np.ndarray,
                    ref: np.ndarray, tolerance: Tolerance, layout: str) -> dict:
    out = runner.run(x)
    criteria: list[dict] = []
    finite = bool(np.all(np.isfinite(out)))
    criteria.append({"name": "outputs finite (no NaN/Inf)", "value": finite, "bound": True, "op": "==", "passed": finite})
    shape_ok = out.shape == ref.shape
    criteria.append({"name": "output shape", "value": list(out.shape[1:]), "bound": list(ref.shape[1:]), "op": "==", "passed": shape_ok})
    criteria += structural_checks(artifact, (1, *ref.shape[1:]), (1, *x.shape[1:]))  # artifacts are batch-1
    result: dict = {"check": runner.check, "n_samples": int(len(x))}
    if runner.note:
        result["note"] = runner.note
    if not (finite and shape_ok):
        result.update(passed=False, criteria=criteria)
        return result

    num = metrics.numerics(ref, out)
    ref_c, out_c = _to_nchw(ref, spec, layout), _to_nchw(out, spec, layout)
    agree = metrics.agreement(spec.task, ref_c, out_c)
    float_m, art_m = _headline(spec, ref_c, data.targets), _headline(spec, out_c, data.targets)
    key = spec.metric
    drop = (float_m[key] - art_m[key]) if spec.higher_is_better else (art_m[key] - float_m[key])

    criteria += [c for c in (
        _criterion("max abs error vs float", num["max_abs_error"], tolerance.max_abs, op="<="),
        _criterion("cosine vs float", num["cosine"], tolerance.min_cosine, op=">="),
        _criterion("top-1 agreement with float" if spec.task == "classification" else "pixel agreement with float", agree, tolerance.min_agreement, op=">="),
        _criterion(f"{key} drop vs float", drop, tolerance.max_metric_drop, op="<="),
    ) if c is not None]

    groups: dict[str, dict] = {}
    labels = np.array(data.groups)
    for g in sorted(set(data.groups)):
        sel = labels == g
        fg = _headline(spec, ref_c[sel], data.targets[sel])[key]
        ag = _headline(spec, out_c[sel], data.targets[sel])[key]
        groups[g] = {"n": int(sel.sum()), f"float_{key}": fg, f"artifact_{key}": ag,
                     "agreement": metrics.agreement(spec.task, ref_c[sel], out_c[sel])}
    result.update(
        passed=all(c["passed"] for c in criteria),
        numerics=num,
        agreement=agree,
        task_metric={"name": key, "higher_is_better": spec.higher_is_better, "float": float_m, "artifact": art_m, "drop": drop},
        by_group=groups,
        criteria=criteria,
    )
    return result
