"""Turn synthetic samples into (model input, target) arrays for each task.

Inputs are always uint8 NHWC RGB, as a camera delivers them; the device contract (normalization,
layout) is applied by the model wrapper, never by the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from toolkit.data.synthetic import make_sample
from toolkit.registry import ModelSpec


@dataclass(frozen=True)
class TaskData:
    inputs: np.ndarray  # N x H x W x 3 uint8
    targets: np.ndarray  # classification: N int; regression: N x k float; segmentation: N x H x W int; SR: N x H x W x 3 uint8
    groups: tuple[str, ...]  # ITA group per sample
    ita: np.ndarray  # N float; annotated ITA° (NaN where unknown)
    skin_masks: np.ndarray | None = None  # N x H x W uint8 {0, 1} at input resolution, where the data has them

    def __len__(self) -> int:
        return len(self.inputs)


def _sr_pair(spec: ModelSpec, seed: int, split: str, index: int):
    hr_h, hr_w = spec.output_size
    sample = make_sample(seed, split, index, size=224)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99, index]))
    # A crop centred on the face (mostly skin, with pores, lesions and wrinkles).
    oy, ox = 48 + int(rng.integers(-20, 21)), 48 + int(rng.integers(-20, 21))
    hr = sample.image[oy:oy + hr_h, ox:ox + hr_w]
    lr = cv2.resize(hr, spec.input_size[::-1], interpolation=cv2.INTER_AREA)
    skin = cv2.resize(sample.skin_mask[oy:oy + hr_h, ox:ox + hr_w], spec.input_size[::-1], interpolation=cv2.INTER_NEAREST)
    return sample, lr, hr, skin


def task_data(spec: ModelSpec, n: int, *, split: str, seed: int = 0, start: int = 0) -> TaskData:
    """``n`` samples of ``split`` shaped for ``spec``'s task."""
    inputs, targets, groups, ita, skins = [], [], [], [], []
    h, w = spec.input_size
    for i in range(start, start + n):
        if spec.task == "super_resolution":
            sample, x, y, skin = _sr_pair(spec, seed, split, i)
        else:
            sample = make_sample(seed, split, i, size=h if h == w else 224)
            resized = sample.image.shape[:2] != (h, w)
            x = cv2.resize(sample.image, (w, h), interpolation=cv2.INTER_AREA) if resized else sample.image
            skin = cv2.resize(sample.skin_mask, (w, h), interpolation=cv2.INTER_NEAREST) if resized else sample.skin_mask
            if spec.task == "classification":
                y = sample.acne_grade
            elif spec.task == "regression":
                y = np.array([sample.hydration, sample.tewl], np.float32)
            else:
                y = sample.skin_mask if spec.extra.get("target") == "skin_mask" else sample.segmentation
        inputs.append(x)
        targets.append(y)
        groups.append(sample.group)
        ita.append(sample.ita)
        skins.append(skin)
    return TaskData(np.stack(inputs), np.stack(targets) if spec.task != "classification" else np.array(targets, np.int64),
                    tuple(groups), np.array(ita, np.float64), np.stack(skins))
