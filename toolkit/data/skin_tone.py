"""Skin tone per image, measured from its skin pixels: ITA° in CIELab, binned into six Fitzpatrick-proxy groups.

ITA° = atan((L* − 50) / b*) · 180/π (Chardon et al. 1991), on the median L* and b* of the image's skin
pixels, converted by OpenCV from 8-bit sRGB (D65). Skin pixels are the data's skin mask where it has one
(the synthetic generator's, or a folder's ``skin/<stem>.png``); otherwise they are estimated: the central
face ellipse of a selfie crop, kept where the colour is skin-like (hue angle 10–85° and chroma 4–70 in
a*b*), then trimmed to the 10–90th percentile of L* (eyes, brows, shadows and specular highlights out).

The measurement sees the photo as lit, so it is a property of the image, not of the person: an
over-exposed selfie reads lighter. Reports show measured groups next to any annotated ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from toolkit.data.synthetic import ITA_GROUPS, ita_group

MIN_SKIN_FRACTION = 0.02  # below this share of skin-like pixels the image gets no ITA ("unknown")
UNKNOWN = "unknown"
GROUP_ORDER = tuple(g for g, _, _ in ITA_GROUPS) + (UNKNOWN,)


@dataclass(frozen=True)
class SkinTone:
    ita: np.ndarray  # N, degrees; NaN where too few skin pixels
    groups: tuple[str, ...]
    skin_fraction: np.ndarray  # N, share of the image's pixels used
    method: str  # "skin mask" or "estimated skin pixels"


def _lab(image: np.ndarray) -> np.ndarray:
    """8-bit RGB -> float CIELab (L* 0–100, a*, b* in their own units)."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def estimate_skin_mask(image: np.ndarray) -> np.ndarray:
    """Skin-like pixels of the central face ellipse of an RGB selfie crop (H x W uint8 {0, 1})."""
    h, w = image.shape[:2]
    lab = _lab(image)
    a, b = lab[..., 1], lab[..., 2]
    hue = np.degrees(np.arctan2(b, a))
    chroma = np.hypot(a, b)
    ellipse = np.zeros((h, w), np.uint8)
    cv2.ellipse(ellipse, (w // 2, h // 2), (int(w * 0.36), int(h * 0.44)), 0, 0, 360, 1, -1)
    return ((ellipse > 0) & (hue >= 10) & (hue <= 85) & (chroma >= 4) & (chroma <= 70)).astype(np.uint8)


def ita_of(image: np.ndarray, skin_mask: np.ndarray | None = None) -> tuple[float, float]:
    """(ITA° of the image's skin, fraction of pixels used); ITA is NaN if too few skin pixels."""
    mask = estimate_skin_mask(image) if skin_mask is None else (skin_mask > 0)
    lab = _lab(image)
    px = lab[mask > 0]
    if len(px) < MIN_SKIN_FRACTION * mask.size:
        return float("nan"), len(px) / mask.size
    lo, hi = np.percentile(px[:, 0], [10, 90])
    kept = px[(px[:, 0] >= lo) & (px[:, 0] <= hi)]
    if len(kept) == 0:
        kept = px
    l_star, b_star = float(np.median(kept[:, 0])), float(np.median(kept[:, 2]))
    return math.degrees(math.atan2(l_star - 50.0, b_star)), len(kept) / mask.size


def measure(images: np.ndarray, skin_masks: np.ndarray | None = None) -> SkinTone:
    """ITA° and group of every image (N x H x W x 3 uint8 RGB)."""
    values = [ita_of(img, None if skin_masks is None else skin_masks[i]) for i, img in enumerate(images)]
    ita = np.array([v[0] for v in values], np.float64)
    groups = tuple(ita_group(v) if np.isfinite(v) else UNKNOWN for v in ita)
    return SkinTone(ita=ita, groups=groups, skin_fraction=np.array([v[1] for v in values]),
                    method="skin mask" if skin_masks is not None else "estimated skin pixels")


def agreement_with_annotation(measured: SkinTone, annotated_ita: np.ndarray, annotated_groups: tuple[str, ...]) -> dict | None:
    """How measured ITA compares with the data's own annotation, where it has one."""
    known = np.isfinite(annotated_ita) & np.isfinite(measured.ita)
    if not known.any():
        return None
    same = np.array([m == a for m, a in zip(measured.groups, annotated_groups)])[known]
    diff = measured.ita[known] - annotated_ita[known]
    return {"n": int(known.sum()), "group_agreement": float(same.mean()),
            "ita_mean_abs_difference": float(np.mean(np.abs(diff))), "ita_mean_difference": float(np.mean(diff))}
