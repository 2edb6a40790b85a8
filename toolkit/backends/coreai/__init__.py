"""Core AI: ``.aimodel`` assets for iOS / macOS 27+ through coreai-torch (from ``torch.export``); run by Apple's
Core AI runtime from coreai-core, whose Linux wheel executes an asset on the CPU, so every machine verifies
the saved asset with the runtime that ships it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from toolkit.backends.base import ArtifactWeight, Backend, Cost, Runner

_COMPRESSED = ("weight compression through coreai-opt 0.4.0 (torchao PT2E) is not wired into skinkit yet: "
               "coreai-opt is not installed or tried here; use fp16, or coreml for compressed weights")


class CoreAIBackend(Backend):
    name = "coreai"
    suffix = ".aimodel"
    precisions = ("fp32", "fp16")
    unsupported = {
        "int8_weights": _COMPRESSED, "palettize8": _COMPRESSED, "palettize6": _COMPRESSED, "palettize4": _COMPRESSED,
        "int8": _COMPRESSED, "int4_block": _COMPRESSED,
        "dynamic_int8": "Core AI has no run-time activation quantization",
        "int16x8": "Core AI has no int16 activation path in coreai-torch 0.4.3",
        "sparse": "coreai-torch 0.4.3 stores no sparse weights",
    }

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
