"""ONNX: the float interchange artifact, and its int8 QDQ twin (ONNX Runtime Mobile, QNN), run by ONNX Runtime."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from toolkit.backends.base import ArtifactWeight, Backend, Cost, Runner


class OnnxBackend(Backend):
    name = "onnx"
    suffix = ".onnx"
    precisions = ("fp32", "int8")
    unsupported_default = "ONNX ships the float interchange artifact and int8 QDQ"
    baseline_runtime = "onnxruntime"
    rewrites = ("area_resize", "adaptive_max_pool_uneven", "avg_pool_divisor")

    def convert(self, module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
        from toolkit.backends.onnx.convert import convert

        return convert(module, sample, spec, precision=precision, path=path, options=options)

    def runner(self, path: Path, *, threads: int = 2, layout: str = "nhwc", pixel_range: str = "0-255") -> Runner:
        from toolkit.backends.onnx.graph import runner

        return runner(path, threads=threads)

    def structural_checks(self, details: dict, precision: str, *, input_shape: tuple[int, ...],
                          output_shapes: Mapping[str, tuple[int, ...]]) -> list[dict]:
        from toolkit.backends.onnx.graph import structural_checks

        return structural_checks(details, precision, input_shape=input_shape, output_shapes=output_shapes)

    def weights(self, path: Path) -> list[ArtifactWeight]:
        from toolkit.backends.onnx.graph import weights

        return weights(path)

    def cost(self, path: Path) -> Cost:
        from toolkit.backends.onnx.graph import cost

        return cost(path)

    def int8_baseline(self, float_path: Path, calibration, out_dir: Path) -> Path:
        from toolkit.backends.onnx.graph import int8_baseline

        return int8_baseline(float_path, calibration, out_dir)

    def inspect(self, path: Path) -> dict:
        from toolkit.backends.onnx.convert import inspect

        return inspect(path)


BACKEND = OnnxBackend()
