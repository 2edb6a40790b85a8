"""Reading a Core AI asset: the runner (Apple's Core AI runtime), structural checks, weights and cost from
the saved program, and what ``skinkit inspect`` shows."""

from __future__ import annotations

import collections
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from toolkit.backends.base import ArtifactWeight, Cost, Runner, check, numel, per_sample
from toolkit.backends.coreai.program import INPUT_NAME, read_metadata, read_program
from toolkit.errors import VerificationError

FLOAT = ("f32", "f16", "bf16", "f64")


def runner(path: Path) -> Runner:
    """The asset loaded by coreai-core's runtime. On Linux (and macOS without the OS framework) the package
    lowers the asset for its own CPU runtime; on macOS 27 the OS's Core AI runs it, specialized for the
    machine. Each call runs one sample (assets are exported at batch 1)."""
    import asyncio
    import weakref

    import coreai
    from coreai.authoring.asset import AIModelAsset

    loop = asyncio.new_event_loop()
    try:
        executable = AIModelAsset.load(Path(path)).executable()
        model = loop.run_until_complete(executable.__aenter__())
        fn = model.load_function("main")
        if fn is None:
            raise RuntimeError("the asset has no function 'main'")
    except Exception as exc:  # the runtime raises its own exception types
        loop.close()
        raise VerificationError(f"the Core AI runtime cannot load {Path(path).name}: {str(exc).strip()[:300]}",
                                fix="re-export; check the ops reported by `skinkit inspect`") from None
    in_name = fn.desc.input_names[0]
    out_names = list(fn.desc.output_names)

    def one(x: np.ndarray) -> dict:
        out = loop.run_until_complete(fn({in_name: coreai.runtime.NDArray(np.ascontiguousarray(x, dtype=np.float32))}))
        return {name: np.asarray(out[name].numpy(), dtype=np.float32) for name in out_names}

    where = ("the macOS Core AI framework" if sys.platform == "darwin"
             else "its CPU runtime on Linux (the asset lowered to .aimodelx, as AIModelAsset.executable does)")
    version = getattr(coreai, "__version__", "") or _package_version()
    result = Runner(per_sample(one), check=f"Core AI runtime (coreai-core {version}): {where}")

    def close(loop=loop, executable=executable) -> None:
        try:
            loop.run_until_complete(executable.__aexit__(None, None, None))
        finally:
            loop.close()

    weakref.finalize(one, close)  # the loop lives as long as anything can still call it
    return result


def _package_version() -> str:
    from importlib.metadata import version

    return version("coreai-core")


def structural_checks(details: dict, precision: str, *, input_shape: tuple[int, ...],
                      output_shapes: Mapping[str, tuple[int, ...]]) -> list[dict]:
    """The contract's input (``image``, float32, the contract's shape), every declared output by name and shape
    in order, and the storage and compute precision: float16 weights and convolutions below fp32."""
    d = details
    got_in = [(i["name"], i["dtype"], tuple(i["shape"])) for i in d["inputs"]]
    want_in = [(INPUT_NAME, "f32", tuple(input_shape))]
    out = [check("input matches contract (name, dtype, shape)", [[n, t, list(s)] for n, t, s in got_in],
                 [[n, t, list(s)] for n, t, s in want_in], got_in == want_in)]
    got_out = [(o["name"], tuple(o["shape"])) for o in d["outputs"]]
    want_out = [(n, tuple(s)) for n, s in output_shapes.items()]
    out.append(check("outputs match reference (names, shapes)", [[n, list(s)] for n, s in got_out],
                     [[n, list(s)] for n, s in want_out], got_out == want_out))
    weights = d["weight_dtypes"]
    want = "f32" if precision == "fp32" else "f16"
    other = {k: v for k, v in weights.items() if k != want}
    out.append(check(f"weight tensors (kernels, matrices) stored {want}", weights, f"only {want}", bool(weights) and not other))
    if precision == "fp16":
        compute = d["weighted_op_dtypes"]
        out.append(check("convolutions and matmuls compute f16", compute, "only f16", bool(compute) and set(compute) == {"f16"}))
    return out


def weights(path: Path) -> list[ArtifactWeight]:
    prog = read_program(path)
    out = []
    for i, (op, value) in enumerate(prog.weight_values()):
        out.append(ArtifactWeight(f"{op.kind}_{i}", prog.stored(value).astype(np.float32)))
    return out


def cost(path: Path) -> Cost:
    prog = read_program(path)
    compute = prog.compute_ops()
    macs = 0
    for op in compute:
        if len(op.operands) < 2 or not op.results:
            continue
        out_shape, w = prog.tensors[op.results[0]].shape, prog.tensors[op.operands[1]].shape
        if "conv_transpose" in op.kind:  # weight I, O/g, kh, kw
            macs += numel(prog.tensors[op.operands[0]].shape) * numel(w[1:])
        elif "conv" in op.kind:  # weight O, I/g, kh, kw
            macs += numel(out_shape) * numel(w[1:])
        elif "matmul" in op.kind:
            macs += numel(out_shape) * int(prog.tensors[op.operands[0]].shape[-1])
    stored = [a for a in prog.constants.values() if a.ndim >= 1]
    params = sum(a.size for a in stored if a.dtype.kind == "f")
    weight_bytes = sum(a.nbytes for a in stored)
    acts = sum(numel(prog.tensors[r].shape) * prog.tensors[r].itemsize for op in compute for r in op.results)
    acts += sum(numel(prog.tensors[v].shape) * prog.tensors[v].itemsize for _, v in prog.inputs)
    return Cost("coreai", macs, int(params), int(weight_bytes), int(acts), tuple(op.kind for op in compute))


def inspect(path: Path) -> dict:
    """Function, I/O, op histogram, weight and compute dtypes, and the asset's metadata (``skinkit.*`` fields
    without their prefix), read back from the saved asset (on any platform)."""
    prog = read_program(path)
    weight_dtypes: collections.Counter = collections.Counter()
    param_dtypes: collections.Counter = collections.Counter()
    weighted = prog.weight_values()
    weight_ids = {v for _, v in weighted}
    for value, arr in prog.constants.items():
        dtype = prog.tensors[value].dtype
        if dtype not in FLOAT or arr.ndim == 0:
            continue
        is_weight = value in weight_ids or any(prog.stored(w) is arr for w in weight_ids)
        (weight_dtypes if is_weight else param_dtypes)[dtype] += 1
    compute_dtypes = collections.Counter(prog.tensors[op.results[0]].dtype for op, _ in weighted)

    def io(values):
        return [{"name": n, "dtype": prog.tensors[v].dtype, "shape": list(prog.tensors[v].shape)} for n, v in values]

    meta = read_metadata(path)
    custom = meta.get("creatorDefinedMetadata", {})
    hist = prog.histogram()
    return {
        "function": prog.function,
        "inputs": io(prog.inputs),
        "outputs": io(prog.outputs),
        "op_histogram": hist,
        "transpose_count": hist.get("transpose", 0),
        "weight_dtypes": dict(weight_dtypes),
        "param_dtypes": dict(param_dtypes),
        "weighted_op_dtypes": dict(compute_dtypes),
        "producer": meta.get("producer"),
        "author": meta.get("author"),
        "metadata": {k.removeprefix("skinkit."): _maybe_json(v) for k, v in custom.items() if k.startswith("skinkit.")},
    }


def _maybe_json(v):
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError:
        return v
