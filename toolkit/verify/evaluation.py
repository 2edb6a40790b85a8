"""The evaluation set: held-out images, their contract-shaped inputs, the float model's outputs on them,
their measured skin tone and the bootstrap resamples. Built once per export, before conversion:
calibration must share no image with it, and the mixed-precision search gates on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from toolkit.compress.stage import Compressed
    from toolkit.context import Context
    from toolkit.data.skin_tone import SkinTone
    from toolkit.data.tasks import TaskData
    from toolkit.verify.stats import Bootstrap


@dataclass(frozen=True)
class EvaluationSet:
    data: TaskData
    x: np.ndarray  # the images as the device contract takes them
    reference: np.ndarray  # the (compressed) float model's outputs on ``x``
    tone: SkinTone
    boot: Bootstrap


def run(context: Context, compressed: Compressed) -> EvaluationSet:
    from toolkit.data import skin_tone
    from toolkit.verify.gate import contract_inputs, reference_outputs
    from toolkit.verify.stats import Bootstrap

    ev, inp = context.recipe.evaluation, context.recipe.input
    data = context.images(compressed.spec, ev, split=ev.split)
    x = contract_inputs(data, inp.pixel_range, inp.layout)
    return EvaluationSet(data=data, x=x, reference=reference_outputs(compressed.wrapped, x),
                         tone=skin_tone.measure(data.inputs, data.skin_masks),
                         boot=Bootstrap.draw(len(data), replicates=ev.bootstrap, seed=ev.seed))
