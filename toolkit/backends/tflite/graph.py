"""Reading a TFLite artifact: LiteRT runner, structural checks, weights, cost, and the GPU delegate's op list."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from toolkit.backends.base import ArtifactWeight, Cost, OpTally, Runner, check, numel, per_sample
from toolkit.backends.tflite.flatbuffer import graph_interpreter
from toolkit.backends.tflite.ops import GPU_OPS
from toolkit.errors import VerificationError


def gpu_delegate(ops: dict[str, int]) -> dict:
    off = {op: n for op, n in ops.items() if not GPU_OPS.runs(op)}
    return {"check": GPU_OPS.description, "fully_delegable": not off,
            "ops_off_gpu": off, "share_on_gpu": round(1 - sum(off.values()) / max(sum(ops.values()), 1), 3)}


def _output_order(path: Path, names: list[str]) -> list[str]:
    """The signature's output names in the spec's order (from the embedded metadata), else as listed."""
    from toolkit.backends.tflite.flatbuffer import read_metadata
    from toolkit.errors import ConversionError

    try:
        declared = [o["name"] for o in read_metadata(path).get("outputs", [])]
    except (ConversionError, ValueError, KeyError, TypeError):
        return names
    return [n for n in declared if n in names] + [n for n in names if n not in declared]


def runner(path: Path, *, threads: int = 2) -> Runner:
    """Runs the file's input → every named output; integer I/O (full-integer variants) is quantized and
    dequantized with the scale and zero point stored in the file, as an app would."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:  # the runtime refuses the file: it would on a phone too
        raise VerificationError(f"the LiteRT interpreter cannot load {path.name}: {str(exc).strip()}",
                                fix="export another precision for this model (see `skinkit matrix`)") from None
    inp = interp.get_input_details()[0]
    signatures = interp.get_signature_list()
    if signatures:  # signature output names are the spec's output names
        outs = interp.get_signature_runner(next(iter(signatures))).get_output_details()
        by_index = {d["index"]: d for d in interp.get_output_details()}
        outputs = {n: by_index.get(outs[n]["index"], outs[n]) for n in _output_order(path, list(outs))}
    else:
        outputs = {d["name"]: d for d in interp.get_output_details()}

    def quant(x: np.ndarray) -> np.ndarray:
        if np.issubdtype(inp["dtype"], np.floating):
            return x.astype(inp["dtype"])
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])

    def dequant(y: np.ndarray, out: dict) -> np.ndarray:
        if np.issubdtype(out["dtype"], np.floating):
            return y.astype(np.float32)
        scale, zero = out["quantization"]
        return (y.astype(np.float32) - zero) * np.float32(scale)

    def one(x: np.ndarray) -> dict:
        interp.set_tensor(inp["index"], quant(x))
        interp.invoke()
        return {name: dequant(interp.get_tensor(out["index"]), out) for name, out in outputs.items()}

    io = "" if np.issubdtype(inp["dtype"], np.floating) else f", {np.dtype(inp['dtype']).name} I/O"
    return Runner(per_sample(one), check=f"ai_edge_litert interpreter (CPU, XNNPACK{io})")


def structural_checks(details: dict, precision: str, *, output_shapes: Mapping[str, tuple[int, ...]]) -> list[dict]:
    """Every declared output in the signature; the asked-for storage dtype and integer I/O."""
    sigs = details.get("signatures") or {}
    got = sorted(n for s in sigs.values() for n in s["outputs"]) if sigs else sorted(o["name"] for o in details.get("outputs", []))
    out = [check("signature outputs match the declared outputs", got, sorted(output_shapes), got == sorted(output_shapes))]
    if precision == "fp32":
        return out
    want_dtype = {"fp16": "float16"}.get(precision, "int8")
    n = details["tensor_dtypes"].get(want_dtype, 0)
    out.append(check(f"weights stored as {want_dtype}", n, 1, n >= 1, ">="))
    if precision in ("int8", "int16x8"):
        io = details["inputs"][0]["dtype"]
        want_io = "int8" if precision == "int8" else "int16"
        out.append(check("integer input", io, want_io, io == want_io))
    return out


def weights(path: Path) -> list[ArtifactWeight]:
    interp = graph_interpreter(path)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    producers = {o: op for op in interp._get_ops_details() for o in op["outputs"]}  # noqa: SLF001 (no public op table)

    def dense(index: int) -> np.ndarray | None:
        op = producers.get(index)
        if op is not None:  # fp16 / weight-only int8: a DEQUANTIZE of a constant
            return dense(op["inputs"][0]) if op["op_name"] == "DEQUANTIZE" else None
        d = details[index]
        try:
            value = interp.get_tensor(index)
        except ValueError:
            return None
        q = d.get("quantization_parameters") or {}
        scales = np.asarray(q.get("scales", []), np.float64)
        if np.issubdtype(value.dtype, np.integer) and scales.size:
            zp = np.asarray(q.get("zero_points", np.zeros_like(scales)), np.float64)
            shape = [1] * value.ndim
            if scales.size > 1:
                shape[q.get("quantized_dimension", 0)] = -1
            return ((value.astype(np.float64) - zp.reshape(shape)) * scales.reshape(shape)).astype(np.float32)
        return value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else None

    out = []
    for op in interp._get_ops_details():  # noqa: SLF001
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"):
            w = dense(op["inputs"][1])  # the weights (TRANSPOSE_CONV: after the output shape)
            if w is not None and w.ndim >= 2:
                out.append(ArtifactWeight(f"tensor {op['inputs'][1]} ({op['op_name']})", w))
    return out


def cost(path: Path) -> Cost:
    interp = graph_interpreter(path)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # noqa: SLF001 (the interpreter has no public op table)
    produced = {o for op in ops for o in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    used = {i for op in ops for i in op["inputs"] if i >= 0}
    constants = {i for i in used if i not in produced and i not in graph_inputs}

    def nbytes(i: int) -> int:
        d = details[i]
        return numel(d["shape"]) * np.dtype(d["dtype"]).itemsize

    def shape(i: int):
        return [int(s) for s in details[i]["shape"]]

    # A DEQUANTIZE of a constant (fp16 / weight-only int8 storage) is unpacked once at load, not per inference.
    unpacked = {o for op in ops if op["op_name"] == "DEQUANTIZE" and op["inputs"][0] in constants for o in op["outputs"]}
    macs, tally = 0, OpTally()
    for op in ops:
        name, ins, outs = op["op_name"], op["inputs"], op["outputs"]
        n = 0
        if name == "CONV_2D":  # weights O, H, W, I
            _, kh, kw, cin = shape(ins[1])
            n = numel(shape(outs[0])) * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D":  # weights 1, H, W, O
            _, kh, kw, _ = shape(ins[1])
            n = numel(shape(outs[0])) * kh * kw
        elif name == "FULLY_CONNECTED":  # weights O, I
            n = numel(shape(outs[0])) * shape(ins[1])[-1]
        elif name == "TRANSPOSE_CONV":  # (output shape, weights O, H, W, I, input): each input scatters kh·kw·O
            cout, kh, kw, _ = shape(ins[1])
            n = numel(shape(ins[2])) * kh * kw * cout
        elif name == "BATCH_MATMUL":
            n = numel(shape(outs[0])) * shape(ins[0])[-1]
        macs += n
        if name in MAC_OPS:
            tally.add(MAC_OPS[name], n)
        elif not set(outs) <= unpacked and name not in FREE_OPS:
            tally.add("memory" if name in RESIZE_OPS else "elementwise", sum(numel(shape(o)) for o in outs))
    return Cost("tflite", macs, sum(numel(shape(i)) for i in constants), sum(nbytes(i) for i in constants),
                sum(nbytes(o) for op in ops for o in op["outputs"] if o not in unpacked) + sum(nbytes(i) for i in graph_inputs),
                tuple(op["op_name"] for op in ops if not set(op["outputs"]) <= unpacked), tally.totals)


# Op classes for the device cost model (``toolkit.backends.base.OP_CLASSES``); any other op is elementwise. Activations
# fused into a CONV_2D / ADD (its fused_activation_function) cost nothing extra, as on the device.
MAC_OPS = {"CONV_2D": "conv", "TRANSPOSE_CONV": "conv", "DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "matmul",
           "BATCH_MATMUL": "matmul"}
RESIZE_OPS = frozenset({"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"})
FREE_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "QUANTIZE", "DEQUANTIZE", "DELEGATE"})


def inspect(path: Path) -> dict:
    from toolkit.backends.tflite.flatbuffer import METADATA_NAME, inspect, read_metadata

    d = inspect(path)
    out = {**d, "gpu_delegate": gpu_delegate(d["op_histogram"])}
    if METADATA_NAME in d["metadata_entries"]:
        out["metadata"] = read_metadata(path)
    return out

