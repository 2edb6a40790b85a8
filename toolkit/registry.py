"""One spec per model, registered next to its architecture.

A spec is the model's contract: what the network expects (size, colour order, normalization),
what it emits (labels or named outputs with units), what task metric judges it, and how much an
exported artifact may deviate from the float model before verification refuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class OutputSpec:
    name: str
    description: str
    unit: str = ""
    shape: tuple[int | None, ...] | None = None  # per image, as the network returns it (no batch axis); None: unchecked


@dataclass(frozen=True)
class Tolerance:
    """Bounds an artifact must meet against the float PyTorch model on held-out data.

    Numerics on the raw outputs, each output on its own: ``max_rel`` bounds the max abs error divided by the
    output's range (max - min of the float reference over the evaluation set; an integer output's step, 1), so
    a model whose outputs span ±200 is judged as one whose outputs span ±10; ``min_sqnr_db`` bounds the SQNR
    in dB; ``max_abs`` is an absolute bound on the max abs error, in the output's own units (a recipe's
    explicit one stays absolute); ``min_cosine`` bounds the cosine to float. ``min_agreement`` is top-1
    (classification) or per-pixel argmax (segmentation) agreement with float; ``max_metric_drop``
    is the non-inferiority margin of the headline task metric: how far it may fall below float's, in
    the metric's own units. ``margins`` adds margins on any other metric of the task (names as in
    ``toolkit.verify.stats`` that have a float counterpart, e.g. ``recall.severe`` or ``mae.tewl``).
    ``max_group_drop`` bounds the headline drop in the worst skin-tone group. A bound left ``None`` is
    not checked (elementwise error says little about an 8-bit model; agreement does).
    """

    max_abs: float | None = None
    max_rel: float | None = None
    min_sqnr_db: float | None = None
    min_cosine: float | None = None
    min_agreement: float | None = None
    max_metric_drop: float | None = None
    margins: dict[str, float] = field(default_factory=dict)
    max_group_drop: float | None = None


# Tiers of a model whose output is a decision per image (class scores) or per pixel (class maps): the
# acne classifiers' and segmenters' tolerances, and the defaults of a user's model of those tasks.
# Elementwise error is relative to the output's range, so a user's model whose logits span ±200 is judged
# as fairly as the reference models, whose logits range (max - min, 200 test images) 14.2 (EfficientNet-B0),
# 20.6-22.7 (U-Net, segmenter), 21.3 (ResNet-50), 33.5 (the MobileNetV2s): the bounds are the former absolute
# ones, 1e-3 and 0.25, over a range of about 20 (so tighter than before on EfficientNet-B0, looser on the
# MobileNetV2s). Measured on the reference recipes: fp32 artifacts within 1e-6 of the range, fp16 within
# 0.006 (Core AI, which computes in float16). A Core ML classifier returns probabilities (range ~1), so its
# bound is 0.015 of a probability, not the former 0.25; measured 0.005.
REL_FP32, REL_FP16 = 5e-5, 0.015
DECISION_TOLERANCES = {
    "fp32": Tolerance(max_rel=REL_FP32, min_cosine=0.99999, min_agreement=0.995, max_metric_drop=0.005),
    # float16 keeps ~3 significant digits: 1.5 % of the range.
    "fp16": Tolerance(max_rel=REL_FP16, min_cosine=0.9995, min_agreement=0.98, max_metric_drop=0.01),
    # Quantized tiers: elementwise error is not meaningful at 8 bits; agreement and macro-F1 are.
    # Margins are judged on the upper end of the drop's 95 % CI: on 200 images that end sits about
    # 1.5 points above a drop of zero once a few decisions differ (published w8a8 MobileNetV2: −1.8 top-1).
    "int8": Tolerance(min_cosine=0.98, min_agreement=0.95, max_metric_drop=0.03),
    "lowbit": Tolerance(min_cosine=0.95, min_agreement=0.90, max_metric_drop=0.05),
}
DENSE_DECISION_TOLERANCES = {
    "fp32": Tolerance(max_rel=REL_FP32, min_cosine=0.99999, min_agreement=0.999, max_metric_drop=0.002),
    "fp16": Tolerance(max_rel=REL_FP16, min_cosine=0.9995, min_agreement=0.995, max_metric_drop=0.01),
    "int8": Tolerance(min_cosine=0.98, min_agreement=0.97, max_metric_drop=0.02),
    "lowbit": Tolerance(min_cosine=0.95, min_agreement=0.95, max_metric_drop=0.04),
}

# Tiers of a model that detects instances: detections flip order and drop in and out near the score threshold
# under quantization, so elementwise error means nothing; instances are matched (same class, mask IoU >= 0.5)
# for agreement, and the mask AP drop is bounded.
INSTANCE_TOLERANCES = {
    "fp32": Tolerance(min_agreement=0.98, max_metric_drop=0.01),
    "fp16": Tolerance(min_agreement=0.95, max_metric_drop=0.02),
    "int8": Tolerance(min_agreement=0.85, max_metric_drop=0.05),
    "lowbit": Tolerance(min_agreement=0.80, max_metric_drop=0.08),
}


@dataclass(frozen=True)
class TrainingConfig:
    n_train: int
    n_val: int
    epochs: int
    batch_size: int
    lr: float
    seed: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """A model's contract. ``extra`` holds what only some models declare, by key:

    - ``"target": "skin_mask"`` (segmentation): the synthetic target is the skin mask, not the regions.
    - ``"masked_input": {"fill": 0}``: the network sees the photo masked to the skin, as a chain that runs a
      skin segmenter first feeds it: ``image * skin + fill * (1 - skin)``, ``fill`` in 0–255 pixel units (a
      number or an RGB triple). Its data (``toolkit.data.masking``, applied by ``toolkit.tasks.data``): the
      synthetic skin mask at input resolution, eroded or dilated by 0–3 px on the training split; a folder's
      ``skin/`` masks, which it then must have.
    - ``"float_postprocess": True``: full-integer targets keep float the ops the network's own ``forward`` runs
      outside its layers (an instance segmenter's box decoding, NMS and RoIAlign sampling weights, whose values
      an 8-bit grid cannot hold); its layers, and everything inside them, are quantized.
    """

    name: str
    task: str  # a name in ``toolkit.tasks.TASKS``: what the outputs mean and how they are judged
    architecture: str
    factory: Callable[[], "object"]
    description: str
    input_size: tuple[int, int]  # (height, width) of the network input
    outputs: tuple[OutputSpec, ...]
    tolerances: dict[str, Tolerance]  # keyed by precision tier: "fp32", "fp16", "int8", "lowbit"
    training: TrainingConfig | None = None  # how `skinkit train` makes its weights; None: a user's model, trained elsewhere
    labels: tuple[str, ...] = ()
    # The channel order the network was trained on. Apps always hand over RGB; a BGR network's graph swaps them.
    color_order: Literal["RGB", "BGR"] = "RGB"
    # The network itself sees (pixel / 255 - mean) / std, NCHW. Exported artifacts bake this in.
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    metric: str = ""  # name of the headline task metric
    higher_is_better: bool = True
    output_size: tuple[int, int] | None = None  # for dense outputs, (height, width)
    task_output: str | None = None  # the output the task's metrics read, when not the first
    licence: str = "Apache-2.0; trained on skinkit synthetic data only"
    extra: dict = field(default_factory=dict)  # keys in the class docstring

    def tolerance(self, tier: str) -> Tolerance:
        try:
            return self.tolerances[tier]
        except KeyError:
            raise KeyError(f"model {self.name!r} declares no tolerance for precision tier {tier!r}") from None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    # Importing the package registers every reference model.
    import toolkit.models  # noqa: F401


def get_spec(name: str) -> ModelSpec:
    from toolkit.errors import BadInputError, did_you_mean

    _ensure_loaded()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise BadInputError(f"unknown model {name!r}{did_you_mean(name, _REGISTRY)}",
                            fix=f"use one of: {known}, or 'path/to/file.py:factory'")
    return _REGISTRY[name]


def list_models() -> list[ModelSpec]:
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
