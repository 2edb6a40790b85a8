"""Reading a Core AI asset: the runner (Apple's Core AI runtime), structural checks, weights and cost from
the saved program, and what ``skinkit inspect`` shows."""

from __future__ import annotations

import collections
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from toolkit.backends.base import ArtifactWeight, Cost, OpTally, Runner, check, numel
from toolkit.backends.coreai.ops import compute_units
from toolkit.backends.coreai.program import DECOMPRESS, INPUT_NAME, PASS_THROUGH, read_metadata, read_program
from toolkit.errors import VerificationError

FLOAT = ("f32", "f16", "bf16", "f64")


def runner(path: Path) -> Runner:
    """The asset loaded by coreai-core's runtime. On Linux (and macOS without the OS framework) the package
    lowers the asset for its own CPU runtime; on macOS 27 the OS's Core AI runs it, specialized for the
    machine. Each call runs one sample (assets are exported at batch 1); the samples of a batch run as concurrent
    calls, at most one per CPU core (the Linux CPU runtime computes a call on one thread)."""
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

    lanes = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))

    async def batch(x: np.ndarray) -> list[dict]:
        gate = asyncio.Semaphore(lanes)

        async def one(sample: np.ndarray) -> dict:
            async with gate:
                out = await fn({in_name: coreai.runtime.NDArray(np.ascontiguousarray(sample, dtype=np.float32))})
            return {name: np.asarray(out[name].numpy(), dtype=np.float32) for name in out_names}
        return await asyncio.gather(*(one(x[i:i + 1]) for i in range(len(x))))

    def run(x: np.ndarray) -> dict:
        outs = loop.run_until_complete(batch(x))
        return {name: np.concatenate([o[name] for o in outs]) for name in out_names}

    where = ("the macOS Core AI framework" if sys.platform == "darwin"
             else "its CPU runtime on Linux (the asset lowered to .aimodelx, as AIModelAsset.executable does)")
    version = getattr(coreai, "__version__", "") or _package_version()
    result = Runner(run, check=f"Core AI runtime (coreai-core {version}): {where}")

    def close(loop=loop, executable=executable) -> None:
        try:
            loop.run_until_complete(executable.__aexit__(None, None, None))
        finally:
            loop.close()

    weakref.finalize(run, close)  # the loop lives as long as anything can still call it
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
    weights, storage = d["weight_dtypes"], d.get("weight_storage", {})
    if precision in ("fp32", "fp16"):
        want = "f32" if precision == "fp32" else "f16"
        other = {k: v for k, v in weights.items() if k != want}
        out.append(check(f"weight tensors (kernels, matrices) stored {want}", weights, f"only {want}", bool(weights) and not other))
    else:
        out.append(check("no float32 weight tensors (kernels, matrices)", weights.get("f32", 0), 0, not weights.get("f32")))
        scheme, allowed = COMPRESSED_STORAGE[precision]
        ok = {k: v for k, v in storage.items() if k in allowed}
        bad = {k: v for k, v in storage.items() if k not in allowed and not k.startswith("dense ")}
        out.append(check(f"compressed weights ({scheme}: {' / '.join(allowed)})", sum(ok.values()), 1, bool(ok) and not bad, ">="))
    if precision != "fp32":
        compute = d["weighted_op_dtypes"]
        out.append(check("convolutions and matmuls compute f16", compute, "only f16", bool(compute) and set(compute) == {"f16"}))
    return out


# How each compressed precision stores its weights, as ``inspect`` names it ("<scheme> <element type>").
COMPRESSED_STORAGE = {
    "int8_weights": ("int8 per-channel", ("quantized si8",)),
    "int4_block": ("int4 per block", ("quantized si4",)),
    "palettize8": ("8-bit lookup tables", ("lut ui8",)),
    "palettize6": ("6-bit lookup tables", ("lut ui6",)),
    "palettize4": ("4-bit lookup tables", ("lut ui4",)),
}


def weights(path: Path) -> list[ArtifactWeight]:
    prog = read_program(path)
    out = []
    for i, (op, value) in enumerate(prog.weight_values()):
        out.append(ArtifactWeight(f"{op.kind}_{i}", prog.stored(value).astype(np.float32)))
    return out


def cost(path: Path) -> Cost:
    prog = read_program(path)
    compute = prog.compute_ops()
    macs, tally = 0, OpTally()
    for op in compute:
        if op.kind in DECOMPRESS or not op.results:
            continue
        out_shape = prog.tensors[op.results[0]].shape
        if len(op.operands) < 2 or not any(k in op.kind for k in ("conv", "matmul")):
            if op.kind not in _FREE_OPS:
                tally.add("memory" if op.kind.startswith(("upsample", "resize", "interpolate")) else "elementwise", numel(out_shape))
            continue
        w = prog.tensors[op.operands[1]].shape
        x = prog.tensors[op.operands[0]].shape
        if "conv_transpose" in op.kind:  # weight I, O/g, kh, kw
            n, cls = numel(x) * numel(w[1:]), "conv"
        elif "conv" in op.kind:  # weight O, I/g, kh, kw
            n = numel(out_shape) * numel(w[1:])
            cls = "depthwise" if w[1] == 1 and len(x) > 1 and x[1] > 1 else "conv"
        else:
            n, cls = numel(out_shape) * int(x[-1]), "matmul"
        macs += n
        tally.add(cls, n)
    weighted = prog.weight_values()
    sources = set().union(*(_sources(prog, v) for _, v in weighted)) if weighted else set()
    params = sum(numel(prog.tensors[v].shape) for _, v in weighted)
    params += sum(a.size for v, a in prog.constants.items() if v not in sources and a.ndim >= 1 and a.dtype.kind == "f")
    weight_bytes = sum(prog.tensors[v].nbytes for v, a in prog.constants.items() if a.ndim >= 1)  # as stored: packed, int8, tables
    run = [op for op in compute if op.kind not in DECOMPRESS]  # weights are expanded once at load, not per inference
    acts = sum(numel(prog.tensors[r].shape) * prog.tensors[r].itemsize for op in run for r in op.results)
    acts += sum(numel(prog.tensors[v].shape) * prog.tensors[v].itemsize for _, v in prog.inputs)
    return Cost("coreai", macs, int(params), int(weight_bytes), int(acts), tuple(op.kind for op in compute), tally.totals)


_FREE_OPS = frozenset({"reshape", "squeeze", "expand_dims", "cast", "identity"})  # device cost model: no work


def inspect(path: Path) -> dict:
    """Function, I/O, op histogram, how each weight is stored (dense dtype, lookup-table indices, quantized integers),
    compute dtypes, and the asset's metadata (``skinkit.*`` fields without their prefix), read back from the saved
    asset (on any platform)."""
    prog = read_program(path)
    weight_dtypes: collections.Counter = collections.Counter()
    storage: collections.Counter = collections.Counter()
    param_dtypes: collections.Counter = collections.Counter()
    weighted = prog.weight_values()
    weight_sources = set()
    for _, value in weighted:
        scheme, dtype = prog.storage(value)
        storage[f"{scheme} {dtype}"] += 1
        if scheme == "dense":
            weight_dtypes[dtype] += 1
        weight_sources |= _sources(prog, value)
    for value, arr in prog.constants.items():
        dtype = prog.tensors[value].dtype
        if dtype in FLOAT and arr.ndim > 0 and value not in weight_sources:
            param_dtypes[dtype] += 1
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
        "weight_storage": dict(sorted(storage.items())),
        "param_dtypes": dict(param_dtypes),
        "weighted_op_dtypes": dict(compute_dtypes),
        "producer": meta.get("producer"),
        "author": meta.get("author"),
        "metadata": {k.removeprefix("skinkit."): _maybe_json(v) for k, v in custom.items() if k.startswith("skinkit.")},
        "compute_units": compute_units(hist, bool(weight_dtypes.get("f32"))),
    }


def _sources(prog, value: int) -> set[int]:
    """The stored constants a weight is made from (itself, or a compressed weight's data, table and scales)."""
    seen, stack = set(), [value]
    while stack:
        v = stack.pop()
        if v in prog.constants:
            seen.add(v)
        elif v in prog.producer and prog.producer[v].kind in (*PASS_THROUGH, *DECOMPRESS):
            stack.extend(prog.producer[v].operands)
    return seen


def _maybe_json(v):
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError:
        return v
