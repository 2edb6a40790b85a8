"""Core AI: ``.aimodel`` assets for iOS / macOS 27+ through coreai-torch (from ``torch.export``); run by Apple's
Core AI runtime from coreai-core, whose Linux wheel executes an asset on the CPU, so every machine verifies
the saved asset with the runtime that ships it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from toolkit.backends.base import ArtifactWeight, Backend, Cost, PaletteGroupOptions, Runner
from toolkit.backends.coreai.ops import ANE_OPS


class CoreAIBackend(Backend):
    name = "coreai"
    suffix = ".aimodel"
    precisions = ("fp32", "fp16", "int8_weights", "palettize8", "palettize6", "palettize4", "int4_block")
    unsupported = {
        "int8": ("not offered yet: coreai-opt 0.4.0's W8A8 (PT2E Quantizer) converts and runs here (acne_mobilenetv2: 70 "
                 "quantize/dequantize pairs, 53 int8 weights) but prepare + calibrate took 300 s on 2 busy cores; use coreml int8"),
        "dynamic_int8": "Core AI has no run-time activation quantization",
        "int16x8": "Core AI has no int16 activation path in coreai-torch 0.4.3",
        "sparse": "not offered yet: coreai-opt 0.4.0's sparsify_weights is not wired into skinkit; use coreml sparse",
    }
    options = PaletteGroupOptions
    slow_runtime = True  # the Linux CPU runtime: ~0.5 s per MobileNetV2 image on one core
    op_support = {"coreai_ane": ANE_OPS}
    rewrites = ("area_resize", "nearest_resize", "antialias_resize", "adaptive_max_pool", "avg_pool_window", "elu")

    def unit_refuses(self, unit: str, precision: str) -> str | None:
        if unit == "npu" and precision == "fp32":
            return "the Neural Engine computes float16; a float32 Core AI program runs on the GPU or CPU"
        return None

    def convert(self, module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
        from toolkit.backends.coreai.convert import convert

        return convert(module, sample, spec, precision=precision, path=path, options=options)

    def runner(self, path: Path, *, threads: int = 2, layout: str = "nhwc", pixel_range: str = "0-255") -> Runner:
        from toolkit.backends.coreai.graph import runner

        return runner(path)

    def structural_checks(self, details: dict, precision: str, *, input_shape: tuple[int, ...],
                          output_shapes: Mapping[str, tuple[int, ...]]) -> list[dict]:
        from toolkit.backends.coreai.graph import structural_checks

        return structural_checks(details, precision, input_shape=input_shape, output_shapes=output_shapes)

    def weights(self, path: Path) -> list[ArtifactWeight]:
        from toolkit.backends.coreai.graph import weights

        return weights(path)

    def cost(self, path: Path) -> Cost:
        from toolkit.backends.coreai.graph import cost

        return cost(path)

    def inspect(self, path: Path) -> dict:
        from toolkit.backends.coreai.graph import inspect

        return inspect(path)


BACKEND = CoreAIBackend()
