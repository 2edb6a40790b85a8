"""Run an exported artifact on host runtimes. One runner per format, same call shape:
``runner(batch_of_contract_inputs) -> outputs`` with a leading batch axis."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit.errors import ConversionError


@dataclass
class Runner:
    run: Callable[[np.ndarray], np.ndarray]
    check: str  # what actually executed, recorded in the report
    note: str = ""


def _per_sample(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    # Artifacts are exported at batch 1, as phones run them.
    return lambda x: np.concatenate([fn(x[i:i + 1]) for i in range(len(x))])


def onnx_runner(path: Path, threads: int = 2) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return Runner(_per_sample(lambda x: sess.run(None, {name: x.astype(np.float32)})[0]), check="onnxruntime (CPU)")


def tflite_runner(path: Path, threads: int = 2) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]

    def one(x: np.ndarray) -> np.ndarray:
        interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interp.invoke()
        return interp.get_tensor(out["index"]).copy()

    return Runner(_per_sample(one), check="ai_edge_litert interpreter (CPU, XNNPACK)")


def coreml_runner(path: Path, *, reference=None, precision: str = "fp32") -> Runner:
    """``MLModel.predict`` on macOS. Elsewhere Core ML cannot execute, so the proxy runs the float
    PyTorch reference at the artifact's precision (fp16: weights and every layer's output rounded to
    float16); the gate adds structural checks of the saved package itself."""
    if platform.system() == "Darwin":
        import coremltools as ct

        model = ct.models.MLModel(str(path))
        out_name = model.get_spec().description.output[0].name
        return Runner(_per_sample(lambda x: np.asarray(model.predict({"image": x.astype(np.float32)})[out_name])),
                      check="coremltools MLModel.predict (macOS)")
    if reference is None:
        raise ConversionError("Core ML cannot execute off macOS and no reference model was given for the proxy",
                              fix="run verification on macOS, or pass the float reference")
    import torch

    model = fp16_rounding_copy(reference) if precision == "fp16" else reference
    what = "float16 rounding of weights and of every layer's output" if precision == "fp16" else "float32"

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return Runner(lambda x: np.concatenate([run(x[i:i + 16]) for i in range(0, len(x), 16)]),
                  check=f"proxy: PyTorch with {what} + structural check of the .mlpackage (Core ML not executed: needs macOS)",
                  note="Core ML predict runs on macOS only; this proxy does not emulate float16 accumulation inside an op")


def fp16_rounding_copy(module):
    """A copy of ``module`` whose weights, input and every leaf module's output are rounded to
    float16 and computed in float32. CPU float16 kernels are ~25x slower and differ little."""
    import copy

    import torch

    m = copy.deepcopy(module).eval()
    with torch.no_grad():
        for t in list(m.parameters()) + list(m.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())

    def round_out(_mod, _inp, out):
        return out.half().float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out

    for sub in m.modules():
        if next(sub.children(), None) is None:
            sub.register_forward_hook(round_out)
    m.register_forward_pre_hook(lambda _mod, args: tuple(a.half().float() for a in args))
    return m


def make_runner(fmt: str, path: Path, *, threads: int = 2, reference=None, precision: str = "fp32") -> Runner:
    if fmt == "onnx":
        return onnx_runner(path, threads)
    if fmt == "tflite":
        return tflite_runner(path, threads)
    if fmt == "coreml":
        return coreml_runner(path, reference=reference, precision=precision)
    raise ConversionError(f"no runner for format {fmt!r}", fix="use onnx, tflite or coreml")
