"""Evaluation data from a folder: images plus a ``labels.csv``.

Format (documented in the README):

    DIR/labels.csv      header ``file,<target columns>[,ita][,group]``
    DIR/<file>          RGB images (png/jpg), resized to the model input with INTER_AREA
    DIR/masks/<stem>.png  segmentation only: class-index masks at any size (nearest-neighbour resize)
    DIR/skin/<stem>.png   optional, for every image or none: skin masks (non-zero = skin) from which the
                          skin tone (ITA°) is measured; without them skin pixels are estimated

Target columns: classification ``label`` (a class name or index); regression one column per
output name (e.g. ``hydration,tewl``); super-resolution none (the image is the high-resolution target).
Optional ``ita`` / ``group`` columns are an annotation of skin tone, reported next to the measured one.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from toolkit.data.synthetic import ita_group
from toolkit.data.tasks import TaskData
from toolkit.errors import DataError
from toolkit.registry import ModelSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # applies EXIF orientation
    if img is None:
        raise DataError(f"unreadable image: {path}", fix="remove it from labels.csv or replace it with a valid PNG/JPEG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_folder(spec: ModelSpec, folder: Path, *, limit: int | None = None) -> TaskData:
    if not folder.is_dir():
        raise DataError(f"evaluation folder not found: {folder}", fix="set evaluation.folder to an existing folder, or use source: synthetic")
    labels = folder / "labels.csv"
    if not labels.is_file():
        images = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        what = "is empty" if not any(folder.iterdir()) else f"has {len(images)} images but no labels.csv"
        raise DataError(f"evaluation folder {folder} {what}", fix="add images and a labels.csv (see README, 'Evaluation data')")
    with open(labels, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DataError(f"{labels} lists no images", fix="add one row per image: file,<targets>")
    if "file" not in rows[0]:
        raise DataError(f"{labels} has no 'file' column", fix="make the header start with: file")
    rows = rows[:limit] if limit else rows
    h, w = spec.input_size
    inputs, targets, groups, itas, skins = [], [], [], [], []
    skin_dir = folder / "skin"
    for i, row in enumerate(rows, start=2):
        img = _read_rgb(folder / row["file"])
        if skin_dir.is_dir():
            skin_path = skin_dir / (Path(row["file"]).stem + ".png")
            skin = cv2.imread(str(skin_path), cv2.IMREAD_GRAYSCALE)
            if skin is None:
                raise DataError(f"missing or unreadable skin mask {skin_path}",
                                fix="give every image a skin/<image stem>.png, or remove the skin/ folder to estimate skin pixels")
            skins.append(cv2.resize((skin > 0).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST))
        if spec.task == "super_resolution":
            oh, ow = spec.output_size
            hr = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA)
            inputs.append(cv2.resize(hr, (w, h), interpolation=cv2.INTER_AREA))
            targets.append(hr)
        else:
            inputs.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
            if spec.task == "classification":
                raw = (row.get("label") or "").strip()
                if raw in spec.labels:
                    targets.append(spec.labels.index(raw))
                elif raw.isdigit() and int(raw) < len(spec.labels):
                    targets.append(int(raw))
                else:
                    raise DataError(f"{labels} line {i}: label {raw!r} is not one of {', '.join(spec.labels)}", fix="use a class name or index")
            elif spec.task == "regression":
                try:
                    targets.append([float(row[o.name]) for o in spec.outputs])
                except (KeyError, ValueError, TypeError):
                    cols = ",".join(o.name for o in spec.outputs)
                    raise DataError(f"{labels} line {i}: needs numeric columns {cols}", fix=f"add columns {cols}") from None
            else:
                mask_path = folder / "masks" / (Path(row["file"]).stem + ".png")
                mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                if mask is None:
                    raise DataError(f"missing or unreadable mask {mask_path}", fix="add masks/<image stem>.png with class indices")
                oh, ow = spec.output_size
                targets.append(cv2.resize(mask, (ow, oh), interpolation=cv2.INTER_NEAREST))
        ita = float(row["ita"]) if row.get("ita") not in (None, "") else float("nan")
        itas.append(ita)
        groups.append(row.get("group") or (ita_group(ita) if ita == ita else "unknown"))
    y = np.array(targets, np.int64) if spec.task == "classification" else np.stack(targets)
    if spec.task == "regression":
        y = y.astype(np.float32)
    return TaskData(np.stack(inputs), y, tuple(groups), np.array(itas), np.stack(skins) if skins else None)


def write_folder(data: TaskData, spec: ModelSpec, folder: Path) -> None:
    """Write ``data`` in the folder format (the inverse of ``load_folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    cols = ["file"]
    if spec.task == "classification":
        cols.append("label")
    elif spec.task == "regression":
        cols += [o.name for o in spec.outputs]
    cols += ["ita", "group"]
    if spec.task == "segmentation":
        (folder / "masks").mkdir(exist_ok=True)
    if data.skin_masks is not None:
        (folder / "skin").mkdir(exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for i in range(len(data)):
            name = f"img_{i:05d}.png"
            image = data.targets[i] if spec.task == "super_resolution" else data.inputs[i]
            cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            row: list = [name]
            if spec.task == "classification":
                row.append(spec.labels[int(data.targets[i])])
            elif spec.task == "regression":
                row += [f"{v:.4f}" for v in data.targets[i]]
            elif spec.task == "segmentation":
                cv2.imwrite(str(folder / "masks" / f"img_{i:05d}.png"), data.targets[i].astype(np.uint8))
            if data.skin_masks is not None:
                cv2.imwrite(str(folder / "skin" / f"img_{i:05d}.png"), data.skin_masks[i].astype(np.uint8) * 255)
            row += [f"{data.ita[i]:.3f}", data.groups[i]]
            writer.writerow(row)
