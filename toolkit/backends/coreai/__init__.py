"""Core AI: ``.aimodel`` assets for iOS / macOS 27+ through coreai-torch (from ``torch.export``); run by Apple's
Core AI runtime from coreai-core, whose Linux wheel executes an asset on the CPU, so every machine verifies
the saved asset with the runtime that ships it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from toolkit.backends.base import ArtifactWeight, Backend, Cost, Runner

# Measured with coreai-opt 0.4.0 (its post-conversion passes on the Core AI program) on acne_mobilenetv2, 2 CPU cores.
_INT8_WEIGHTS = ("not offered yet: coreai-opt 0.4.0's quantize_weights runs here (0.2 s, int8 per-channel blockwise_shift_scale "
                 "weights, max abs error 0.16 on 4 images) but skinkit's weight reader and checks do not decode it yet")
_PALETTIZE = ("not offered: coreai-opt 0.4.0's palettize_weights did not finish k-means on acne_mobilenetv2 in 10 minutes on "
              "2 CPU cores; use coreml palettize*")
_NOT_TRIED = "not offered: coreai-opt 0.4.0's PT2E path for this is not tried in skinkit yet; use coreml"


class CoreAIBackend(Backend):
    name = "coreai"
    suffix = ".aimodel"
    precisions = ("fp32", "fp16")
    unsupported = {
        "int8_weights": _INT8_WEIGHTS, "palettize8": _PALETTIZE, "palettize6": _PALETTIZE, "palettize4": _PALETTIZE,
        "int8": _NOT_TRIED, "int4_block": _NOT_TRIED,
        "dynamic_int8": "Core AI has no run-time activation quantization",
        "int16x8": "Core AI has no int16 activation path in coreai-torch 0.4.3",
        "sparse": "coreai-torch 0.4.3 stores no sparse weights",
    }
    rewrites = ("area_resize", "nearest_resize", "antialias_resize", "adaptive_max_pool", "avg_pool_window", "elu")

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
