"""Evaluation data from a folder: images plus a ``labels.csv``; the task-independent part.

Format (documented in the README):

    DIR/labels.csv      header ``file,<target columns>[,ita][,group]``
    DIR/<file>          RGB images (png/jpg), resized to the model input with INTER_AREA
    DIR/masks/<stem>.png  segmentation only: class-index masks at any size (nearest-neighbour resize)
    DIR/instances/<stem>.png  instance segmentation only: 1 + class index per pixel (0: none), 8- or 16-bit;
                          each 8-connected region of a class is one instance
    DIR/skin/<stem>.png   optional, for every image or none: skin masks (non-zero = skin) from which the
                          skin tone (ITA°) is measured; without them skin pixels are estimated. Required
                          for a model whose input is masked to the skin (``extra["masked_input"]``)

Every image and mask is checked before it is decoded (``toolkit.data.image``): an empty, truncated, corrupt or
oversized file is refused naming it; a sub-folder named like an image is not an image of the folder.

Target columns: classification ``label`` (a class name or index); regression one column per
output name (e.g. ``hydration,tewl``); super-resolution none (the image is the high-resolution target).
Optional ``ita`` / ``group`` columns are an annotation of skin tone, reported next to the measured one.
Each task reads and writes its own columns (``toolkit.tasks.data``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from toolkit.data.image import read_image
from toolkit.data.synthetic import ita_group
from toolkit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def read_rgb(path: Path) -> np.ndarray:
    """An image of the folder as RGB (EXIF orientation applied); a truncated, corrupt, empty or oversized file
    (``toolkit.data.image``) is refused naming it."""
    img = read_image(path, fix="re-export the image, or remove it (and its labels.csv row)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_files(folder: Path) -> list[Path]:
    """The image files of a folder, sorted by name: files with an image suffix; anything else (a sub-folder
    named like an image too) is not an image of the folder."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_rows(folder: Path, *, limit: int | None = None, require_labels: bool = True) -> tuple[Path, list[dict]]:
    """The folder's ``labels.csv`` path and its rows (at most ``limit``); errors say what is missing. Without
    ``require_labels``, a folder with no labels.csv has one row per image file (sorted by name)."""
    if not folder.is_dir():
        raise DataError(f"evaluation folder not found: {folder}", fix="set evaluation.folder to an existing folder, or use source: synthetic")
    labels = folder / "labels.csv"
    if not labels.is_file() and not require_labels:
        rows = [{"file": p.name} for p in image_files(folder)]
        if not rows:
            raise DataError(f"evaluation folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})", fix="add images to it")
        return labels, rows[:limit] if limit else rows
    if not labels.is_file():
        images = image_files(folder)
        what = "is empty" if not any(folder.iterdir()) else f"has {len(images)} images but no labels.csv"
        raise DataError(f"evaluation folder {folder} {what}", fix="add images and a labels.csv (see README, 'Evaluation data')")
    with open(labels, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DataError(f"{labels} lists no images", fix="add one row per image: file,<targets>")
    if "file" not in rows[0]:
        raise DataError(f"{labels} has no 'file' column", fix="make the header start with: file")
    return labels, rows[:limit] if limit else rows


def read_skin_mask(folder: Path, file: str, size: tuple[int, int], *, required: bool = False) -> np.ndarray:
    """``skin/<stem>.png`` as a {0, 1} mask at ``size`` (height, width); ``required``: the model's input is
    masked by it (no estimate can stand in)."""
    skin_path = folder / "skin" / (Path(file).stem + ".png")
    fix = "give every image a skin/<image stem>.png" + ("" if required else ", or remove the skin/ folder to estimate skin pixels")
    if not skin_path.exists():
        raise DataError(f"missing or unreadable skin mask {skin_path}", fix=fix)
    skin = read_image(skin_path, flags=cv2.IMREAD_GRAYSCALE, what="skin mask", fix=fix)
    h, w = size
    return cv2.resize((skin > 0).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)


def annotation(row: dict) -> tuple[float, str]:
    """A row's annotated ITA° (NaN where absent) and group (from the ITA° unless given)."""
    ita = float(row["ita"]) if row.get("ita") not in (None, "") else float("nan")
    return ita, row.get("group") or (ita_group(ita) if ita == ita else "unknown")
