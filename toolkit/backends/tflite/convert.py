"""PyTorch → TFLite through litert-torch; weight and activation quantization through AI Edge Quantizer.

The float graph is lowered once per export (``litert_torch.signature``: named signature, input
``image``, output named after the spec) from the DeviceContract-wrapped network, so CNNs come out
channel-last with no TRANSPOSE. Every quantized variant is derived from that float flatbuffer, and
the skinkit metadata (name, version, labels, contract, outputs) is embedded as a flatbuffer
``metadata`` entry that ``flatbuffer.read_metadata`` reads back.
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path

import numpy as np

from toolkit.backends.tflite.flatbuffer import METADATA_NAME, as_text, enum_names, inspect, inspect_input_name, model_of
from toolkit.errors import ConversionError

INPUT_NAME = "image"
_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")
# AI Edge Quantizer recipe per precision (fp16 is configured op by op below).
_RECIPES = {
    "int8_weights": "weight_only_wi8_afp32",
    "dynamic_int8": "dynamic_wi8_afp32",
    "int8": "static_wi8_ai8",
    "int16x8": "static_wi8_ai16",
}
# A spec whose extra sets this keeps its post-processing float in full-integer targets (``ModelSpec.extra``).
FLOAT_POSTPROCESS = "float_postprocess"
_TOP_LEVEL_OPS = r"_model;\d*;"  # litert-torch names an op of the network's own forward "<scope>/<Class>_model;<n>"
# The float flatbuffer of a module, so that every TFLite target of one export lowers it once.
_FLOAT_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _float_postprocess(spec, precision: str) -> bool:
    """Whether this full-integer target keeps the network's post-processing float (``ModelSpec.extra``)."""
    return bool(getattr(spec, "extra", {}).get(FLOAT_POSTPROCESS)) and precision in ("int8", "int16x8")


def signature_key(spec) -> str:
    return spec.task


def _float_flatbuffer(module, sample, spec) -> bytes:
    import litert_torch
    import torch

    key = (tuple(sample.shape), spec.name)
    cached = _FLOAT_CACHE.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]

    from toolkit.outputs import name_outputs

    names = tuple(o.name for o in spec.outputs)

    class Named(torch.nn.Module):  # names the signature's input and output tensors
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            return name_outputs(self.inner(image), names)

    data = litert_torch.signature(signature_key(spec), Named(module), sample_kwargs={INPUT_NAME: sample}).convert().model_content()
    _FLOAT_CACHE[module] = (key, data)
    return data


# ---------------------------------------------------------------------------------------------- writing

def _embed_metadata(data: bytes, meta: dict) -> bytes:
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    m = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    for b in m.buffers:  # the quantizer's buffers read back as bytearrays, which flatbuffers packs one byte per call
        if isinstance(b.data, (bytes, bytearray)):  # (a full-size ResNet-50's fp16 weights: 25 s instead of 0.3)
            b.data = np.frombuffer(bytes(b.data), dtype=np.uint8)
    m.metadata = [md for md in (m.metadata or []) if as_text(md.name) != METADATA_NAME]
    buf = fb.BufferT()
    buf.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    m.buffers.append(buf)
    md = fb.MetadataT()
    md.name = METADATA_NAME
    md.buffer = len(m.buffers) - 1
    m.metadata.append(md)
    m.description = f"skinkit: {meta.get('model', '')} {meta.get('precision', '')}".strip()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def _fp16_weights(q) -> None:
    from ai_edge_quantizer import qtyping, quantizer

    for op in _WEIGHT_OPS:
        q.update_quantization_recipe(
            regex=".*",
            operation_name=getattr(qtyping.TFLOperationName, op if op != "TRANSPOSE_CONV" else "CONV_2D_TRANSPOSE"),
            algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING,
            op_config=qtyping.OpQuantizationConfig(
                weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                compute_precision=qtyping.ComputePrecision.FLOAT,
                explicit_dequantize=True,
            ),
        )


def layer_scope_regex(module_path: str) -> str:
    """The regex that finds a PyTorch layer's weight tensor by name. litert-torch names tensors after
    the module stack that made them, e.g. ``…MobileNetV2_model/…Sequential_features/…InvertedResidual_1/
    …Sequential_block/…ConvBNAct_0/torch.nn.modules.conv.Conv2d_0;`` for ``features.1.block.0.0``."""
    import re

    return "_model/" + "/".join(f"[^/;]*_{re.escape(part)}" for part in module_path.split(".")) + ";"


def layer_ops(model, layer: str) -> list:
    """The weighted ops (conv, depthwise, fully-connected, transposed conv) of a PyTorch layer, found
    by their weight tensor's name (output names do not always carry it: a graph output is renamed)."""
    import re

    from ai_edge_litert import schema_py_generated as fb

    sg = model.subgraphs[0]
    op_names = enum_names(fb.BuiltinOperator)
    kinds = [op_names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), "?") for oc in model.operatorCodes]
    rx = re.compile(layer_scope_regex(layer))
    return [op for op in sg.operators if kinds[op.opcodeIndex] in _WEIGHT_OPS and rx.search(as_text(sg.tensors[op.inputs[1]].name))]


def kept_outputs(float_path: Path, module, layers: tuple[str, ...]) -> dict[str, list[str]]:
    """Each PyTorch layer's weighted ops in the float flatbuffer, as their output tensor names (the
    quantizer scopes ops by those). Found by the weight tensor's scope name; where litert-torch named the
    tensor after a parent instead (a model's last Linear, the children of a ModuleList), by matching the
    weights' values to the PyTorch layer's (BatchNorm folded, any axis order). A layer found neither way
    is an error: mixed precision that silently quantized everything is not mixed."""
    fm = model_of(float_path)
    sg = fm.subgraphs[0]
    found = {layer: [as_text(sg.tensors[op.outputs[0]].name) for op in layer_ops(fm, layer)] for layer in layers}
    missing = [k for k, v in found.items() if not v]
    if missing and module is not None:
        from toolkit.backends.tflite.graph import weights
        from toolkit.backends.weights import fold_batchnorm, match_weights, matchable_layers

        network = matchable_layers(fold_batchnorm(getattr(module, "model", module)))
        candidates = {n: network[n] for n in missing if n in network}
        weight_of = {op.inputs[1]: op for op in sg.operators if len(op.inputs) > 1}
        for layer, (aw, _, _) in match_weights(candidates, weights(float_path)).items():
            op = weight_of.get(int(aw.name.split()[1]))  # "tensor <index> (<OP>)"
            if op is not None:
                found[layer] = [as_text(sg.tensors[op.outputs[0]].name)]
    missing = [k for k, v in found.items() if not v]
    if missing:
        raise ConversionError(f"mixed precision: layers not found: {', '.join(missing)} (neither by name nor by weights in the TFLite graph)",
                              fix="name conv / linear layers by their module path (see the culprit ranking)")
    return found


def _quantize(float_path: Path, precision: str, spec, calibration: np.ndarray | None, input_range: tuple[float, float],
              keep_float: dict[str, list[str]] | None = None) -> bytes:
    from ai_edge_quantizer import qtyping, quantizer, recipe

    q = quantizer.Quantizer(str(float_path))
    if precision == "fp16":
        _fp16_weights(q)
        return q.quantize(enable_progress_report=False).quantized_model
    q.load_quantization_recipe(getattr(recipe, _RECIPES[precision])())
    if _float_postprocess(spec, precision):
        # The ops the network's own forward runs outside its layers are scoped "<…>_model;<n>": they stay float.
        q.update_quantization_recipe(regex=_TOP_LEVEL_OPS, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                     algorithm_key=quantizer.AlgorithmName.NO_QUANTIZE)
    if keep_float:  # mixed precision: these layers' ops stay float, with (de)quantize around them
        import re

        for names in keep_float.values():
            for name in names:  # the quantizer scopes an op by "<output name>;"
                q.update_quantization_recipe(regex=f"^{re.escape(name)};$", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                             algorithm_key=quantizer.AlgorithmName.NO_QUANTIZE)
    if not q.need_calibration:
        return q.quantize(enable_progress_report=False).quantized_model
    if calibration is None or len(calibration) == 0:
        raise ConversionError(f"tflite {precision} needs calibration images and none were given",
                              fix="add a `calibration:` section to the recipe (synthetic or a folder of images)")
    stats = _cached_ranges(q, float_path, signature_key(spec), calibration)
    # The input is the device contract (pixels): quantize its full range, not just the range the
    # calibration images happened to reach, so a bright pixel never saturates.
    in_name = inspect_input_name(float_path)
    if in_name in stats:
        lo, hi = input_range
        stats[in_name] = {"min": np.full_like(np.asarray(stats[in_name]["min"], dtype=np.float32), lo),
                          "max": np.full_like(np.asarray(stats[in_name]["max"], dtype=np.float32), hi)}
    return q.quantize(stats, enable_progress_report=False).quantized_model


_RANGES_CACHE: dict = {}  # (float model, calibration images) -> activation ranges; mixed-precision probes reuse them


def _cached_ranges(q, float_path: Path, key: str, calibration: np.ndarray) -> dict:
    import hashlib

    ident = (hashlib.sha256(Path(float_path).read_bytes()).hexdigest(), hashlib.sha256(calibration.tobytes()).hexdigest())
    if ident not in _RANGES_CACHE:
        _RANGES_CACHE.clear()  # one model at a time
        _RANGES_CACHE[ident] = _global_ranges(q, key, calibration, float_path)
    return {k: dict(v) for k, v in _RANGES_CACHE[ident].items()}


def _global_ranges(q, key: str, calibration: np.ndarray, float_path: Path | None = None) -> dict:
    """Activation ranges over all calibration images: one interpreter (every tensor kept) runs every image, and each
    tensor's range is the true extremes over them. The quantizer's own update keeps a moving average of per-image
    min/max, which clipped MobileNet's logits to a third of their range (cosine 0.957); calling ``q.calibrate`` image
    by image instead built one interpreter per image (a full-size ResNet-50's int8 export peaked at 5 GB)."""
    from ai_edge_quantizer import calibrator, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(q.get_quantization_recipe())
    model = Path(float_path).read_bytes() if float_path is not None else bytes(q._float_model_buffer)  # noqa: SLF001
    calib = calibrator.Calibrator(model, num_threads=_threads(), qsv_update_func=_extremes)
    calib.calibrate({key: [{INPUT_NAME: calibration[i:i + 1].astype(np.float32)} for i in range(len(calibration))]}, manager)
    return {name: dict(qsv) for name, qsv in calib.get_model_qsvs().items()}


def _extremes(qsv: dict, new: dict) -> dict:
    """Merge one image's ranges into the running ones: true extremes (``Calibrator``'s ``qsv_update_func``)."""
    if not qsv:
        return new
    if "min" not in new or "max" not in new:
        return qsv
    return {**qsv, "min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}


def _threads() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _kept_float(path: Path, keep: dict[str, list[str]]) -> dict:
    """Each kept layer and whether its weighted ops really stayed float in the written file."""
    from ai_edge_litert import schema_py_generated as fb

    m = model_of(path)
    sg = m.subgraphs[0]
    dtype_names = enum_names(fb.TensorType)
    by_output = {as_text(sg.tensors[op.outputs[0]].name): op for op in sg.operators if len(op.inputs) > 1}
    found = {layer: sorted({dtype_names[sg.tensors[by_output[n].inputs[1]].type].lower() for n in names if n in by_output})
             for layer, names in keep.items()}
    missing = [k for k, v in found.items() if not v]
    quantized = [k for k, v in found.items() if v and v != ["float32"]]
    if missing or quantized:
        raise ConversionError(f"mixed precision: layers {missing + quantized} were not kept float in the TFLite file "
                              f"({'not found: ' + ', '.join(missing) if missing else ''}{'; still quantized: ' + ', '.join(quantized) if quantized else ''})",
                              fix="name conv / linear layers by their module path (see the culprit ranking)")
    return {"layers": list(keep), "weight_dtypes": found}


def _check_applied(precision: str, details: dict) -> dict:
    """Quantization that was asked for must be in the file; never silently float."""
    dtypes, ops = details["tensor_dtypes"], details["op_histogram"]
    in_dtype = details["inputs"][0]["dtype"]
    checks = {
        "fp16": ("float16", dtypes.get("float16", 0) > 0),
        # Weight-only: int8 constants dequantized by DEQUANTIZE ops; dynamic range: consumed directly.
        "int8_weights": ("int8", dtypes.get("int8", 0) > 0 and ops.get("DEQUANTIZE", 0) > 0),
        "dynamic_int8": ("int8", dtypes.get("int8", 0) > 0 and ops.get("DEQUANTIZE", 0) == 0),
        "int8": ("int8", in_dtype == "int8" and dtypes.get("int8", 0) > 0),
        "int16x8": ("int16", in_dtype == "int16" and dtypes.get("int8", 0) > 0),
    }
    if precision not in checks:
        return {}
    what, ok = checks[precision]
    if not ok:
        raise ConversionError(f"{precision} was requested but the TFLite file is not quantized as asked "
                              f"(weight dtypes {dtypes}, input {in_dtype}, ops {ops})",
                              fix="check that the model has conv or fully-connected layers; otherwise export fp32")
    return {"quantized_weight_tensors": dtypes.get("int8", dtypes.get("float16", 0)), "quantized_dtype": what}


def convert(module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
    tmp = path.with_name(f".{path.name}.tmp")
    float_tmp = path.with_name(f".{path.name}.float.tmp")
    try:
        data = _float_flatbuffer(module, sample, spec)
        if precision != "fp32":
            float_tmp.write_bytes(data)
            lo, hi = (0.0, 255.0) if options.get("pixel_range", "0-255") == "0-255" else (0.0, 1.0)
            keep = kept_outputs(float_tmp, module, tuple(options["keep_float"])) if options.get("keep_float") else None
            data = _quantize(float_tmp, precision, spec, options.get("calibration"), (lo, hi), keep)
        meta = dict(options.get("metadata", {}), precision=precision, signature=signature_key(spec))
        tmp.write_bytes(_embed_metadata(data, meta))
        details = inspect(tmp)
        details.update(_check_applied(precision, details))
        if precision != "fp32" and options.get("keep_float"):
            details["kept_float"] = _kept_float(tmp, keep)
        if _float_postprocess(spec, precision):
            details["float_postprocess"] = "the network's own ops outside its layers kept float; its layers quantized"
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        float_tmp.unlink(missing_ok=True)
    return details
