"""What an artifact costs to run, read from its graph: MACs, parameters, weight bytes, activation bytes.

- MACs count the multiply-accumulates of convolutions, transposed convolutions, fully-connected layers
  and matrix products (elementwise ops, pooling and normalization are not MACs and are left out).
- Parameters are the elements of the graph's constant tensors; weight bytes are what the file stores
  for them (Core ML: the size of its weight blob, so palettized / sparse / int4 storage counts as stored).
- Activation bytes are the sizes of every tensor an op writes, at the dtype the graph declares; a phone
  moves about weights + 2 × activations per inference (each activation written once, read at least once).
- ``op_sequence`` lists op types in execution order, for counting the partitions an accelerator makes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

_ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "bool": 1,
             "fp32": 4, "fp16": 2, "fp64": 8, "float64": 8}


@dataclass(frozen=True)
class Cost:
    format: str
    macs: int
    params: int
    weight_bytes: int
    activation_bytes: int
    op_sequence: tuple[str, ...] = field(repr=False)

    @property
    def traffic_bytes(self) -> int:
        """Bytes an inference moves through memory, at least: weights once, activations written and read."""
        return self.weight_bytes + 2 * self.activation_bytes

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("op_sequence")
        d.update(ops=len(self.op_sequence), traffic_bytes=self.traffic_bytes)
        return d


def _numel(shape) -> int:
    return int(np.prod([int(s) for s in shape])) if len(shape) else 1


def _tflite(path: Path) -> Cost:
    from toolkit.convert.tflite import graph_interpreter

    interp = graph_interpreter(path)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # noqa: SLF001 (the interpreter has no public op table)
    produced = {o for op in ops for o in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    used = {i for op in ops for i in op["inputs"] if i >= 0}
    constants = {i for i in used if i not in produced and i not in graph_inputs}

    def nbytes(i: int) -> int:
        d = details[i]
        return _numel(d["shape"]) * np.dtype(d["dtype"]).itemsize

    def shape(i: int):
        return [int(s) for s in details[i]["shape"]]

    # A DEQUANTIZE of a constant (fp16 / weight-only int8 storage) is unpacked once at load, not per inference.
    unpacked = {o for op in ops if op["op_name"] == "DEQUANTIZE" and op["inputs"][0] in constants for o in op["outputs"]}
    macs = 0
    for op in ops:
        name, ins, outs = op["op_name"], op["inputs"], op["outputs"]
        if name == "CONV_2D":  # weights O, H, W, I
            _, kh, kw, cin = shape(ins[1])
            macs += _numel(shape(outs[0])) * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D":  # weights 1, H, W, O
            _, kh, kw, _ = shape(ins[1])
            macs += _numel(shape(outs[0])) * kh * kw
        elif name == "FULLY_CONNECTED":  # weights O, I
            macs += _numel(shape(outs[0])) * shape(ins[1])[-1]
        elif name == "TRANSPOSE_CONV":  # (output shape, weights O, H, W, I, input): each input scatters kh·kw·O
            cout, kh, kw, _ = shape(ins[1])
            macs += _numel(shape(ins[2])) * kh * kw * cout
        elif name == "BATCH_MATMUL":
            macs += _numel(shape(outs[0])) * shape(ins[0])[-1]
    return Cost("tflite", macs, sum(_numel(shape(i)) for i in constants), sum(nbytes(i) for i in constants),
                sum(nbytes(o) for op in ops for o in op["outputs"] if o not in unpacked) + sum(nbytes(i) for i in graph_inputs),
                tuple(op["op_name"] for op in ops if not set(op["outputs"]) <= unpacked))


def _onnx(path: Path) -> Cost:
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes: dict[str, list[int]] = {}
    elem: dict[str, int] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        shapes[vi.name] = [d.dim_value for d in t.shape.dim]
        elem[vi.name] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
    for name, arr in inits.items():
        shapes[name] = list(arr.shape)
    macs = 0
    for node in g.node:
        if node.op_type == "Conv":  # weight O, I/g, kh, kw
            macs += _numel(shapes[node.output[0]]) * _numel(shapes[node.input[1]][1:])
        elif node.op_type == "ConvTranspose":  # weight I, O/g, kh, kw
            macs += _numel(shapes[node.input[0]]) * _numel(shapes[node.input[1]][1:])
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes[node.input[0]]
            k = a[-2] if node.op_type == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute) else a[-1]
            macs += _numel(shapes[node.output[0]]) * k
    acts = sum(_numel(shapes[o]) * elem.get(o, 4) for n in g.node for o in n.output if o in shapes)
    acts += sum(_numel(shapes[i.name]) * elem[i.name] for i in g.input if i.name not in inits)
    return Cost("onnx", macs, sum(a.size for a in inits.values()), sum(a.nbytes for a in inits.values()), acts,
                tuple(n.op_type for n in g.node))


def _coreml(path: Path) -> Cost:
    from toolkit.verify.mil import MILProgram, _dtype_name

    prog = MILProgram(path)
    macs = 0
    compute = [op for op in prog.ops if not MILProgram._is_constant(op)]  # noqa: SLF001
    for op in compute:
        out = op.outputs[0].shape if op.outputs else ()
        if op.op_type in ("conv", "linear", "matmul", "conv_transpose"):
            w = op.inputs.get("weight", op.inputs.get("y"))
            if w is None or w.shape is None:
                continue
            if op.op_type == "conv":  # weight O, I/g, kh, kw
                macs += _numel(out) * _numel(w.shape[1:])
            elif op.op_type == "conv_transpose":  # weight I, O/g, kh, kw
                macs += _numel(op.inputs["x"].shape) * _numel(w.shape[1:])
            else:
                macs += _numel(out) * int(op.inputs["x"].shape[-1])
    params = sum(np.asarray(v).size for v in prog._constants.values() if hasattr(v, "shape") and len(v.shape) >= 1)  # noqa: SLF001
    blob = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    weight_bytes = blob.stat().st_size if blob.exists() else 0
    acts = 0
    for op in compute:
        for v in op.outputs:
            if v.shape is not None and all(isinstance(s, (int, np.integer)) for s in v.shape):
                acts += _numel(v.shape) * _ITEMSIZE.get(_dtype_name(v) or "fp32", 4)
    acts += sum(_numel(v.shape) * _ITEMSIZE.get(_dtype_name(v) or "fp32", 4) for v in prog.function.inputs.values())
    return Cost("coreml", macs, int(params), weight_bytes, acts, tuple(op.op_type for op in compute))


def artifact_cost(path: str | Path) -> Cost:
    """The cost of one artifact, from its own graph."""
    from toolkit.convert.inspect import _format_of

    path = Path(path)
    return {"tflite": _tflite, "onnx": _onnx, "coreml": _coreml}[_format_of(path)](path)
