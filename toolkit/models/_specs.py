"""Spec pieces several reference models share: ImageNet normalization, the acne classifiers' contract,
and the segmenters' tolerances."""

from __future__ import annotations

from collections.abc import Callable

from toolkit.data.synthetic import ACNE_GRADES
from toolkit.registry import DECISION_TOLERANCES, DENSE_DECISION_TOLERANCES, ModelSpec, OutputSpec, TrainingConfig, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CLS_TOL = DECISION_TOLERANCES
CLS_OUT = (OutputSpec("logits", "unnormalized log-probabilities over acne grades"),)
CLS_TRAIN = TrainingConfig(n_train=2400, n_val=300, epochs=5, batch_size=32, lr=3e-3)

SEG_TOL = DENSE_DECISION_TOLERANCES
SEG_OUT = (OutputSpec("logits", "per-pixel class scores, channel-last like the input"),)


def register_acne(name: str, architecture: str, factory: Callable[[], object], description: str,
                  training: TrainingConfig = CLS_TRAIN, extra: dict | None = None) -> ModelSpec:
    """An acne-grade classifier: 224 × 224 input, ImageNet normalization, logits over ``ACNE_GRADES``;
    ``extra`` as ``ModelSpec`` documents it (e.g. ``{"masked_input": {"fill": 0}}``: it sees the photo masked to the skin)."""
    return register_model(ModelSpec(
        name=name, task="classification", architecture=architecture, factory=factory, description=description,
        input_size=(224, 224), outputs=CLS_OUT, labels=ACNE_GRADES, tolerances=CLS_TOL, training=training,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, metric="macro_f1", extra=dict(extra or {}),
    ))
