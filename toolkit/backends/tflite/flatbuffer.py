"""Reading a .tflite file: the flatbuffer itself (structure, metadata, I/O) and an interpreter over the
graph as written. Shared by the converter (which checks what it wrote) and the runner, checks and cost."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np

from toolkit.errors import ConversionError

METADATA_NAME = "skinkit"


def model_of(path_or_bytes):
    from ai_edge_litert import schema_py_generated as fb

    buf = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) else Path(path_or_bytes).read_bytes()
    return fb.ModelT.InitFromPackedBuf(bytearray(buf), 0)


def enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def as_text(v) -> str:
    return v.decode() if isinstance(v, bytes) else (v or "")


def read_metadata(path: Path) -> dict:
    """The skinkit metadata embedded in a .tflite file (raises if there is none)."""
    m = model_of(path)
    for md in m.metadata or []:
        if as_text(md.name) == METADATA_NAME:
            return json.loads(bytes(np.asarray(m.buffers[md.buffer].data, dtype=np.uint8)).decode())
    raise ConversionError(f"{path} carries no {METADATA_NAME!r} metadata", fix="re-export it with skinkit")


def inspect(path: Path) -> dict:
    """Structure read from the flatbuffer itself (no interpreter, so delegates do not hide ops): op
    histogram, TRANSPOSE count, dtypes of constant (weight) tensors, I/O with quantization, signatures."""
    from ai_edge_litert import schema_py_generated as fb

    m = model_of(path)
    op_names, dtype_names = enum_names(fb.BuiltinOperator), enum_names(fb.TensorType)
    codes = []
    for oc in m.operatorCodes:
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        codes.append(as_text(oc.customCode) if code == fb.BuiltinOperator.CUSTOM else op_names.get(code, str(code)))
    ops: collections.Counter = collections.Counter()
    weight_dtypes: collections.Counter = collections.Counter()
    sg = m.subgraphs[0]
    for sub in m.subgraphs:
        for op in sub.operators or []:
            ops[codes[op.opcodeIndex]] += 1
    for t in sg.tensors:
        b = m.buffers[t.buffer] if t.buffer < len(m.buffers) else None
        if b is not None and ((b.data is not None and len(b.data)) or (b.offset or 0) > 1):
            weight_dtypes[dtype_names[t.type].lower()] += 1

    def io(indices):
        out = []
        for i in indices:
            t = sg.tensors[i]
            q = t.quantization
            entry = {"name": as_text(t.name), "shape": [int(d) for d in t.shape], "dtype": dtype_names[t.type].lower()}
            if q is not None and q.scale is not None and len(q.scale) == 1:
                entry["quantization"] = {"scale": float(q.scale[0]), "zero_point": int(q.zeroPoint[0])}
            out.append(entry)
        return out

    sigs = {}
    for sd in m.signatureDefs or []:
        sigs[as_text(sd.signatureKey)] = {"inputs": [as_text(t.name) for t in sd.inputs], "outputs": [as_text(t.name) for t in sd.outputs]}
    return {
        "op_histogram": dict(sorted(ops.items())),
        "transpose_count": ops.get("TRANSPOSE", 0),
        "tensor_dtypes": dict(sorted(weight_dtypes.items())),
        "inputs": io(sg.inputs),
        "outputs": io(sg.outputs),
        "signatures": sigs,
        "metadata_entries": sorted(as_text(md.name) for md in m.metadata or []),
    }


def graph_interpreter(path: Path):
    """An allocated interpreter over the graph as written: without the XNNPACK delegate, which would fold
    the ops into one DELEGATE node. ``_get_ops_details()`` is then the op table (the interpreter has no
    public one)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    return interp


def inspect_input_name(path: Path) -> str:
    sg = model_of(path).subgraphs[0]
    return as_text(sg.tensors[sg.inputs[0]].name)
