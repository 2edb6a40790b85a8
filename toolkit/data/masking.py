"""Input masked to the skin: for a network that sees the photo a skin segmenter has filtered.

A spec declares it with ``extra["masked_input"] = {"fill": 0}``: its input is
``image * skin + fill * (1 - skin)`` (``fill`` in 0–255 pixel units, a number or an RGB triple), where
``skin`` is the image's {0, 1} skin mask at the network's input resolution. Evaluation data uses the exact
mask; training data (the ``train`` split) a copy eroded or dilated by 0–``MAX_JITTER_PX`` pixels, drawn
per image from its seed, split and index, the way a segmenter's mask misses or overshoots the skin's edge.
``toolkit.tasks.data`` applies it to synthetic samples and to folders (whose ``skin/`` masks it needs).
"""

from __future__ import annotations

import cv2
import numpy as np

from toolkit.data.synthetic import _SPLITS
from toolkit.errors import BadInputError

KEY = "masked_input"
MAX_JITTER_PX = 3  # largest erosion or dilation of a training image's mask
JITTERED_SPLITS = ("train",)
_JITTER_STREAM = 0x6A17  # keeps the jitter's random stream apart from the generator's own


def masked_fill(spec) -> np.ndarray | None:
    """The fill (RGB, 0–255) of a spec whose network sees the photo masked to the skin; None when it sees the
    whole photo. A malformed declaration is an error quoting it."""
    declared = (spec.extra or {}).get(KEY)
    if declared is None:
        return None
    fix = f'declare extra["{KEY}"] = {{"fill": 0}} (a number or an RGB triple in 0–255 pixel units)'
    if not isinstance(declared, dict) or set(declared) - {"fill"}:
        raise BadInputError(f"model {spec.name!r}: extra[{KEY!r}] = {declared!r} is not {{'fill': ...}}", fix=fix)
    fill = np.asarray(declared.get("fill", 0), np.float64).reshape(-1)
    if fill.size not in (1, 3) or not np.all((fill >= 0) & (fill <= 255)):
        raise BadInputError(f"model {spec.name!r}: extra[{KEY!r}] fill {declared.get('fill')!r} is not a pixel value in 0–255", fix=fix)
    return np.broadcast_to(fill, (3,)).copy()


def jitter_mask(mask: np.ndarray, *, seed: int, split: str, index: int, max_px: int = MAX_JITTER_PX) -> np.ndarray:
    """``mask`` eroded or dilated by 0–``max_px`` pixels (an elliptical kernel), the radius and direction drawn
    from ``seed``, ``split`` and ``index``: the same image always gets the same jitter."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLITS[split], index, _JITTER_STREAM]))
    radius = int(rng.integers(0, max_px + 1))
    grow = bool(rng.integers(2))
    if radius == 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return (cv2.dilate if grow else cv2.erode)(mask, kernel)


def input_mask(skin: np.ndarray, *, seed: int, split: str, index: int) -> np.ndarray:
    """The mask a synthetic input is filtered by: the exact skin mask, jittered on the training split."""
    return jitter_mask(skin, seed=seed, split=split, index=index) if split in JITTERED_SPLITS else skin


def apply_mask(image: np.ndarray, mask: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """``image * mask + fill * (1 - mask)`` for a uint8 H x W x 3 image and a {0, 1} H x W mask."""
    if mask.shape != image.shape[:2]:
        raise ValueError(f"skin mask {mask.shape} does not match the image {image.shape[:2]}")
    return np.where(mask[..., None] > 0, image, np.round(fill).astype(np.uint8)).astype(np.uint8)
