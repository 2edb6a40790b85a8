"""PyTorch → Core ML ``.mlpackage`` (ML program) through coremltools from a TorchScript trace.

Image models take an ``ImageType`` (a CVPixelBuffer, RGB, 0–255) by default; classifiers get a
softmax and a classifier config with the labels, so Vision returns named grades. Weight compression
(int8 per-channel, palettization, int4 block-wise, sparse) is applied to the converted program with
``coremltools.optimize.coreml`` and then checked in the saved package: asked-for compression that is
not in the file is an error, never a silently float model.
"""

from __future__ import annotations

import collections
import contextlib
import json
import shutil
import tempfile
from pathlib import Path

from toolkit.backends.named import named_module
from toolkit.errors import ConversionError

INPUT_NAME = "image"
_TARGETS = ("iOS16", "iOS17", "iOS18")
# The constexpr op each compression leaves in the program, per opset generation.
COMPRESSED_OPS = {
    "int8_weights": ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"),
    "int8": ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"),
    "int4_block": ("constexpr_blockwise_shift_scale",),
    "palettize8": ("constexpr_lut_to_dense",),
    "palettize6": ("constexpr_lut_to_dense",),
    "palettize4": ("constexpr_lut_to_dense",),
    "sparse": ("constexpr_sparse_to_dense",),
}
# Weights smaller than this stay float16: their compression saves nothing and costs accuracy.
WEIGHT_THRESHOLD = 256


def _minimum_target(precision: str, group_size: int | None) -> tuple[str, str] | None:
    """The iOS version a precision needs beyond the iOS16 default, and why."""
    if precision == "int4_block":
        return "iOS18", "int4 block-wise weights need iOS18"
    if precision.startswith("palettize") and group_size:
        return "iOS18", "grouped-channel palettization needs iOS18"
    if precision == "int8":
        return "iOS17", "int8 activations (quantize / dequantize ops) need iOS17"
    return None


def deployment_target(precision: str, options: dict) -> tuple[str, str | None]:
    """The recipe's target, or iOS16; raised where the compression needs more (and said why).
    An explicit lower target that cannot hold the compression is an error."""
    asked = options.get("deployment_target")
    need = _minimum_target(precision, options.get("group_size"))
    if need is None:
        return asked or "iOS16", None
    target, why = need
    if asked and _TARGETS.index(asked) < _TARGETS.index(target):
        raise ConversionError(f"coreml {precision}: {why}, but the recipe sets deployment_target {asked}",
                              fix=f"set deployment_target: {target}, or choose a precision older iOS runs (fp16, int8_weights, palettize*)")
    if asked:
        return asked, None
    return target, f"raised from the default iOS16: {why}"


def _w8a8(net, calibration, *, to_nchw: bool):
    """int8 weights and activations through coremltools' torch-side quantizer: observers record
    true min/max (not a moving average) over the calibration images, then the model is finalized
    with its quantize / dequantize pairs for conversion."""
    import numpy as np
    import torch

    from toolkit.backends.coreml.proto import coremltools

    coremltools()  # first, without TensorFlow
    from coremltools.optimize.torch.quantization import LinearQuantizer, LinearQuantizerConfig, ModuleLinearQuantizerConfig

    if calibration is None or len(calibration) == 0:
        raise ConversionError("coreml int8 needs calibration images and none were given",
                              fix="add a `calibration:` section to the recipe (synthetic or a folder of images)")
    x = torch.from_numpy(np.ascontiguousarray(calibration.transpose(0, 3, 1, 2) if to_nchw else calibration)).float()
    # Milestones: observe from step 0; never fake-quantize or freeze while calibrating; BN frozen.
    cfg = LinearQuantizerConfig(global_config=ModuleLinearQuantizerConfig(
        quantization_scheme="symmetric", activation_observer="min_max", milestones=[0, 10_000, 10_000, 0]))
    quantizer = LinearQuantizer(net.eval(), cfg)
    prepared = quantizer.prepare(example_inputs=(x[:1],), inplace=False)
    quantizer.step()
    with torch.no_grad():
        for i in range(0, len(x), 8):
            prepared(x[i:i + 8])
    return quantizer.finalize(inplace=False).eval()


def _compression_config(precision: str, group_size: int | None):
    from coremltools.optimize import coreml as cto

    if precision == "int8_weights":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                         weight_threshold=WEIGHT_THRESHOLD)
        return cto.linear_quantize_weights, op
    if precision == "int4_block":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int4", granularity="per_block", block_size=16,
                                         weight_threshold=WEIGHT_THRESHOLD)
        return cto.linear_quantize_weights, op
    if precision.startswith("palettize"):
        nbits = int(precision.removeprefix("palettize"))
        grouping = {"granularity": "per_grouped_channel", "group_size": group_size} if group_size else {"granularity": "per_tensor"}
        op = cto.OpPalettizerConfig(mode="kmeans", nbits=nbits, weight_threshold=WEIGHT_THRESHOLD, **grouping)
        return cto.palettize_weights, op
    if precision == "sparse":
        # Keep exactly the zeros pruning made; store a weight sparse once the bit mask pays off
        # (1 bit per element vs 16: above ~6 % zeros; 10 % leaves a margin).
        op = cto.OpThresholdPrunerConfig(threshold=1e-12, minimum_sparsity_percentile=0.1, weight_threshold=WEIGHT_THRESHOLD)
        return cto.prune_weights, op
    return None, None


def _io_descriptions(spec, classifier: bool) -> dict:
    if classifier:
        return {"classLabel": "most likely label", "classLabel_probs": "probability of each label"}
    return {o.name: f"{o.description}" + (f" ({o.unit})" if o.unit else "") for o in spec.outputs}


def _set_metadata(mlmodel, spec, precision: str, meta: dict, target: str) -> None:
    mlmodel.author = "skinkit"
    mlmodel.license = spec.licence
    mlmodel.short_description = spec.description
    mlmodel.version = str(meta.get("version", ""))
    fields = mlmodel.user_defined_metadata
    fields["skinkit.precision"] = precision
    fields["skinkit.deployment_target"] = target
    for key, value in meta.items():  # mirrors the manifest: model, task, labels, input, outputs, ...
        fields[f"skinkit.{key}"] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@contextlib.contextmanager
def package_copy(path: Path):
    """A private copy of an ``.mlpackage`` to open: coremltools rewrites a package's Manifest.json
    when it loads one, and a bundle being verified must not be written to (it may be read-only)."""
    with tempfile.TemporaryDirectory(prefix="skinkit-mlpackage-") as tmp:
        dst = Path(tmp) / Path(path).name
        shutil.copytree(path, dst)
        yield dst


def load_spec(path: Path):
    from toolkit.backends.coreml.proto import coremltools

    ct = coremltools()

    with package_copy(path) as copy:
        return ct.utils.load_spec(str(copy))


def inspect(path: Path) -> dict:
    """Op histogram, weight dtypes, compression ops and I/O of a saved ML program, read back from
    the package's specification file without importing coremltools (works on Linux, in well under a second)."""
    from toolkit.backends.coreml.proto import module, read_spec

    spec = read_spec(path)
    data_type, color_space = module("MIL_pb2").DataType, module("FeatureTypes_pb2").ImageFeatureType.ColorSpace
    ops: collections.Counter = collections.Counter()
    weight_dtypes: collections.Counter = collections.Counter()
    param_dtypes: collections.Counter = collections.Counter()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                ops[op.type] += 1
                if op.type == "const" or op.type.startswith("constexpr_"):
                    for out in op.outputs:
                        tt = out.type.tensorType
                        dtype = data_type.Name(tt.dataType)
                        # Weights are the kernels and matrices (rank >= 2); rank-1 consts are biases,
                        # PReLU slopes and norms (iOS18 programs keep some of those float32), and the
                        # int32 consts are shape, stride and pad parameters.
                        if op.type == "const" and dtype.startswith(("FLOAT", "INT8", "UINT8", "INT4", "UINT4")):
                            (weight_dtypes if len(tt.dimensions) >= 2 else param_dtypes)[dtype] += 1

    def io(features):
        out = []
        for f in features:
            kind = f.type.WhichOneof("Type")
            entry = {"name": f.name, "type": kind}
            if kind == "imageType":
                entry["shape"] = [1, 3, f.type.imageType.height, f.type.imageType.width]
                entry["color_space"] = color_space.Name(f.type.imageType.colorSpace)
            elif kind == "multiArrayType":
                entry["shape"] = list(f.type.multiArrayType.shape)
            out.append(entry)
        return out

    compressed = {k: v for k, v in ops.items() if k.startswith("constexpr_")}
    return {
        "op_histogram": dict(sorted(ops.items())),
        "transpose_count": ops.get("transpose", 0),
        "weight_dtypes": dict(weight_dtypes),
        "param_dtypes": dict(param_dtypes),
        "compressed_weight_ops": compressed,
        "inputs": io(spec.description.input),
        "outputs": io(spec.description.output),
        "classifier": bool(spec.description.predictedFeatureName),
        "spec_version": spec.specificationVersion,
        "metadata": dict(spec.description.metadata.userDefined),
    }


def convert(module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
    from toolkit.backends.coreml.proto import coremltools

    ct = coremltools()  # without TensorFlow
    import torch

    target, raised = deployment_target(precision, options)
    image_input = options.get("input_type", "image") == "image"
    classifier = options.get("classifier")
    if classifier is None:  # default: a classifier where the caller says the one output is class scores over the labels
        classifier = bool(options.get("class_scores")) and bool(spec.labels) and len(spec.outputs) == 1
    if classifier and not spec.labels:
        raise ConversionError(f"coreml classifier config asked for {spec.name}, which has no labels",
                              fix="set classifier: false on this target")
    if classifier and len(spec.outputs) > 1:
        raise ConversionError(f"coreml classifier config asked for {spec.name}, which has {len(spec.outputs)} outputs "
                              f"({', '.join(o.name for o in spec.outputs)}); a Core ML classifier has one",
                              fix="set classifier: false on this target")
    pixel_scale = 1.0 if options.get("pixel_range", "0-255") == "0-255" else 1.0 / 255.0

    names = [o.name for o in spec.outputs]
    net = named_module(module.with_input_layout("nchw") if image_input else module, names)
    if precision == "int8":  # the network sees NCHW behind an image input, the contract layout otherwise
        to_nchw = image_input and options.get("layout", "nhwc") == "nhwc"
        net = _w8a8(net, options.get("calibration"), to_nchw=to_nchw)
    if classifier:
        net = torch.nn.Sequential(net, torch.nn.Softmax(dim=-1))
    h, w = spec.input_size
    x = sample.permute(0, 3, 1, 2).contiguous() if image_input and options.get("layout", "nhwc") == "nhwc" else sample
    traced = torch.jit.trace(net.eval(), (x,))
    if image_input:
        inp = ct.ImageType(name=INPUT_NAME, shape=(1, 3, h, w), scale=pixel_scale, bias=[0.0, 0.0, 0.0],
                           color_layout=ct.colorlayout.RGB)
    else:
        inp = ct.TensorType(name=INPUT_NAME, shape=tuple(sample.shape))
    kwargs = {"classifier_config": ct.ClassifierConfig(list(spec.labels))} if classifier else {"outputs": [ct.TensorType(name=n) for n in names]}
    pipeline = ct.PassPipeline.DEFAULT
    if precision == "int8":
        # In coremltools 9.0 this pass drops a re-quantization around a flatten; it broke MobileNet's W8A8
        # output (cosine -0.65) in an earlier trial here. Without it the trained MobileNet reaches 0.997.
        pipeline.remove_passes(["common::int_op_canonicalization"])
    mlmodel = ct.convert(
        traced, inputs=[inp], convert_to="mlprogram", pass_pipeline=pipeline,
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
        minimum_deployment_target=getattr(ct.target, target), **kwargs,
    )
    compress, op_config = _compression_config(precision, options.get("group_size"))
    if compress is not None:
        from coremltools.optimize import coreml as cto

        mlmodel = compress(mlmodel, cto.OptimizationConfig(global_config=op_config))
    _set_metadata(mlmodel, spec, precision, options.get("metadata", {}), target)
    for name, text in _io_descriptions(spec, classifier).items():
        mlmodel.output_description[name] = text
    mlmodel.input_description[INPUT_NAME] = ("RGB image (CVPixelBuffer), pixels 0-255" if image_input
                                             else f"RGB pixels, shape {list(sample.shape)}, range {options.get('pixel_range', '0-255')}")

    tmp = path.with_name(f".{path.stem}.tmp.mlpackage")  # coremltools insists on the suffix
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        mlmodel.save(str(tmp))
        details = inspect(tmp)
        if precision == "int8" and not details["op_histogram"].get("quantize"):
            raise ConversionError("coreml int8 was requested but the saved program has no quantize ops (activations float)",
                                  fix="export int8_weights instead, or check the calibration data")
        expected = COMPRESSED_OPS.get(precision)
        if expected and not any(details["compressed_weight_ops"].get(op, 0) for op in expected):
            raise ConversionError(
                f"coreml {precision} was requested but the saved program has no {' / '.join(expected)} ops "
                "(compression not applied)",
                fix=("prune the model first (compress.pruning) so that weights have zeros to store sparse" if precision == "sparse"
                     else "the model's weights may all be below the compression threshold; export fp16 instead"))
        details.update(deployment_target=target, input_type="image" if image_input else "tensor",
                       output_transform="softmax" if classifier else None)
        if raised:
            details["deployment_target_note"] = raised
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return details
