"""The precisions a target may ask for, each with the tolerance tier that judges it. Which format produces
which precision is each backend's own declaration (``Backend.precisions``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    description: str
    tier: str  # which of a model's tolerance tiers applies: fp32 | fp16 | int8 | lowbit
    calibrated: bool = False  # needs calibration images (activation ranges)
    needs_sparsity: bool = False  # needs a pruned model (compress.pruning)


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("float32 weights and compute", "fp32"),
    "fp16": Precision("float16 weights and compute", "fp16"),
    "int8_weights": Precision("int8 per-channel weights, dequantized at load; float compute", "int8"),
    "dynamic_int8": Precision("int8 per-channel weights; activations quantized at run time (dynamic range)", "int8"),
    "int8": Precision("int8 weights and int8 activations from calibration (TFLite: full integer, int8 I/O; Core ML: W8A8, iOS17; "
                      "ONNX: QDQ, per-channel weights, float I/O)",
                      "int8", calibrated=True),
    "int16x8": Precision("int8 weights and int16 activations from calibration (int16 I/O)", "int8", calibrated=True),
    "palettize8": Precision("8-bit lookup-table weights (k-means), float16 compute", "int8"),
    "palettize6": Precision("6-bit lookup-table weights (k-means), float16 compute", "lowbit"),
    "palettize4": Precision("4-bit lookup-table weights (k-means), float16 compute", "lowbit"),
    "int4_block": Precision("int4 weights, block-wise scales (block 16), float16 compute", "lowbit"),
    "sparse": Precision("pruned weights stored sparse (bit mask + float16 non-zeros), float16 compute", "fp16", needs_sparsity=True),
}
