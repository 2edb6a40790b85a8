"""PyTorch → ONNX (opset 18, dynamo exporter), simplified with onnxsim and checked; ``int8``: that float model
quantized to QDQ on the calibration images (``toolkit.backends.onnx.quantize``)."""

from __future__ import annotations

import collections
import os
import tempfile
from pathlib import Path

from toolkit.backends.named import named_module
from toolkit.errors import ConversionError

OPSET = 18
INPUT_NAME = "image"


def convert(module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
    import onnx

    if precision == "int8":
        calibration = options.get("calibration")
        if calibration is None or len(calibration) == 0:
            raise ConversionError("onnx int8 needs calibration images and none were given",
                                  fix="add a `calibration:` section to the recipe (synthetic or a folder of images)")
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        model, simplified = _float_model(module, sample, spec, Path(tmp))
        if precision == "int8":
            from toolkit.backends.onnx.quantize import quantize_int8

            float_path = Path(tmp) / "float.onnx"
            onnx.save(model, str(float_path))
            pixels = (0.0, 255.0) if options.get("pixel_range", "0-255") == "0-255" else (0.0, 1.0)
            quantize_int8(float_path, Path(tmp) / "int8.onnx", calibration, input_range=pixels, layers_only=_float_postprocess(spec))
            model = onnx.load(str(Path(tmp) / "int8.onnx"))
    onnx.checker.check_model(model, full_check=True)
    tmp_path = path.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp_path))
    os.replace(tmp_path, path)
    details = {"simplified": simplified, **inspect(path)}
    if precision == "int8" and _float_postprocess(spec):
        details["float_postprocess"] = "only the conv / linear / matmul layers with stored weights quantized; every other op float"
    return details


def _float_postprocess(spec) -> bool:
    """The spec keeps its post-processing float in full-integer targets (``ModelSpec.extra``, as TFLite does)."""
    return bool(getattr(spec, "extra", {}).get("float_postprocess"))


def _float_model(module, sample, spec, tmp: Path):
    """The float32 graph: exported with the dynamo exporter, simplified with onnxsim where it can."""
    import onnx
    import onnxsim
    import torch

    output_names = [o.name for o in spec.outputs]
    raw = tmp / "raw.onnx"
    # The dynamo exporter keeps GELU as GELU; the legacy one emits Erf, which TFLite paths cannot run.
    torch.onnx.export(named_module(module, output_names), (sample,), str(raw), dynamo=True, opset_version=OPSET,
                      input_names=[INPUT_NAME], output_names=output_names, external_data=False, verbose=False)
    model = onnx.load(str(raw))
    simplified, ok = onnxsim.simplify(model)
    return (simplified if ok else model), bool(ok)


def inspect(path: Path) -> dict:
    """Opset, I/O, op histogram and initializer dtypes, read from the file."""
    import onnx

    model = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in model.graph.node)
    init = {t.name for t in model.graph.initializer}

    def io(values):
        return [{"name": v.name, "dtype": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower(),
                 "shape": [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]}
                for v in values if v.name not in init]

    out = {
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "inputs": io(model.graph.input),
        "outputs": io(model.graph.output),
        "op_histogram": dict(sorted(ops.items())),
        "transpose_count": ops.get("Transpose", 0),
        "weight_dtypes": dict(collections.Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer)),
    }
    if ops.get("QuantizeLinear") or ops.get("DequantizeLinear"):
        from toolkit.backends.onnx.qdq import quantization

        out["quantization"] = quantization(model)
    return out
