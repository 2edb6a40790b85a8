"""``skinkit inspect ARTIFACT``: what is inside an exported file, read from the file alone.

I/O, op histogram, weight dtypes, size and TRANSPOSE count for every format; for TFLite, which ops
the GPU delegate can take; for Core ML, which ops can run on the Neural Engine. Both are static
checks against documented op lists, labelled as such: only running on the device says for sure.
(TensorFlow's own analyzer flagged nothing even on models with Flex ops when we tried it, so the
list is ours.)
"""

from __future__ import annotations

from pathlib import Path

from toolkit.convert.base import file_sha256, tree_size
from toolkit.errors import BadInputError

# Builtin ops the TFLite GPU delegate (OpenCL/OpenGL/Metal) accepts, from its documented op list.
TFLITE_GPU_OPS = frozenset("""
ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CAST CONCATENATION CONV_2D COS CUMSUM DENSIFY DEPTH_TO_SPACE DEPTHWISE_CONV_2D
DEQUANTIZE DIV ELU EQUAL EXP FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GELU GREATER GREATER_EQUAL HARD_SWISH
LESS LESS_EQUAL LOG LOGICAL_AND LOGISTIC MAX_POOL_2D MAXIMUM MEAN MINIMUM MUL NEG NOT_EQUAL ONE_HOT PACK PAD PADV2
POW PRELU QUANTIZE REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR
RESIZE_NEAREST_NEIGHBOR RSQRT SELECT_V2 SIN SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE
SQUEEZE STRIDED_SLICE SUB SUM TANH TILE TRANSPOSE TRANSPOSE_CONV
""".split())

# MIL ops the Neural Engine executes (float16 only). Everything else, and every op of a float32
# program, falls back to the GPU or CPU, splitting the graph.
COREML_ANE_OPS = frozenset("""
add sub mul real_div maximum minimum pow sqrt rsqrt exp relu relu6 clip sigmoid sigmoid_hard tanh silu gelu prelu
leaky_relu softmax conv conv_transpose linear matmul batch_norm instance_norm layer_norm l2_norm reduce_mean reduce_sum
reduce_max reduce_min max_pool avg_pool upsample_nearest_neighbor upsample_bilinear resize_bilinear pixel_shuffle
pixel_unshuffle reshape transpose concat split slice_by_index slice_by_size squeeze expand_dims pad cast tile
quantize dequantize
""".split())
_NOT_COMPUTE = ("const", "classify")  # constants and the classifier's label lookup run outside the graph


def _format_of(path: Path) -> str:
    if path.suffix == ".tflite":
        return "tflite"
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix == ".mlpackage":
        return "coreml"
    raise BadInputError(f"{path}: not an artifact skinkit knows (.tflite, .onnx or .mlpackage)",
                        fix="pass a file from a bundle's artifacts/ folder")


def tflite_gpu(ops: dict[str, int]) -> dict:
    off = {op: n for op, n in ops.items() if op not in TFLITE_GPU_OPS}
    return {"check": "static: the GPU delegate's documented op list", "fully_delegable": not off,
            "ops_off_gpu": off, "share_on_gpu": round(1 - sum(off.values()) / max(sum(ops.values()), 1), 3)}


def coreml_compute_units(ops: dict[str, int], precision_fp32: bool) -> dict:
    compute = {op: n for op, n in ops.items() if op not in _NOT_COMPUTE and not op.startswith("constexpr_")}
    if precision_fp32:
        return {"check": "static", "neural_engine": "none: the Neural Engine computes float16; a float32 program runs on GPU/CPU",
                "ops_off_neural_engine": compute}
    off = {op: n for op, n in compute.items() if op not in COREML_ANE_OPS}
    return {"check": "static: op types the Neural Engine executes (shapes and sizes can still move an op off it)",
            "neural_engine": "all ops eligible" if not off else "partial", "ops_off_neural_engine": off,
            "share_eligible": round(1 - sum(off.values()) / max(sum(compute.values()), 1), 3)}


def _maybe_json(v: str):
    import json

    try:
        return json.loads(v)
    except ValueError:
        return v


def inspect_artifact(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"artifact not found: {path}", fix="pass a .tflite, .onnx or .mlpackage path")
    fmt = _format_of(path)
    out: dict = {"path": str(path), "format": fmt, "size_bytes": tree_size(path), "sha256": file_sha256(path)}
    try:
        if fmt == "tflite":
            from toolkit.convert import tflite

            d = tflite.inspect(path)
            out.update(d)
            out["gpu_delegate"] = tflite_gpu(d["op_histogram"])
            if tflite.METADATA_NAME in d["metadata_entries"]:
                out["metadata"] = tflite.read_metadata(path)
        elif fmt == "onnx":
            from toolkit.convert import onnx as onnx_backend

            out.update(onnx_backend.inspect(path))
        else:
            from toolkit.convert import coreml

            d = coreml.inspect(path)
            out.update(d)
            fields = d.pop("metadata")
            out["metadata"] = {k.removeprefix("skinkit."): _maybe_json(v) for k, v in fields.items() if k.startswith("skinkit.")}
            fp32 = d["weight_dtypes"].get("FLOAT32", 0) > 0 and d["weight_dtypes"].get("FLOAT16", 0) == 0
            out["compute_units"] = coreml_compute_units(d["op_histogram"], fp32)
    except BadInputError:
        raise
    except Exception as exc:  # a truncated or foreign file
        raise BadInputError(f"{path}: cannot be read as {fmt}: {type(exc).__name__}: {exc}",
                            fix="re-export it; the file may be truncated or not what its suffix says") from None
    return out


def render(d: dict) -> str:
    """A human-readable summary of :func:`inspect_artifact`'s result."""
    lines = [f"{d['path']}  ({d['format']}, {d['size_bytes'] / 1e6:.2f} MB, sha256 {d['sha256'][:12]}…)"]
    for kind in ("inputs", "outputs"):
        for t in d.get(kind, []):
            q = t.get("quantization")
            extra = f", scale {q['scale']:.4g} zero point {q['zero_point']}" if q else ""
            lines.append(f"  {kind[:-1]:6s} {t['name']}: {t.get('dtype', t.get('type', ''))} {t.get('shape', '')}{extra}")
    ops = d.get("op_histogram", {})
    lines.append(f"  ops    {sum(ops.values())} ({len(ops)} types): " + ", ".join(f"{k}×{v}" for k, v in ops.items()))
    lines.append(f"  transposes {d.get('transpose_count', 0)}")
    dtypes = d.get("tensor_dtypes") or d.get("weight_dtypes") or {}
    lines.append("  weights " + ", ".join(f"{k}×{v}" for k, v in dtypes.items()))
    if d.get("compressed_weight_ops"):
        lines.append("  compressed " + ", ".join(f"{k}×{v}" for k, v in d["compressed_weight_ops"].items()))
    if d.get("signatures"):
        lines.append("  signatures " + ", ".join(f"{k}({', '.join(v['inputs'])}) -> {', '.join(v['outputs'])}" for k, v in d["signatures"].items()))
    if "gpu_delegate" in d:
        g = d["gpu_delegate"]
        lines.append(f"  GPU delegate ({g['check']}): " + ("all ops" if g["fully_delegable"] else f"off GPU: {g['ops_off_gpu']}"))
    if "compute_units" in d:
        c = d["compute_units"]
        lines.append(f"  Neural Engine ({c['check']}): {c['neural_engine']}" + (f"; off: {c['ops_off_neural_engine']}" if c.get("ops_off_neural_engine") and c["neural_engine"] == "partial" else ""))
    if "metadata" in d:
        m = d["metadata"]
        lines.append(f"  metadata: {m.get('model')} {m.get('version')} ({m.get('precision')}), labels {m.get('labels')}")
    return "\n".join(lines)
