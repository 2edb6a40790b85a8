"""Reading an ONNX artifact: ONNX Runtime runner, structural checks, weights and cost from the graph."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from toolkit.backends.base import ArtifactWeight, Cost, OpTally, Runner, check, numel, per_sample
from toolkit.backends.onnx.convert import INPUT_NAME, OPSET
from toolkit.backends.onnx.qdq import weight_sources
from toolkit.errors import VerificationError


def runner(path: Path, *, threads: int = 2) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise VerificationError(f"ONNX Runtime cannot load {path.name}: {str(exc).strip()[:300]}",
                                fix="re-export; check the opset and the ops reported by `skinkit inspect`") from None
    name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]

    def one(x: np.ndarray) -> dict:
        return dict(zip(names, sess.run(names, {name: x.astype(np.float32)})))

    return Runner(per_sample(one), check="onnxruntime (CPU)")


def structural_checks(details: dict, precision: str = "fp32", *, input_shape: tuple[int, ...],
                      output_shapes: Mapping[str, tuple[int, ...]]) -> list[dict]:
    """Opset, the contract's input, every declared output by name and shape; float32 initializers, or for ``int8``
    a QDQ graph whose every conv / linear / matmul weight is stored int8 (per output channel on convs) and whose
    activations are quantized."""
    out = [check("opset", details.get("opset"), OPSET, details.get("opset") == OPSET)]
    inputs = details.get("inputs", [])
    got_in = [(i["name"], tuple(i["shape"])) for i in inputs]
    out.append(check("input matches contract", [[n, list(s)] for n, s in got_in], [[INPUT_NAME, list(input_shape)]],
                     got_in == [(INPUT_NAME, tuple(input_shape))]))
    got_out = [(o["name"], tuple(o["shape"])) for o in details.get("outputs", [])]
    want_out = [(n, tuple(s)) for n, s in output_shapes.items()]
    out.append(check("outputs match reference (names, shapes)", [[n, list(s)] for n, s in got_out],
                     [[n, list(s)] for n, s in want_out], got_out == want_out))
    if precision == "int8":
        return out + _int8_checks(details)
    dtypes = details.get("weight_dtypes", {})
    other = {k: v for k, v in dtypes.items() if k not in ("FLOAT", "INT64")}  # int64: shape constants
    out.append(check("float32 initializers", dtypes, "FLOAT (and INT64 shape constants)", not other))
    return out


def _int8_checks(details: dict) -> list[dict]:
    ops = details.get("op_histogram", {})
    q = details.get("quantization", {})
    n_q, n_dq = ops.get("QuantizeLinear", 0), ops.get("DequantizeLinear", 0)
    weighted, stored = q.get("weighted_ops", 0), q.get("weight_dtypes", {})
    convs, per_channel = q.get("convs", 0), q.get("per_channel_convs", 0)
    activations = q.get("activation_dtypes", {})
    return [
        check("QDQ graph (QuantizeLinear / DequantizeLinear)", min(n_q, n_dq), 1, n_q >= 1 and n_dq >= 1, ">="),
        check("every conv / linear / matmul weight stored int8", stored, f"INT8 x {weighted}",
              weighted > 0 and stored == {"INT8": weighted}),
        check("per-channel weight scales on every conv", f"{per_channel} of {convs}", convs, per_channel == convs),
        check("int8 activations (quantized by QuantizeLinear)", activations, "UINT8 or INT8",
              bool(activations) and set(activations) <= {"UINT8", "INT8"}),
    ]


def weights(path: Path) -> list[ArtifactWeight]:
    """Every conv / linear / matmul weight, float32: a QDQ graph's int8 weights dequantized with their own scales and
    zero points (per channel along the DequantizeLinear's axis)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for node, stored, dq in weight_sources(model):
        arr = numpy_helper.to_array(inits[stored]).astype(np.float32)
        if dq is not None:
            arr = _dequantize(arr, dq, inits)
        if arr.ndim >= 2:
            out.append(ArtifactWeight(node.name or stored, arr))
    return out


def _dequantize(q: np.ndarray, dq, inits) -> np.ndarray:
    """ONNX DequantizeLinear: ``(q - zero_point) * scale``, a rank-1 scale and zero point along ``axis`` (default 1)."""
    from onnx import numpy_helper

    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
    zero = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 and dq.input[2] else np.zeros_like(scale)
    if scale.ndim == 1:
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % q.ndim
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q - zero) * scale


def cost(path: Path) -> Cost:
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
    macs, tally = 0, OpTally()
    producer = {o: n.op_type for n in g.node for o in n.output}
    for node in g.node:
        out = numel(shapes[node.output[0]]) if node.output and node.output[0] in shapes else 0
        if node.op_type == "Conv":  # weight O, I/g, kh, kw
            w = shapes[node.input[1]]
            n = numel(shapes[node.output[0]]) * numel(w[1:])
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            tally.add("depthwise" if group > 1 and w[1] == 1 else "conv", n)
        elif node.op_type == "ConvTranspose":  # weight I, O/g, kh, kw
            n = numel(shapes[node.input[0]]) * numel(shapes[node.input[1]][1:])
            tally.add("conv", n)
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes[node.input[0]]
            k = a[-2] if node.op_type == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute) else a[-1]
            n = numel(shapes[node.output[0]]) * k
            tally.add("matmul", n)
        else:
            n = 0
            fused = node.op_type in FUSED_ACTIVATIONS and producer.get(node.input[0]) in FUSES_ACTIVATION
            tally.add(None if fused or node.op_type in FREE_OPS else "memory" if node.op_type in MEMORY_OPS else "elementwise", out)
        macs += n
    acts = sum(numel(shapes[o]) * elem.get(o, 4) for o in _stored_activations(g) if o in shapes)
    acts += sum(numel(shapes[i.name]) * elem[i.name] for i in g.input if i.name not in inits)
    # QDQ: the runtime fuses each quantize / dequantize pair into the int8 op between them; scales and zero points
    # are stored, but are no parameters.
    ops = tuple(n.op_type for n in g.node if n.op_type not in QDQ_OPS)
    qparams = {i for n in g.node if n.op_type in QDQ_OPS for i in n.input[1:]}
    params = sum(a.size for name, a in inits.items() if name not in qparams)
    return Cost("onnx", macs, params, sum(a.nbytes for a in inits.values()), acts, ops, tally.totals)


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Op classes for the device cost model (``toolkit.backends.base.OP_CLASSES``); any other op is elementwise.
MEMORY_OPS = frozenset({"Resize", "Upsample"})
FREE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant", "ConstantOfShape",
                      "Cast", "Dropout", *QDQ_OPS})
FUSED_ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu", "BatchNormalization"})
FUSES_ACTIVATION = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Add"})  # as TFLite's fused_activation_function


def _stored_activations(g) -> list[str]:
    """The tensors an inference writes. In a QDQ graph a DequantizeLinear's float output and a float tensor that only
    feeds a QuantizeLinear exist on paper only: the runtime's fused int8 kernels write the quantized tensor."""
    consumers: dict[str, list[str]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    out = []
    for n in g.node:
        if n.op_type == "DequantizeLinear":
            continue
        out += [o for o in n.output if not (consumers.get(o) and set(consumers[o]) == {"QuantizeLinear"})]
    return out


def int8_baseline(onnx_path: Path, calibration: np.ndarray, out_dir: Path) -> Path:
    """The int8 baseline ORT users would build from the bundle's float ONNX: the same QDQ quantization as the
    ``onnx`` ``int8`` target (``toolkit.backends.onnx.quantize``), on ``calibration`` images."""
    from toolkit.backends.onnx.quantize import quantize_int8

    return quantize_int8(onnx_path, out_dir / (onnx_path.stem + "_ort_int8.onnx"), calibration)
