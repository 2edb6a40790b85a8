"""Synthetic skin data with known ground truth, and helpers to turn it into model inputs."""

from toolkit.data.synthetic import (
    ACNE_GRADES,
    ITA_GROUPS,
    SEGMENTATION_CLASSES,
    SkinSample,
    generate,
    ita_group,
    make_sample,
)

__all__ = ["ACNE_GRADES", "ITA_GROUPS", "SEGMENTATION_CLASSES", "SkinSample", "generate", "ita_group", "make_sample"]
