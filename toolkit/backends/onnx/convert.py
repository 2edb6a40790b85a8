"""PyTorch → ONNX (opset 18, dynamo exporter), simplified with onnxsim and checked."""

from __future__ import annotations

import collections
import os
import tempfile
from pathlib import Path

from toolkit.backends.named import named_module

OPSET = 18
INPUT_NAME = "image"


def convert(module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
    import onnx
    import onnxsim
    import torch

    output_names = [o.name for o in spec.outputs]
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        # The dynamo exporter keeps GELU as GELU; the legacy one emits Erf, which TFLite paths cannot run.
        torch.onnx.export(named_module(module, output_names), (sample,), str(raw), dynamo=True, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=output_names, external_data=False, verbose=False)
        model = onnx.load(str(raw))
    simplified, ok = onnxsim.simplify(model)
    if ok:
        model = simplified
    onnx.checker.check_model(model, full_check=True)
    tmp_path = path.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp_path))
    os.replace(tmp_path, path)
    return {"simplified": bool(ok), **inspect(path)}


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

    return {
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "inputs": io(model.graph.input),
        "outputs": io(model.graph.output),
        "op_histogram": dict(sorted(ops.items())),
        "transpose_count": ops.get("Transpose", 0),
        "weight_dtypes": dict(collections.Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer)),
    }
