"""Reading an ONNX artifact: ONNX Runtime runner, structural checks, weights and cost from the graph."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from toolkit.backends.base import ArtifactWeight, Cost, Runner, check, numel, per_sample
from toolkit.backends.onnx.convert import INPUT_NAME, OPSET
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


def structural_checks(details: dict, *, input_shape: tuple[int, ...], output_shapes: Mapping[str, tuple[int, ...]]) -> list[dict]:
    """Opset, the contract's input, every declared output by name and shape, float32 initializers."""
    out = [check("opset", details.get("opset"), OPSET, details.get("opset") == OPSET)]
    inputs = details.get("inputs", [])
    got_in = [(i["name"], tuple(i["shape"])) for i in inputs]
    out.append(check("input matches contract", [[n, list(s)] for n, s in got_in], [[INPUT_NAME, list(input_shape)]],
                     got_in == [(INPUT_NAME, tuple(input_shape))]))
    got_out = [(o["name"], tuple(o["shape"])) for o in details.get("outputs", [])]
    want_out = [(n, tuple(s)) for n, s in output_shapes.items()]
    out.append(check("outputs match reference (names, shapes)", [[n, list(s)] for n, s in got_out],
                     [[n, list(s)] for n, s in want_out], got_out == want_out))
    dtypes = details.get("weight_dtypes", {})
    other = {k: v for k, v in dtypes.items() if k not in ("FLOAT", "INT64")}  # int64: shape constants
    out.append(check("float32 initializers", dtypes, "FLOAT (and INT64 shape constants)", not other))
    return out


def weights(path: Path) -> list[ArtifactWeight]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in inits:
            arr = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            if arr.ndim >= 2:
                out.append(ArtifactWeight(node.name or node.input[1], arr))
    return out


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
    macs = 0
    for node in g.node:
        if node.op_type == "Conv":  # weight O, I/g, kh, kw
            macs += numel(shapes[node.output[0]]) * numel(shapes[node.input[1]][1:])
        elif node.op_type == "ConvTranspose":  # weight I, O/g, kh, kw
            macs += numel(shapes[node.input[0]]) * numel(shapes[node.input[1]][1:])
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes[node.input[0]]
            k = a[-2] if node.op_type == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute) else a[-1]
            macs += numel(shapes[node.output[0]]) * k
    acts = sum(numel(shapes[o]) * elem.get(o, 4) for n in g.node for o in n.output if o in shapes)
    acts += sum(numel(shapes[i.name]) * elem[i.name] for i in g.input if i.name not in inits)
    return Cost("onnx", macs, sum(a.size for a in inits.values()), sum(a.nbytes for a in inits.values()), acts,
                tuple(n.op_type for n in g.node))


def int8_baseline(onnx_path: Path, calibration: np.ndarray, out_dir: Path) -> Path:
    """An ONNX Runtime int8 model (QDQ, uint8 activations, per-channel int8 weights) quantized from the
    bundle's float ONNX on calibration images: the int8 baseline ORT users would build."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{name: calibration[i:i + 1].astype(np.float32)} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    out = out_dir / (onnx_path.stem + "_ort_int8.onnx")
    quantize_static(str(onnx_path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out
