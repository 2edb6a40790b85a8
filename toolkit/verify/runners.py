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
    PyTorch reference with weights and activations in float16 (the precision the artifact's program
    computes in), after the artifact's structure has been checked against the contract."""
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

    if precision == "fp16":
        model = _half_copy(reference)

        def run16(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x).half()).float().numpy()

        return Runner(_per_sample(run16), check="proxy: PyTorch float16 emulation + structural check of the .mlpackage (not executed: Linux)",
                      note="Core ML predict needs macOS; numerics are those of the float model run in float16")

    def run32(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return reference(torch.from_numpy(x)).numpy()

    return Runner(_per_sample(run32), check="proxy: PyTorch float32 + structural check of the .mlpackage (not executed: Linux)",
                  note="Core ML predict needs macOS")


def _half_copy(module):
    import copy

    return copy.deepcopy(module).half().eval()


def make_runner(fmt: str, path: Path, *, threads: int = 2, reference=None, precision: str = "fp32") -> Runner:
    if fmt == "onnx":
        return onnx_runner(path, threads)
    if fmt == "tflite":
        return tflite_runner(path, threads)
    if fmt == "coreml":
        return coreml_runner(path, reference=reference, precision=precision)
    raise ConversionError(f"no runner for format {fmt!r}", fix="use onnx, tflite or coreml")
