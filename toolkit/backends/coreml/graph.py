"""Reading a Core ML package: runner (predict on macOS, the MIL interpreter elsewhere), structural checks,
weights and cost from the saved program, and what ``skinkit inspect`` shows."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from toolkit.backends.base import ArtifactWeight, Cost, OpTally, Runner, check, numel, per_sample
from toolkit.backends.coreml.convert import COMPRESSED_OPS
from toolkit.backends.coreml.ops import compute_units


def _declared_outputs(metadata: Mapping[str, str]) -> list[str]:
    """The spec's output names, as the package's skinkit metadata records them (empty if absent)."""
    try:
        return [o["name"] for o in json.loads(metadata.get("skinkit.outputs", "[]"))]
    except (ValueError, KeyError, TypeError):
        return []


def runner(path: Path, *, layout: str = "nhwc", pixel_range: str = "0-255", cross_check: int = 4) -> Runner:
    """Core ML: ``MLModel.predict`` on macOS (cross-checked against the MIL interpreter on the first
    ``cross_check`` samples); elsewhere the MIL reference interpreter runs the saved program itself.

    Inputs are the bundle's contract tensors. An image input is fed as the pixel buffer an app would
    hand over (RGB 0–255); a classifier's probability vector (in label order) is returned under the
    spec's first output name."""
    from toolkit.backends.coreml.mil import MILProgram

    program = MILProgram(path)  # also the package's spec: one copy, one load
    description = program.spec.description
    image_input = description.input[0].type.WhichOneof("Type") == "imageType"
    classifier = bool(description.predictedFeatureName)
    scale_to_pixels = 255.0 if pixel_range == "0-1" else 1.0
    declared = _declared_outputs(description.metadata.userDefined)
    if classifier:  # the probabilities, under the spec's first output name
        graph_names = {(declared or ["classLabel_probs"])[0]: "classLabel_probs"}
    else:
        graph_names = {n: n for n in program.output_names}

    def program_input(x: np.ndarray) -> np.ndarray:
        if not image_input:
            return x.astype(np.float32)
        nchw = x if layout == "nchw" else x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(nchw * scale_to_pixels, dtype=np.float32)

    def interpret(x: np.ndarray) -> dict:
        outs = program.run({program.input_names[0]: program_input(x)})
        result = {}
        for name, graph_name in graph_names.items():
            out = outs[graph_name]
            result[name] = np.asarray(out.detach().numpy() if hasattr(out, "detach") else out,
                                      dtype=np.float32).reshape(1, *np.shape(out)[1:])
        return result

    where = "MIL reference interpreter (the saved program, op by op, at its own precision)"
    if platform.system() != "Darwin":
        return Runner(per_sample(interpret), check=f"{where}; Core ML predict needs macOS", timed=False,
                      note="float16 programs: each op computes in float32 from float16 inputs and stores float16; "
                           "the GPU and Neural Engine also accumulate some ops in float16")

    import shutil
    import tempfile
    import weakref

    from toolkit.backends.coreml.proto import coremltools

    ct = coremltools()  # without TensorFlow

    # MLModel opens (and may rewrite) the package: give it a private copy that lives with the runner.
    private = Path(tempfile.mkdtemp(prefix="skinkit-mlpackage-")) / path.name
    shutil.copytree(path, private)
    model = ct.models.MLModel(str(private))
    class_labels = json.loads(model.user_defined_metadata.get("skinkit.labels", "[]"))

    def predict(x: np.ndarray) -> dict:
        if image_input:
            from PIL import Image

            hwc = program_input(x)[0].transpose(1, 2, 0)
            feed = Image.fromarray(np.clip(np.round(hwc), 0, 255).astype(np.uint8), mode="RGB")
        else:
            feed = x.astype(np.float32)
        out = model.predict({program.input_names[0]: feed})
        if classifier:
            (name, graph_name), = graph_names.items()
            probs = out[graph_name]
            return {name: np.array([[probs[c] for c in class_labels]], dtype=np.float32)}
        return {name: np.asarray(out[graph_name], dtype=np.float32) for name, graph_name in graph_names.items()}

    run = per_sample(predict)
    checked = []

    def run_and_cross_check(x: np.ndarray) -> dict:
        y = run(x)
        if not checked:  # once: later calls (latency runs) time predict alone
            n = min(cross_check, len(x))
            ref = per_sample(interpret)(x[:n])
            diff = max(float(np.max(np.abs(ref[k] - y[k][:n]))) for k in y)
            runner.note = f"MIL interpreter vs predict on {n} samples: max abs difference {diff:.3g}"
            checked.append(diff)
        return y

    runner = Runner(run_and_cross_check, check="coremltools MLModel.predict (macOS), cross-checked by the MIL interpreter")
    weakref.finalize(runner, shutil.rmtree, private.parent, True)
    return runner


def structural_checks(details: dict, precision: str, *, input_shape: tuple[int, ...],
                      output_shapes: Mapping[str, tuple[int, ...]]) -> list[dict]:
    """The contract's input (a pixel buffer of the contract's size, or the contract tensor), each tensor
    output's shape, float16 weights below fp32, and the asked-for compression and activation quantization."""
    d, p = details, precision
    out: list[dict] = []
    first = d["inputs"][0]
    got_in = tuple(first.get("shape", ()))
    if first.get("type") == "imageType":  # a pixel buffer: channel-first by definition
        want = (1, 3, *(input_shape[1:3] if input_shape[-1] == 3 else input_shape[2:4]))
        out.append(check("image input size matches contract", list(got_in), list(want), got_in == want))
    else:
        out.append(check("input shape matches contract", list(got_in), list(input_shape), got_in == tuple(input_shape)))
    if len(output_shapes) == 1:  # a classifier's first output is its label: no shape to check
        (want_shape,) = output_shapes.values()
        got = d["outputs"][0].get("shape")
        if got:
            out.append(check("output shape matches reference", list(got), list(want_shape), tuple(got) == tuple(want_shape)))
    else:
        shapes = {o["name"]: o.get("shape") for o in d["outputs"]}
        for name, want_shape in output_shapes.items():
            got = shapes.get(name)
            out.append(check(f"output shape matches reference [{name}]", got, list(want_shape),
                             got is not None and tuple(got) == tuple(want_shape)))
    if p != "fp32":
        n16, n32 = d["weight_dtypes"].get("FLOAT16", 0), d["weight_dtypes"].get("FLOAT32", 0)
        out.append(check("no float32 weight tensors (kernels, matrices)", f"{n16} fp16 / {n32} fp32 tensors", "0 fp32", n32 == 0))
    if p in COMPRESSED_OPS:
        n = sum(d["compressed_weight_ops"].get(op, 0) for op in COMPRESSED_OPS[p])
        out.append(check(f"compressed weights ({' / '.join(COMPRESSED_OPS[p])})", n, 1, n >= 1, ">="))
    if p == "int8":
        n = d["op_histogram"].get("quantize", 0)
        out.append(check("int8 activations (quantize ops)", n, 1, n >= 1, ">="))
    return out


def weights(path: Path) -> list[ArtifactWeight]:
    from toolkit.backends.coreml.mil import MILProgram

    prog = MILProgram(path)
    out = []
    for op in prog.ops:
        key = {"conv": "weight", "conv_transpose": "weight", "linear": "weight", "matmul": "y"}.get(op.op_type)
        var = op.inputs.get(key) if key else None
        if var is None:
            continue
        value = prog._constants.get(var, var.val)  # noqa: SLF001 (decompressed constants)
        if value is None:
            continue
        arr = value.numpy() if hasattr(value, "numpy") else np.asarray(value, np.float32)
        if arr.ndim >= 2:
            out.append(ArtifactWeight(op.name, arr.astype(np.float32)))
    return out


_ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "bool": 1,
             "fp32": 4, "fp16": 2, "fp64": 8, "float64": 8}


def cost(path: Path) -> Cost:
    from toolkit.backends.coreml.mil import MILProgram, _dtype_name

    prog = MILProgram(path)
    macs, tally = 0, OpTally()
    compute = [op for op in prog.ops if not MILProgram._is_constant(op)]  # noqa: SLF001
    for op in compute:
        out = op.outputs[0].shape if op.outputs else ()
        if op.op_type in ("conv", "linear", "matmul", "conv_transpose"):
            w = op.inputs.get("weight", op.inputs.get("y"))
            if w is None or w.shape is None:
                continue
            if op.op_type == "conv":  # weight O, I/g, kh, kw
                n = numel(out) * numel(w.shape[1:])
                x = op.inputs.get("x")
                depthwise = w.shape[1] == 1 and x is not None and x.shape is not None and len(x.shape) > 1 and x.shape[1] > 1
                tally.add("depthwise" if depthwise else "conv", n)
            elif op.op_type == "conv_transpose":  # weight I, O/g, kh, kw
                n = numel(op.inputs["x"].shape) * numel(w.shape[1:])
                tally.add("conv", n)
            else:
                n = numel(out) * int(op.inputs["x"].shape[-1])
                tally.add("matmul", n)
            macs += n
        elif op.op_type not in _FREE_OPS and out is not None and all(isinstance(d, (int, np.integer)) for d in out):
            # no fusion read: an activation after a conv counts as elementwise here (TFLite and ONNX fuse it)
            tally.add("memory" if op.op_type.startswith(("upsample", "resize")) else "elementwise", numel(out))
    params = sum(np.asarray(v).size for v in prog._constants.values() if hasattr(v, "shape") and len(v.shape) >= 1)  # noqa: SLF001
    blob = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    weight_bytes = blob.stat().st_size if blob.exists() else 0
    acts = 0
    for op in compute:
        for v in op.outputs:
            if v.shape is not None and all(isinstance(s, (int, np.integer)) for s in v.shape):
                acts += numel(v.shape) * _ITEMSIZE.get(_dtype_name(v) or "fp32", 4)
    acts += sum(numel(v.shape) * _ITEMSIZE.get(_dtype_name(v) or "fp32", 4) for v in prog.function.inputs.values())
    return Cost("coreml", macs, int(params), weight_bytes, acts, tuple(op.op_type for op in compute), tally.totals)


_FREE_OPS = frozenset({"reshape", "squeeze", "expand_dims", "cast", "identity", "constexpr_lut_to_dense", "constexpr_affine_dequantize",
                       "constexpr_blockwise_shift_scale", "constexpr_sparse_to_dense"})


def _maybe_json(v: str):
    try:
        return json.loads(v)
    except ValueError:
        return v


def inspect(path: Path) -> dict:
    from toolkit.backends.coreml.convert import inspect

    d = inspect(path)
    fields = d.pop("metadata")
    out = dict(d)
    out["metadata"] = {k.removeprefix("skinkit."): _maybe_json(v) for k, v in sorted(fields.items()) if k.startswith("skinkit.")}
    fp32 = d["weight_dtypes"].get("FLOAT32", 0) > 0 and d["weight_dtypes"].get("FLOAT16", 0) == 0
    out["compute_units"] = compute_units(d["op_histogram"], fp32)
    return out
