"""PyTorch → TFLite through litert-torch; fp16 weights through AI Edge Quantizer's float casting."""

from __future__ import annotations

import collections
import os
import weakref
from pathlib import Path

from toolkit.errors import ConversionError

_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE")
# The float flatbuffer of a module, so that fp32 and fp16 targets of one export lower it once.
_FLOAT_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _float_flatbuffer(module, sample) -> bytes:
    import litert_torch

    key = tuple(sample.shape)
    cached = _FLOAT_CACHE.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    data = litert_torch.convert(module.eval(), (sample,)).model_content()
    _FLOAT_CACHE[module] = (key, data)
    return data


def inspect(path: Path) -> dict:
    """Op histogram, tensor dtypes of constant tensors and transpose count, read from the file."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    ops = collections.Counter(op["op_name"] for op in interp._get_ops_details())
    const_dtypes: collections.Counter = collections.Counter()
    for t in interp.get_tensor_details():
        # Constant tensors have no runtime buffer index shared with inputs; their data is in the file.
        try:
            interp.get_tensor(t["index"])
        except ValueError:
            continue
        if t["name"] and len(t["shape"]) >= 1 and t["index"] not in {d["index"] for d in interp.get_input_details()}:
            const_dtypes[t["dtype"].__name__] += 1
    sigs = interp.get_signature_list()
    return {
        "op_histogram": dict(sorted(ops.items())),
        "transpose_count": ops.get("TRANSPOSE", 0),
        "tensor_dtypes": dict(const_dtypes),
        "signatures": sorted(sigs),
    }


def _fp16_weights(float_path: Path, out_path: Path) -> None:
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(str(float_path))
    for op in _WEIGHT_OPS:
        q.update_quantization_recipe(
            regex=".*",
            operation_name=getattr(qtyping.TFLOperationName, op),
            algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING,
            op_config=qtyping.OpQuantizationConfig(
                weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                compute_precision=qtyping.ComputePrecision.FLOAT,
                explicit_dequantize=True,
            ),
        )
    result = q.quantize(enable_progress_report=False)
    out_path.write_bytes(result.quantized_model)


def convert(module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
    tmp = path.with_suffix(".tflite.tmp")
    tmp.write_bytes(_float_flatbuffer(module, sample))
    if precision == "fp16":
        float_tmp = path.with_suffix(".fp32.tmp")
        os.replace(tmp, float_tmp)
        try:
            _fp16_weights(float_tmp, tmp)
        finally:
            float_tmp.unlink(missing_ok=True)
    details = inspect(tmp)
    if precision == "fp16":
        n16 = details["op_histogram"].get("DEQUANTIZE", 0)
        if n16 == 0:
            tmp.unlink(missing_ok=True)
            raise ConversionError("fp16 was requested but the TFLite file has no float16 weights (quantization not applied)",
                                  fix="check that the model has conv or fully-connected layers; otherwise export fp32")
        details["fp16_weight_ops"] = n16
    os.replace(tmp, path)
    return details
