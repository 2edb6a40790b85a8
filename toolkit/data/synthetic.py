"""A deterministic generator of face-like skin images with known ground truth.

Every image is a function of ``(seed, split, index)`` alone, so any sample can be regenerated
on its own, in any order, on any machine. Each sample records:

- skin tone as ITA° (individual typology angle, from CIELab) and its Fitzpatrick-proxy group;
- an acne severity grade (clear / mild / moderate / severe) set by the number of inflammatory lesions;
- per-pixel masks for melanin (pigmentation), trouble (acne/inflammation), wrinkles and pores;
- a skin mask (face ellipse minus eyes, brows and mouth);
- facial skin regions (``FACE_REGIONS``: forehead, each cheek, nose, chin), one instance each, as a map of
  region index + 1 (0: none) — skin only, laid out from the face's geometry;
- hydration (arbitrary units, 0–100) and TEWL (g/m²/h), which drive the rendered sheen, surface
  roughness and redness, so a model can read them from the image;
- lighting (gain, colour temperature, directional shading).

The physics is caricature, not dermatology: the point is data whose labels a network must really
learn from pixels, across skin tones, with ground truth exact by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

ACNE_GRADES = ("clear", "mild", "moderate", "severe")
SEGMENTATION_CLASSES = ("background", "melanin", "trouble", "wrinkle", "pore")
# Facial skin regions, one instance each per face; "left" and "right" as the picture shows them.
FACE_REGIONS = ("forehead", "cheek_left", "cheek_right", "nose", "chin")
# ITA° bins (Chardon et al. 1991, Del Bino et al. 2006) used as Fitzpatrick-proxy groups, lightest first.
ITA_GROUPS = (
    ("very_light", 55.0, 90.0),
    ("light", 41.0, 55.0),
    ("intermediate", 28.0, 41.0),
    ("tan", 10.0, 28.0),
    ("brown", -30.0, 10.0),
    ("dark", -90.0, -30.0),
)
# Lesion counts per acne grade (inclusive ranges).
_LESIONS = {0: (0, 0), 1: (2, 5), 2: (8, 14), 3: (18, 30)}
_SPLITS = {"train": 0, "val": 1, "test": 2, "calib": 3}


@dataclass(frozen=True)
class SkinSample:
    image: np.ndarray  # HxWx3 uint8, RGB
    skin_mask: np.ndarray  # HxW uint8 {0, 1}
    segmentation: np.ndarray  # HxW uint8 class index into SEGMENTATION_CLASSES
    regions: np.ndarray  # HxW uint8: 1 + index into FACE_REGIONS, 0 outside every region
    acne_grade: int
    lesion_count: int
    hydration: float  # arbitrary units, 0–100
    tewl: float  # g/m²/h
    ita: float  # degrees, of the rendered base skin colour
    group: str  # ITA group name


def ita_group(ita: float) -> str:
    """The ITA group an angle falls in (bins are closed below, open above; extremes saturate)."""
    for name, lo, hi in ITA_GROUPS:
        if lo <= ita < hi:
            return name
    return ITA_GROUPS[0][0] if ita >= ITA_GROUPS[0][2] else ITA_GROUPS[-1][0]


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLITS)}")
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLITS[split], index]))


def _lab_to_rgb(lab: tuple[float, float, float]) -> np.ndarray:
    px = np.array([[lab]], dtype=np.float32)
    return np.clip(cv2.cvtColor(px, cv2.COLOR_Lab2RGB)[0, 0], 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Band-limited noise in [-1, 1]: a small random grid upsampled bicubically."""
    grid = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def make_sample(seed: int, split: str, index: int, size: int = 224) -> SkinSample:
    rng = _rng(seed, split, index)
    s = size / 224.0

    # --- targets first; the image is rendered from them.
    group_idx = int(rng.integers(len(ITA_GROUPS)))
    _, lo, hi = ITA_GROUPS[group_idx]
    ita = float(rng.uniform(max(lo, -58.0) + 0.5, min(hi, 68.0) - 0.5))
    b_star = float(rng.uniform(12.0, 22.0))
    l_star = float(np.clip(50.0 + b_star * math.tan(math.radians(ita)), 18.0, 95.0))
    ita = math.degrees(math.atan2(l_star - 50.0, b_star))  # exact for the colour actually used
    a_star = float(rng.uniform(7.0, 15.0))
    grade = int(rng.integers(4))
    hydration = float(rng.uniform(15.0, 95.0))
    redness = float(rng.uniform(0.0, 1.0))
    dryness = 1.0 - hydration / 100.0
    tewl = float(6.0 + 22.0 * dryness + 9.0 * redness + rng.normal(0.0, 0.8))

    # --- background and face geometry.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    bg0, bg1 = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    t = (xx / size)[..., None]
    img = (bg0 * (1 - t) + bg1 * t).astype(np.float32) + 0.04 * _smooth_noise(rng, size, 6)[..., None]
    cx, cy = size / 2 + rng.uniform(-14, 14) * s, size / 2 + rng.uniform(-10, 10) * s
    ax, ay = rng.uniform(0.34, 0.42) * size, rng.uniform(0.42, 0.48) * size
    face = np.zeros((size, size), np.uint8)
    cv2.ellipse(face, (int(cx), int(cy)), (int(ax), int(ay)), 0, 0, 360, 1, -1)

    # --- skin: base colour with redness, low-frequency shading, roughness and sheen.
    base = _lab_to_rgb((l_star, a_star + 10.0 * redness, b_star))
    shading = 1.0 + 0.06 * _smooth_noise(rng, size, 4)
    roughness = 0.012 + 0.05 * dryness
    grain = cv2.GaussianBlur(rng.normal(0.0, 1.0, (size, size)).astype(np.float32), (0, 0), 0.7)
    skin = base[None, None, :] * (shading * (1.0 + roughness * grain))[..., None]
    sheen_amp = 0.06 + 0.38 * (hydration / 100.0)
    for _ in range(2):  # forehead and cheek highlights
        hx, hy = cx + rng.uniform(-0.4, 0.4) * ax, cy + rng.uniform(-0.6, 0.2) * ay
        r = rng.uniform(0.14, 0.22) * size
        skin += (sheen_amp * np.exp(-((xx - hx) ** 2 + (yy - hy) ** 2) / (2 * r * r)))[..., None] * 0.5

    seg = np.zeros((size, size), np.uint8)
    melanin = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        m = np.zeros((size, size), np.uint8)
        px, py = cx + rng.uniform(-0.6, 0.6) * ax, cy + rng.uniform(-0.6, 0.6) * ay
        cv2.ellipse(m, (int(px), int(py)), (int(rng.uniform(5, 14) * s), int(rng.uniform(4, 10) * s)),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
        melanin |= m
    dark = 0.55 + 0.15 * rng.uniform()
    skin = np.where(melanin[..., None] > 0, skin * np.array([dark, dark * 0.93, dark * 0.85], np.float32), skin)

    wrinkles = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(0, 5))):
        x0 = cx + rng.uniform(-0.55, 0.15) * ax
        y0 = cy - rng.uniform(0.25, 0.65) * ay
        length, amp, phase = rng.uniform(0.3, 0.6) * ax, rng.uniform(1.0, 4.0) * s, rng.uniform(0, 6.28)
        pts = np.array([[x0 + u, y0 + amp * math.sin(phase + u / (12 * s))] for u in np.linspace(0, length, 24)], np.int32)
        cv2.polylines(wrinkles, [pts], False, 1, max(1, int(round(1.5 * s))))
    skin = np.where(wrinkles[..., None] > 0, skin * 0.72, skin)

    pores = np.zeros((size, size), np.uint8)
    n_pores = int(rng.integers(40, 140) * s * s)
    for _ in range(n_pores):
        px, py = cx + rng.uniform(-0.7, 0.7) * ax, cy + rng.uniform(-0.2, 0.7) * ay
        cv2.circle(pores, (int(px), int(py)), max(1, int(round(1.2 * s))), 1, -1)
    skin = np.where(pores[..., None] > 0, skin * 0.8, skin)

    trouble = np.zeros((size, size), np.uint8)
    n_lesions = int(rng.integers(_LESIONS[grade][0], _LESIONS[grade][1] + 1))
    lesion_rgb = _lab_to_rgb((max(l_star - 12.0, 12.0), a_star + 32.0, b_star + 6.0))
    lesion_layer = np.zeros((size, size), np.float32)
    for _ in range(n_lesions):
        ang, rad = rng.uniform(0, 2 * math.pi), math.sqrt(rng.uniform(0.0, 0.75))
        px, py = cx + rad * ax * math.cos(ang), cy + rad * ay * math.sin(ang)
        r = rng.uniform(2.5, 5.0) * s
        cv2.circle(trouble, (int(px), int(py)), int(round(r)), 1, -1)
        cv2.circle(lesion_layer, (int(px), int(py)), int(round(r * 1.6)), 1.0, -1)
    lesion_layer = cv2.GaussianBlur(lesion_layer, (0, 0), 1.2 * s)
    skin = skin * (1 - lesion_layer[..., None]) + lesion_rgb[None, None, :] * lesion_layer[..., None]

    # --- compose: face on background, then eyes, brows and mouth (non-skin).
    features = np.zeros((size, size), np.uint8)
    for sx in (-1, 1):
        ex, ey = int(cx + sx * 0.42 * ax), int(cy - 0.18 * ay)
        cv2.ellipse(features, (ex, ey), (int(0.2 * ax), int(0.09 * ay)), 0, 0, 360, 1, -1)
        cv2.ellipse(features, (ex, int(ey - 0.2 * ay)), (int(0.24 * ax), int(0.035 * ay)), 0, 0, 360, 1, -1)
    cv2.ellipse(features, (int(cx), int(cy + 0.55 * ay)), (int(0.32 * ax), int(0.08 * ay)), 0, 0, 360, 1, -1)
    skin_mask = (face > 0) & (features == 0)
    feature_rgb = np.array([0.12, 0.08, 0.07], np.float32) * rng.uniform(0.6, 1.6)
    img = np.where(skin_mask[..., None], skin, img)
    img = np.where(((face > 0) & (features > 0))[..., None], feature_rgb, img)

    # Ground-truth masks live on skin only; later classes win where they overlap.
    for k, m in ((1, melanin), (3, wrinkles), (4, pores), (2, trouble)):
        seg[(m > 0) & skin_mask] = k

    regions = _regions(skin_mask, xx, yy, cx, cy, ax, ay)

    # --- lighting: gain, colour temperature, a directional gradient; then sensor noise.
    gain = rng.uniform(0.8, 1.15)
    temp = rng.uniform(-0.06, 0.06)
    direction = rng.uniform(0, 2 * math.pi)
    grad = 1.0 + 0.12 * ((xx - size / 2) * math.cos(direction) + (yy - size / 2) * math.sin(direction)) / size
    img = img * gain * grad[..., None] * np.array([1 + temp, 1.0, 1 - temp], np.float32)
    img += rng.normal(0.0, 0.008, img.shape).astype(np.float32)
    image = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)

    return SkinSample(
        image=image,
        skin_mask=skin_mask.astype(np.uint8),
        segmentation=seg,
        regions=regions,
        acne_grade=grade,
        lesion_count=n_lesions,
        hydration=hydration,
        tewl=tewl,
        ita=float(ita),
        group=ITA_GROUPS[group_idx][0],
    )


def _regions(skin: np.ndarray, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """The face's regions on its skin, from its geometry alone (no random draw, so adding them changed no
    image): forehead above the brows, the nose between the eyes down to above the mouth, each cheek below its
    eye beside the nose, the chin below the mouth."""
    u, v = (xx - cx) / ax, (yy - cy) / ay  # face coordinates: the ellipse is u² + v² < 1
    out = np.zeros(skin.shape, np.uint8)
    parts = (
        v < -0.46,                                                     # forehead
        (u < -0.16) & (v >= -0.02) & (v < 0.45),                       # cheek, picture left
        (u > 0.16) & (v >= -0.02) & (v < 0.45),                        # cheek, picture right
        (np.abs(u) < 0.13) & (v >= -0.28) & (v < 0.38),                # nose
        v >= 0.68,                                                     # chin
    )
    for k, part in enumerate(parts, start=1):
        out[part & (skin > 0)] = k
    return out


def generate(n: int, *, split: str, seed: int = 0, size: int = 224, start: int = 0) -> list[SkinSample]:
    """``n`` samples of one split, indices ``start … start+n-1``."""
    return [make_sample(seed, split, start + i, size) for i in range(n)]
