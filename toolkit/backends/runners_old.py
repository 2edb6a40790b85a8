"""Run an exported artifact on host runtimes. One runner per format, same call shape:
``runner(batch_of_contract_inputs) -> outputs`` with a leading batch axis."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit.errors import ConversionError, VerificationError


@dataclass
class Runner:
    run: Callable[[np.ndarray], np.ndarray]
    check: str  # what actually executed, recorded in the report
    note: str = ""
    timed: bool = True  # its latency means something (a real runtime, not a reference interpreter)


def _per_sample(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    # Artifacts are exported at batch 1, as phones run them.
    return lambda x: np.concatenate([fn(x[i:i + 1]) for i in range(len(x))])


def onnx_runner(path: Path, threads: int = 2) -> Runner:
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
    return Runner(_per_sample(lambda x: sess.run(None, {name: x.astype(np.float32)})[0]), check="onnxruntime (CPU)")


def tflite_runner(path: Path, threads: int = 2) -> Runner:
    """Runs the file's input → output; integer I/O (full-integer variants) is quantized and
    dequantized with the scale and zero point stored in the file, as an app would."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:  # the runtime refuses the file: it would on a phone too
        raise VerificationError(f"the LiteRT interpreter cannot load {path.name}: {str(exc).strip()}",
                                fix="export another precision for this model (see `skinkit matrix`)") from None
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]

    def quant(x: np.ndarray) -> np.ndarray:
        if np.issubdtype(inp["dtype"], np.floating):
            return x.astype(inp["dtype"])
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])

    def dequant(y: np.ndarray) -> np.ndarray:
        if np.issubdtype(out["dtype"], np.floating):
            return y.astype(np.float32)
        scale, zero = out["quantization"]
        return (y.astype(np.float32) - zero) * np.float32(scale)

    def one(x: np.ndarray) -> np.ndarray:
        interp.set_tensor(inp["index"], quant(x))
        interp.invoke()
        return dequant(interp.get_tensor(out["index"]))

    io = "" if np.issubdtype(inp["dtype"], np.floating) else f", {np.dtype(inp['dtype']).name} I/O"
    return Runner(_per_sample(one), check=f"ai_edge_litert interpreter (CPU, XNNPACK{io})")


def coreml_runner(path: Path, *, layout: str = "nhwc", pixel_range: str = "0-255", cross_check: int = 4) -> Runner:
    """Core ML: ``MLModel.predict`` on macOS (cross-checked against the MIL interpreter on the first
    ``cross_check`` samples); elsewhere the MIL reference interpreter runs the saved program itself.

    Inputs are the bundle's contract tensors. An image input is fed as the pixel buffer an app would
    hand over (RGB 0–255); a classifier's output is its probability vector in label order."""
    from toolkit.verify.mil import MILProgram

    program = MILProgram(path)  # also the package's spec: one copy, one load
    description = program.spec.description
    image_input = description.input[0].type.WhichOneof("Type") == "imageType"
    classifier = bool(description.predictedFeatureName)
    scale_to_pixels = 255.0 if pixel_range == "0-1" else 1.0

    def program_input(x: np.ndarray) -> np.ndarray:
        if not image_input:
            return x.astype(np.float32)
        nchw = x if layout == "nchw" else x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(nchw * scale_to_pixels, dtype=np.float32)

    out_name = "classLabel_probs" if classifier else program.output_names[0]

    def interpret(x: np.ndarray) -> np.ndarray:
        out = program.run({program.input_names[0]: program_input(x)})[out_name]
        return np.asarray(out.detach().numpy() if hasattr(out, "detach") else out, dtype=np.float32).reshape(1, *np.shape(out)[1:])

    where = "MIL reference interpreter (the saved program, op by op, at its own precision)"
    if platform.system() != "Darwin":
        return Runner(_per_sample(interpret), check=f"{where}; Core ML predict needs macOS", timed=False,
                      note="float16 programs: each op computes in float32 from float16 inputs and stores float16; "
                           "the GPU and Neural Engine also accumulate some ops in float16")

    import shutil
    import tempfile
    import weakref

    import coremltools as ct

    # MLModel opens (and may rewrite) the package: give it a private copy that lives with the runner.
    private = Path(tempfile.mkdtemp(prefix="skinkit-mlpackage-")) / path.name
    shutil.copytree(path, private)
    model = ct.models.MLModel(str(private))
    class_labels = json.loads(model.user_defined_metadata.get("skinkit.labels", "[]"))

    def predict(x: np.ndarray) -> np.ndarray:
        if image_input:
            from PIL import Image

            hwc = program_input(x)[0].transpose(1, 2, 0)
            feed = Image.fromarray(np.clip(np.round(hwc), 0, 255).astype(np.uint8), mode="RGB")
        else:
            feed = x.astype(np.float32)
        out = model.predict({program.input_names[0]: feed})
        if classifier:
            probs = out[out_name]
            return np.array([[probs[c] for c in class_labels]], dtype=np.float32)
        return np.asarray(out[out_name], dtype=np.float32)

    run = _per_sample(predict)
    checked = []

    def run_and_cross_check(x: np.ndarray) -> np.ndarray:
        y = run(x)
        if not checked:  # once: later calls (latency runs) time predict alone
            n = min(cross_check, len(x))
            diff = float(np.max(np.abs(_per_sample(interpret)(x[:n]) - y[:n])))
            runner.note = f"MIL interpreter vs predict on {n} samples: max abs difference {diff:.3g}"
            checked.append(diff)
        return y

    runner = Runner(run_and_cross_check, check="coremltools MLModel.predict (macOS), cross-checked by the MIL interpreter")
    weakref.finalize(runner, shutil.rmtree, private.parent, True)
    return runner


def make_runner(fmt: str, path: Path, *, threads: int = 2, layout: str = "nhwc", pixel_range: str = "0-255") -> Runner:
    if fmt == "onnx":
        return onnx_runner(path, threads)
    if fmt == "tflite":
        return tflite_runner(path, threads)
    if fmt == "coreml":
        return coreml_runner(path, layout=layout, pixel_range=pixel_range)
    raise ConversionError(f"no runner for format {fmt!r}", fix="use onnx, tflite or coreml")
