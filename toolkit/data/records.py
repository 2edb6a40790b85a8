"""The evaluation and training data record: model inputs, task targets and skin-tone annotation.

Inputs are always uint8 NHWC RGB, as a camera delivers them; the device contract (normalization,
layout) is applied by the model wrapper, never by the data. Each task builds its targets
(``toolkit.tasks.data``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TaskData:
    inputs: np.ndarray  # N x H x W x 3 uint8
    targets: np.ndarray  # classification: N int; regression: N x k float; segmentation: N x H x W int; SR: N x H x W x 3 uint8
    groups: tuple[str, ...]  # ITA group per sample
    ita: np.ndarray  # N float; annotated ITA° (NaN where unknown)
    skin_masks: np.ndarray | None = None  # N x H x W uint8 {0, 1} at input resolution, where the data has them

    def __len__(self) -> int:
        return len(self.inputs)
