"""Data shaped for a model's task: synthetic samples, and a folder of images with a ``labels.csv``
(format: ``toolkit.data.folder``); each task supplies its targets. A spec that declares
``extra["masked_input"]`` gets its inputs masked to the skin here (``toolkit.data.masking``), whatever its task."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from toolkit.data.folder import annotation, read_rgb, read_rows, read_skin_mask
from toolkit.data.masking import KEY as MASKED_INPUT
from toolkit.data.masking import apply_mask, input_mask, masked_fill
from toolkit.data.records import TaskData
from toolkit.errors import DataError
from toolkit.registry import ModelSpec
from toolkit.tasks import get_task


def task_data(spec: ModelSpec, n: int, *, split: str, seed: int = 0, start: int = 0, labelled: bool = True) -> TaskData:
    """``n`` synthetic samples of ``split`` shaped for ``spec``'s task (without targets unless ``labelled``:
    the caller puts the float model's in their place). A masked-input spec's images are masked to the skin (the
    exact mask; jittered on the training split); ``skin_masks`` holds the exact masks either way."""
    task = get_task(spec.task)
    fill = masked_fill(spec)
    inputs, targets, groups, ita, skins = [], [], [], [], []
    for i in range(start, start + n):
        sample, x, y, skin = task.synthetic_example(spec, seed=seed, split=split, index=i, labelled=labelled)
        if fill is not None:
            x = apply_mask(x, input_mask(skin, seed=seed, split=split, index=i), fill)
        inputs.append(x)
        targets.append(y)
        groups.append(sample.group)
        ita.append(sample.ita)
        skins.append(skin)
    stacked = task.stack_targets(targets) if labelled else np.zeros(len(inputs))
    return TaskData(np.stack(inputs), stacked, tuple(groups), np.array(ita, np.float64), np.stack(skins))


def load_folder(spec: ModelSpec, folder: Path, *, limit: int | None = None, labelled: bool = True) -> TaskData:
    """A folder's images and targets; not ``labelled``: its images alone (a labels.csv is optional, its
    target columns unread), resized to the input. A masked-input spec's images are masked by the folder's
    ``skin/`` masks, which it must have."""
    task = get_task(spec.task)
    fill = masked_fill(spec)
    labels, rows = read_rows(folder, limit=limit, require_labels=labelled)
    inputs, targets, groups, itas, skins = [], [], [], [], []
    with_skin = (folder / "skin").is_dir()
    if fill is not None and not with_skin:
        raise DataError(f"{spec.name} sees the photo masked to the skin (extra[{MASKED_INPUT!r}]), but the folder {folder} has no skin/ masks",
                        fix="add skin/<image stem>.png for every image (non-zero = skin; the skin segmenter's masks, any size)")
    for i, row in enumerate(rows, start=2):
        img = read_rgb(folder / row["file"])
        if with_skin:
            skins.append(read_skin_mask(folder, row["file"], spec.input_size, required=fill is not None))
        if labelled:
            x, y = task.folder_example(img, row, spec=spec, folder=folder, where=f"{labels} line {i}")
        else:
            h, w = spec.input_size
            x, y = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), 0
        if fill is not None:
            x = apply_mask(x, skins[-1], fill)
        inputs.append(x)
        targets.append(y)
        ita, group = annotation(row)
        itas.append(ita)
        groups.append(group)
    stacked = task.stack_targets(targets) if labelled else np.zeros(len(inputs))
    return TaskData(np.stack(inputs), stacked, tuple(groups), np.array(itas), np.stack(skins) if skins else None)


def write_folder(data: TaskData, spec: ModelSpec, folder: Path) -> None:
    """Write ``data`` in the folder format (the inverse of ``load_folder``)."""
    task = get_task(spec.task)
    folder.mkdir(parents=True, exist_ok=True)
    if data.skin_masks is not None:
        (folder / "skin").mkdir(exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", *task.folder_columns(spec), "ita", "group"])
        for i in range(len(data)):
            name = f"img_{i:05d}.png"
            image, cells = task.folder_write(data, i, spec=spec, folder=folder, name=name)
            cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            if data.skin_masks is not None:
                cv2.imwrite(str(folder / "skin" / name), data.skin_masks[i].astype(np.uint8) * 255)
            writer.writerow([name, *cells, f"{data.ita[i]:.3f}", data.groups[i]])
