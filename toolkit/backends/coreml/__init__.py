"""Core ML: ``.mlpackage`` ML programs through coremltools; run by ``MLModel.predict`` on macOS and by the
MIL reference interpreter (``toolkit.backends.coreml.mil``) everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from toolkit.backends.base import ArtifactWeight, Backend, Cost, FailureSite, PaletteGroupOptions, Runner
from toolkit.backends.coreml.ops import ANE_OPS


class CoreMLOptions(PaletteGroupOptions):
    deployment_target: Literal["iOS16", "iOS17", "iOS18"] | None = Field(
        None, description="coreml: minimum iOS; default iOS16, raised automatically where a compression needs iOS18")
    input_type: Literal["image", "tensor"] = Field(
        "image", description="coreml: 'image' takes a CVPixelBuffer (ImageType), 'tensor' an MLMultiArray in the contract layout")
    classifier: bool | None = Field(
        None, description="coreml: add softmax and a classifier config with the labels (default: on for classification models)")


class CoreMLBackend(Backend):
    name = "coreml"
    conversion_cost = 2  # tracing, then coremltools' MIL passes
    suffix = ".mlpackage"
    precisions = ("fp32", "fp16", "int8_weights", "int8", "palettize8", "palettize6", "palettize4", "int4_block", "sparse")
    unsupported = {
        "dynamic_int8": "Core ML has no run-time activation quantization; use int8_weights",
        "int16x8": "Core ML has no int16 activation type",
    }
    options = CoreMLOptions
    op_support = {"coreml_ane": ANE_OPS}
    rewrites = ("prelu_rank", "area_resize", "nearest_resize", "antialias_resize", "bicubic_resize", "adaptive_max_pool_uneven",
                "avg_pool_divisor", "channel_shuffle")

    def unit_refuses(self, unit: str, precision: str) -> str | None:
        if unit == "npu" and precision == "fp32":
            return "the Neural Engine computes float16; a float32 Core ML program runs on the GPU (see the GPU profile)"
        return None

    def failure_site(self, exc: BaseException) -> FailureSite | None:
        from toolkit.backends.coreml.failure import failure_site

        return failure_site(exc)

    def convert(self, module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
        from toolkit.backends.coreml.convert import convert

        return convert(module, sample, spec, precision=precision, path=path, options=options)

    def runner(self, path: Path, *, threads: int = 2, layout: str = "nhwc", pixel_range: str = "0-255") -> Runner:
        from toolkit.backends.coreml.graph import runner

        return runner(path, layout=layout, pixel_range=pixel_range)

    def structural_checks(self, details: dict, precision: str, *, input_shape: tuple[int, ...],
                          output_shapes: Mapping[str, tuple[int, ...]]) -> list[dict]:
        from toolkit.backends.coreml.graph import structural_checks

        return structural_checks(details, precision, input_shape=input_shape, output_shapes=output_shapes)

    def weights(self, path: Path) -> list[ArtifactWeight]:
        from toolkit.backends.coreml.graph import weights

        return weights(path)

    def cost(self, path: Path) -> Cost:
        from toolkit.backends.coreml.graph import cost

        return cost(path)

    def inspect(self, path: Path) -> dict:
        from toolkit.backends.coreml.graph import inspect

        return inspect(path)


BACKEND = CoreMLBackend()
