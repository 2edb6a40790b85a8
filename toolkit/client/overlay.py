"""The network's outputs drawn back onto the original photo: coloured masks with outlines, the region that
was not analysed dimmed, and a legend. ``write_overlay`` saves the picture as a PNG."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.data.photo import Fit
from toolkit.errors import BadInputError

# Saturated hues away from skin's orange-brown, distinct from each other on light and dark skin alike.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 200, 255),  # sky blue
    (0, 210, 90),  # green
    (255, 0, 200),  # magenta
    (255, 235, 0),  # yellow
    (120, 60, 255),  # violet
    (170, 255, 0),  # lime
    (0, 120, 120),  # teal
    (255, 255, 255),  # white
)
DIM = 0.4  # brightness kept outside the analysed box
_ASCII = {"²": "2", "³": "3", "¹": "1", "°": " deg", "µ": "u", "μ": "u", "±": "+/-", "×": "x", "÷": "/", "–": "-",
          "—": "-", "−": "-", "≤": "<=", "≥": ">=", "≈": "~", "‘": "'", "’": "'", "“": '"', "”": '"', "·": "*"}


@dataclass(frozen=True)
class Layer:
    """One mask to draw: ``mask`` (h, w) bool or {0, 1} at the network's resolution, ``color`` RGB."""

    name: str
    mask: np.ndarray
    color: tuple[int, int, int]
    alpha: float = 0.45
    outline: bool = True


def draw_overlay(photo: np.ndarray, fit: Fit, layers: Sequence[Layer], lines: Sequence[str] = ()) -> np.ndarray:
    """A new RGB uint8 picture the size of ``photo``, which ``fit`` was made from.

    Each layer's mask is resized (nearest neighbour, pixel centres) onto ``fit.box`` of the photo, blended
    there with its colour at its alpha and outlined (about 2 px per 1000 px of the photo's longer side);
    nothing is drawn outside the box, and the photo outside it is dimmed. A legend in the top-left corner
    lists each layer's name beside a colour swatch, then ``lines``, as ASCII (``ascii_text``). Pixels of
    the box in no layer, its outline or the legend are the photo's own.
    """
    import cv2

    if photo.shape[:2] != tuple(fit.source_size):
        raise BadInputError(f"photo is {photo.shape[1]}x{photo.shape[0]} px but the fit was made from a "
                            f"{fit.source_size[1]}x{fit.source_size[0]} px photo", fix="draw on the photo that was fitted")
    out = photo.copy()
    x0, y0, x1, y1 = fit.box
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    out[outside] = (out[outside] * DIM).astype(np.uint8)

    region = out[y0:y1, x0:x1]  # a view: drawing there cannot spill outside the box
    thickness = max(2, round(2 * max(photo.shape[:2]) / 1000))
    for layer in layers:
        if np.ndim(layer.mask) != 2:
            raise BadInputError(f"layer {layer.name!r}: mask has shape {np.shape(layer.mask)}, not (h, w)",
                                fix="give one 2-D mask per layer")
        small = (np.asarray(layer.mask) > 0).astype(np.uint8)
        mask = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST_EXACT)
        inside = mask.astype(bool)
        color = np.array(layer.color, np.float32)
        region[inside] = (region[inside] * (1 - layer.alpha) + color * layer.alpha).round().astype(np.uint8)
        if layer.outline:
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(region, contours, -1, tuple(int(c) for c in layer.color), thickness, cv2.LINE_AA)
    _draw_legend(out, [(layer.name, layer.color) for layer in layers] + [(line, None) for line in lines])
    return out


def _draw_legend(out: np.ndarray, rows: list[tuple[str, tuple[int, int, int] | None]]) -> None:
    """A dark panel in the top-left corner; a row with a colour gets a swatch. The font scales with the
    photo's shorter side and shrinks so the panel fits inside the picture."""
    import cv2

    if not rows:
        return
    H, W = out.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    texts = [ascii_text(text) for text, _ in rows]
    # Measured at scale 1: the text's height (with descenders) and widest line, plus a swatch and gaps.
    (_, text_h), base = cv2.getTextSize("Ag", font, 1.0, 1)
    line_h = (text_h + base) * 1.4
    swatch = text_h + base
    width = max(cv2.getTextSize(t, font, 1.0, 1)[0][0] + (swatch * 1.4 if color else 0) for t, (_, color) in zip(texts, rows))
    pad = line_h * 0.4
    scale = min(min(H, W) / 800, (W * 0.96) / (width + 2 * pad), (H * 0.96) / (line_h * len(rows) + 2 * pad))
    scale = max(scale, 0.35)
    stroke = max(1, round(scale * 1.6))
    line_h, swatch, pad, width = line_h * scale, swatch * scale, pad * scale, width * scale
    margin = round(pad)
    x1, y1 = min(W, round(margin + width + 2 * pad)), min(H, round(margin + line_h * len(rows) + 2 * pad))
    panel = out[margin:y1, margin:x1]
    panel[:] = (panel * 0.35).astype(np.uint8)
    for i, (text, (_, color)) in enumerate(zip(texts, rows)):
        top = margin + pad + i * line_h
        x = margin + pad
        if color:
            cv2.rectangle(out, (round(x), round(top)), (round(x + swatch), round(top + swatch)), tuple(int(c) for c in color), -1)
            x += swatch * 1.4
        baseline_y = round(top + text_h * scale)
        cv2.putText(out, text, (round(x), baseline_y), font, scale, (255, 255, 255), stroke, cv2.LINE_AA)


def ascii_text(text: str) -> str:
    """``text`` in ASCII for cv2.putText: units spelled out ("g/m²/h" -> "g/m2/h", "°" -> " deg"), accents
    dropped ("é" -> "e"), anything else unreadable as "?"."""
    text = "".join(_ASCII.get(c, c) for c in text)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.encode("ascii", "replace").decode("ascii")


def write_overlay(path: Path, picture: np.ndarray) -> Path:
    """Write an RGB uint8 picture to ``path`` as PNG, atomically (a temporary sibling, then ``os.replace``),
    creating the folder. Returns ``path``."""
    import cv2

    if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
        raise BadInputError(f"cannot write a {picture.shape} {picture.dtype} array as an overlay", fix="give an (H, W, 3) uint8 RGB array")
    path = Path(path)
    _, png = cv2.imencode(".png", np.ascontiguousarray(picture[..., ::-1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(png.tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
