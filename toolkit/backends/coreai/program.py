"""Reading a saved ``.aimodel``: its program (an MLIR module of ``coreai.*`` ops) as plain records, and its
``metadata.json``. Shared by the converter (to check what it wrote) and every reading hook."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.backends.base import numel

INPUT_NAME = "image"
# Data-movement ops between a stored constant and the op that consumes it as a weight (a linear layer's
# matrix reaches its matmul through a transpose).
PASS_THROUGH = ("transpose", "reshape", "cast")
# Ops that expand a compressed stored weight at load: int-quantized data (blockwise_shift_scale) and lookup tables
# (lut_to_dense), as coreai-opt writes them.
DECOMPRESS = ("blockwise_shift_scale", "lut_to_dense")
_BITS = {"f32": 32, "f16": 16, "bf16": 16, "f64": 64, "i1": 8}


@dataclass(frozen=True)
class Tensor:
    shape: tuple[int, ...]
    dtype: str  # MLIR element type: f32, f16, ui32, si32, i8, ...

    @property
    def bits(self) -> int:
        """Bits per element as stored (sub-byte integers are packed: ui4 is 4)."""
        return _BITS.get(self.dtype) or int("".join(c for c in self.dtype if c.isdigit()) or 32)

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    @property
    def nbytes(self) -> int:
        """Bytes the tensor takes stored (packed for sub-byte integers)."""
        return -(-numel(self.shape) * self.bits // 8)


@dataclass(frozen=True)
class Op:
    kind: str  # the op name without its dialect prefixes: conv2d, broadcasting_batch_matmul, constant
    operands: tuple[int, ...]  # value ids
    results: tuple[int, ...]


@dataclass
class Program:
    function: str
    inputs: list[tuple[str, int]]  # (name, value id)
    outputs: list[tuple[str, int]]
    ops: list[Op]
    tensors: dict[int, Tensor]
    constants: dict[int, np.ndarray] = field(repr=False)
    producer: dict[int, Op] = field(repr=False)

    def compute_ops(self) -> list[Op]:
        return [op for op in self.ops if op.kind not in ("constant", "output")]

    def _origin(self, value: int) -> tuple[int | None, Op | None]:
        """Where a value comes from through data-movement ops: (constant id, None), (None, the op expanding a compressed
        weight) or (None, None) where it is computed at run time."""
        for _ in range(8):
            if value in self.constants:
                return value, None
            op = self.producer.get(value)
            if op is not None and op.kind in DECOMPRESS:
                return None, op
            if op is None or op.kind not in PASS_THROUGH:
                break
            value = op.operands[0]
        return None, None

    def stored(self, value: int) -> np.ndarray | None:
        """The constant a value is read from (None: computed at run time); a compressed weight is expanded as the
        runtime expands it (lookup table, or integer data shifted and scaled per block)."""
        const, op = self._origin(value)
        return self.constants[const] if const is not None else self._expand(op) if op is not None else None

    def storage(self, value: int) -> tuple[str, str] | None:
        """How a weight is stored: (scheme, element type) — ("dense", "f16"), ("lut", "ui4") for palettized indices,
        ("quantized", "si8") — or None where it is computed at run time."""
        const, op = self._origin(value)
        if const is not None:
            return "dense", self.tensors[const].dtype
        if op is not None:
            return ("lut" if op.kind == "lut_to_dense" else "quantized"), self.tensors[op.operands[0]].dtype
        return None

    def _expand(self, op: Op) -> np.ndarray | None:
        args = [self.constants.get(v) for v in op.operands]
        if any(a is None for a in args):
            return None
        if op.kind == "lut_to_dense":  # indices [d0..dn], lut [blocks per axis..., entries, vector]
            indices, lut = args[0].astype(np.int64), args[1]
            if lut.shape[-1] != 1:
                return None  # vector palettization (cluster_dim > 1) is not read back
            blocks = lut.shape[:indices.ndim]
            step = [d // b for d, b in zip(indices.shape, blocks)]
            grid = np.ix_(*[np.arange(d) // s for d, s in zip(indices.shape, step)])
            return lut[..., 0][(*grid, indices)].astype(np.float32)
        data, scale, offset1, offset2 = (a.astype(np.float32) for a in args)  # (data - offset1) * scale + offset2, per block

        def spread(a):
            for axis, (d, b) in enumerate(zip(data.shape, a.shape)):
                a = np.repeat(a, d // b, axis=axis)
            return a
        return (data - spread(offset1)) * spread(scale) + spread(offset2)

    def weight_values(self) -> list[tuple[Op, int]]:
        """(op, weight value id) of every conv and matmul whose second operand is stored in the file."""
        out = []
        for op in self.compute_ops():
            if ("conv" in op.kind or "matmul" in op.kind) and len(op.operands) > 1:
                arr = self.stored(op.operands[1])
                if arr is not None and arr.ndim >= 2:
                    out.append((op, op.operands[1]))
        return out

    def histogram(self) -> dict[str, int]:
        return dict(sorted(collections.Counter(op.kind for op in self.ops if op.kind != "output").items()))


def _tensor(t) -> Tensor:
    from coreai._compiler.ir import RankedTensorType

    rt = RankedTensorType(t)
    return Tensor(tuple(int(s) for s in rt.shape), str(rt.element_type))


def _kind(name: str) -> str:
    return name.removeprefix("coreai.").removeprefix("decomposable.")


def read_program(path: Path, function: str = "main") -> Program:
    """The ops of ``function`` in a saved asset, in program order, with every value's type and every constant."""
    from coreai.authoring.asset import AIModelAsset

    module = AIModelAsset.load(Path(path)).program._module._mlir_module  # noqa: SLF001 (the bytecode's MLIR module)
    graph = None
    for op in module.body.operations:
        attr = op.operation.attributes
        if op.operation.name == "coreai.graph" and "sym_name" in attr and str(attr["sym_name"]).strip('"') == function:
            graph = op.operation
    if graph is None:
        graph = next(op.operation for op in module.body.operations if op.operation.name == "coreai.graph")
    ids: dict = {}

    def vid(value) -> int:
        return ids.setdefault(value, len(ids))

    block = graph.regions[0].blocks[0]
    tensors: dict[int, Tensor] = {}
    args = []
    for a in block.arguments:
        tensors[vid(a)] = _tensor(a.type)
        args.append(vid(a))
    in_names = _io_names(graph, "arg_attrs", len(args)) or [INPUT_NAME] * len(args)
    ops, constants, producer, outputs = [], {}, {}, []
    for inner in block.operations:
        o = inner.operation
        op = Op(_kind(o.name), tuple(vid(v) for v in o.operands), tuple(vid(r) for r in o.results))
        ops.append(op)
        for r, rid in zip(o.results, op.results):
            tensors[rid] = _tensor(r.type)
            producer[rid] = op
        if op.kind == "constant":
            constants[op.results[0]] = _constant(o, tensors[op.results[0]])
        if op.kind == "output":
            outputs = list(op.operands)
    out_names = _io_names(graph, "res_attrs", len(outputs)) or [f"output_{i}" for i in range(len(outputs))]
    return Program(function, list(zip(in_names, args)), list(zip(out_names, outputs)), ops, tensors, constants, producer)


def _constant(op, tensor: Tensor) -> np.ndarray:
    """A constant's value. Large ones are stored as resource blobs, which numpy sees as one opaque object:
    their bytes are copied out by the compiler's own binding (as coreai-opt reads them)."""
    if tensor.bits >= 8:  # numpy cannot view sub-byte elements (the binding aborts the process): copy those out below
        value = np.array(op.attributes["value"])
        if value.dtype != np.object_:
            return value
    from coreai._compiler._mlir_libs._coreaiIR import _bindings

    dtypes = {"f32": np.float32, "f16": np.float16, "si8": np.int8, "ui8": np.uint8, "si16": np.int16, "ui16": np.uint16,
              "si32": np.int32, "ui32": np.uint32}
    buffer = np.zeros(tensor.nbytes, dtype=np.uint8)
    _bindings.compiler.copy_constant_value_to_array(constant_op=op, destination=buffer)
    dtype = dtypes.get(tensor.dtype)
    if dtype is not None:
        return np.frombuffer(buffer.tobytes(), dtype=dtype).reshape(tensor.shape)
    if tensor.bits < 8 and tensor.dtype.startswith(("ui", "si", "i")):  # packed sub-byte integers, least significant bit first
        bits = np.unpackbits(buffer, bitorder="little")[:numel(tensor.shape) * tensor.bits].reshape(-1, tensor.bits)
        values = (bits.astype(np.int64) << np.arange(tensor.bits)).sum(axis=1)
        if tensor.dtype.startswith("si"):
            values = np.where(values >= 1 << (tensor.bits - 1), values - (1 << tensor.bits), values)
        return values.astype(np.int8 if tensor.dtype.startswith("si") else np.uint8).reshape(tensor.shape)
    return buffer


def _io_names(graph, key: str, n: int) -> list[str]:
    """The ``coreai.name`` of each argument or result (empty if the graph does not name them)."""
    from coreai._compiler.ir import DictAttr, StringAttr

    attrs = graph.attributes
    if key not in attrs:
        return []
    names = []
    for entry in attrs[key]:
        d = DictAttr(entry)
        names.append(StringAttr(d["coreai.name"]).value if "coreai.name" in d else "")
    return names if len(names) == n and all(names) else []


def read_metadata(path: Path) -> dict:
    """``metadata.json``: producer, author, license, description and ``creatorDefinedMetadata`` (JSON values)."""
    import json

    return json.loads((Path(path) / "metadata.json").read_text())
