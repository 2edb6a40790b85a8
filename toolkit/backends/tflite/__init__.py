"""TFLite (LiteRT): lowered by litert-torch, quantized by AI Edge Quantizer, run by the LiteRT interpreter."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from toolkit.backends.base import ArtifactWeight, Backend, Cost, Runner, TargetOptions
from toolkit.backends.tflite.ops import GPU_OPS

_LOOKUP_TABLES = "no lookup-table weight type in the TFLite schema"


class TFLiteOptions(TargetOptions):
    keep_float: Literal["auto"] | tuple[str, ...] | None = Field(
        None, description="tflite int8 / int16x8 mixed precision: module paths of layers kept float, or 'auto' for the "
                          "fewest layers (ranked by the noise each adds) that make the artifact pass its gate")
    keep_float_max: int = Field(16, ge=1, description="with keep_float: auto, the most layers the search may keep float")

    applies_to = {"keep_float": "tflite int8 and int16x8 targets"}

    def check_precision(self, precision: str) -> None:
        if self.keep_float is not None and precision not in ("int8", "int16x8"):
            raise ValueError(f"keep_float applies to {self.applies_to['keep_float']} only")

    def variant_suffix(self) -> str:
        return "_mixed" if self.keep_float else ""


class TFLiteBackend(Backend):
    name = "tflite"
    conversion_cost = 3  # lowering, then the quantizer's passes; its variants share one lowering
    suffix = ".tflite"
    precisions = ("fp32", "fp16", "int8_weights", "dynamic_int8", "int8", "int16x8")
    unsupported = {
        "palettize8": _LOOKUP_TABLES, "palettize6": _LOOKUP_TABLES, "palettize4": _LOOKUP_TABLES,
        "int4_block": "XNNPACK runs int4 weights only in fully-connected layers; the conv layers of these models would stay float",
        "sparse": "TFLite's sparse tensor format is read by few delegates; export a pruned model at fp16/int8 instead",
    }
    options = TFLiteOptions
    activation_bits_by_precision = {"int8": 8, "int16x8": 16}

    op_support = {"tflite_gpu": GPU_OPS}
    rewrites = ("pixel_shuffle", "area_resize", "nearest_resize", "antialias_resize", "adaptive_max_pool")
    phones = ("android",)

    def convert(self, module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
        from toolkit.backends.tflite.convert import convert

        return convert(module, sample, spec, precision=precision, path=path, options=options)

    def runner(self, path: Path, *, threads: int = 2, layout: str = "nhwc", pixel_range: str = "0-255") -> Runner:
        from toolkit.backends.tflite.graph import runner

        return runner(path, threads=threads)

    def structural_checks(self, details: dict, precision: str, *, input_shape: tuple[int, ...],
                          output_shapes: Mapping[str, tuple[int, ...]]) -> list[dict]:
        from toolkit.backends.tflite.graph import structural_checks

        return structural_checks(details, precision, output_shapes=output_shapes)

    def weights(self, path: Path) -> list[ArtifactWeight]:
        from toolkit.backends.tflite.graph import weights

        return weights(path)

    def cost(self, path: Path) -> Cost:
        from toolkit.backends.tflite.graph import cost

        return cost(path)

    def inspect(self, path: Path) -> dict:
        from toolkit.backends.tflite.graph import inspect

        return inspect(path)


BACKEND = TFLiteBackend()
