"""Spec pieces several reference models share: ImageNet normalization, the acne classifiers' contract,
and the segmenters' tolerances."""

from __future__ import annotations

from collections.abc import Callable

from toolkit.data.synthetic import ACNE_GRADES
from toolkit.registry import ModelSpec, OutputSpec, Tolerance, TrainingConfig, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CLS_TOL = {
    "fp32": Tolerance(max_abs=1e-3, min_cosine=0.99999, min_agreement=0.995, max_metric_drop=0.005),
    # Logits span about ±20: float16 keeps ~3 significant digits, so 0.25 is ~1 % of the range.
    "fp16": Tolerance(max_abs=0.25, min_cosine=0.9995, min_agreement=0.98, max_metric_drop=0.01),
    # Quantized tiers: elementwise error is not meaningful at 8 bits; agreement and macro-F1 are.
    # Margins are judged on the upper end of the drop's 95 % CI: on 200 images that end sits about
    # 1.5 points above a drop of zero once a few decisions differ (published w8a8 MobileNetV2: −1.8 top-1).
    "int8": Tolerance(min_cosine=0.98, min_agreement=0.95, max_metric_drop=0.03),
    "lowbit": Tolerance(min_cosine=0.95, min_agreement=0.90, max_metric_drop=0.05),
}
CLS_OUT = (OutputSpec("logits", "unnormalized log-probabilities over acne grades"),)
CLS_TRAIN = TrainingConfig(n_train=2400, n_val=300, epochs=5, batch_size=32, lr=3e-3)

SEG_TOL = {
    "fp32": Tolerance(max_abs=1e-3, min_cosine=0.99999, min_agreement=0.999, max_metric_drop=0.002),
    "fp16": Tolerance(max_abs=0.25, min_cosine=0.9995, min_agreement=0.995, max_metric_drop=0.01),
    "int8": Tolerance(min_cosine=0.98, min_agreement=0.97, max_metric_drop=0.02),
    "lowbit": Tolerance(min_cosine=0.95, min_agreement=0.95, max_metric_drop=0.04),
}
SEG_OUT = (OutputSpec("logits", "per-pixel class scores, channel-last like the input"),)


def register_acne(name: str, architecture: str, factory: Callable[[], object], description: str,
                  training: TrainingConfig = CLS_TRAIN) -> ModelSpec:
    """An acne-grade classifier: 224 × 224 input, ImageNet normalization, logits over ``ACNE_GRADES``."""
    return register_model(ModelSpec(
        name=name, task="classification", architecture=architecture, factory=factory, description=description,
        input_size=(224, 224), outputs=CLS_OUT, labels=ACNE_GRADES, tolerances=CLS_TOL, training=training,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, metric="macro_f1",
    ))
