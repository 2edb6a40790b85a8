"""The evaluation set: held-out images, their contract-shaped inputs, the float model's outputs on them,
their measured skin tone and the bootstrap resamples. Built once per export, before conversion:
calibration must share no image with it, and the mixed-precision search gates on it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from toolkit.data.records import TaskData

if TYPE_CHECKING:
    import numpy as np

    from toolkit.compress.stage import Compressed
    from toolkit.context import Context
    from toolkit.data.skin_tone import SkinTone
    from toolkit.outputs import Outputs
    from toolkit.verify.stats import Bootstrap


@dataclass(frozen=True)
class EvaluationSet:
    data: TaskData
    x: np.ndarray  # the images as the device contract takes them
    reference: Outputs  # the (compressed) float model's outputs on ``x``, by name
    tone: SkinTone
    boot: Bootstrap


def run(context: Context, compressed: Compressed) -> EvaluationSet:
    from toolkit.data import skin_tone
    from toolkit.verify.stats import Bootstrap

    ev = context.recipe.evaluation
    data, x, reference = _judged(context, compressed, images(context, compressed))
    return EvaluationSet(data=data, x=x, reference=reference, tone=skin_tone.measure(data.inputs, data.skin_masks),
                         boot=Bootstrap.draw(len(data), replicates=ev.bootstrap, seed=ev.seed))


def check(context: Context, compressed: Compressed, *, sample: int = 16) -> TaskData:
    """What ``run`` checks before anything converts, in seconds (``skinkit export --dry-run``): every image
    loads, and the float model, run on the first ``sample`` of them, returns what the task reads and computes
    the metrics the gate names. The images, as ``run`` would take them."""
    data = images(context, compressed)
    _judged(context, compressed, TaskData(data.inputs[:sample], data.targets[:sample], data.groups[:sample], data.ita[:sample],
                                          None if data.skin_masks is None else data.skin_masks[:sample]))
    return data


def images(context: Context, compressed: Compressed) -> TaskData:
    """The evaluation images the recipe names, without running the model (what calibration must not share)."""
    from toolkit.convert.cache import section_images

    ev = context.recipe.evaluation
    return section_images(context, compressed.spec, ev, split=ev.split, labelled=ev.ground_truth == "labels")


def _judged(context: Context, compressed: Compressed, data: TaskData) -> tuple[TaskData, np.ndarray, Outputs]:
    """The images as the device contract takes them and the float model's outputs on them, checked before
    anything converts; without labels, the data with the float model's decisions for targets."""
    from toolkit.load.stage import contract_images
    from toolkit.tasks import get_task
    from toolkit.verify.gate import reference_outputs, task_view, to_nchw

    inp, spec = context.recipe.input, compressed.spec
    x = contract_images(data.inputs, inp.pixel_range, inp.layout)
    reference = reference_outputs(compressed.wrapped, x, threads=context.recipe.benchmark.threads)
    task = get_task(spec.task)
    task.check_outputs(spec, to_nchw(reference, inp.layout))
    view = task_view(spec, reference, inp.layout)
    if context.recipe.evaluation.ground_truth != "labels":  # the float model's decisions stand for the truth
        data = replace(data, targets=task.targets_from(view))
    _check_metric_names(context, spec, view, data.targets)
    return data, x, reference


def _check_metric_names(context: Context, spec, ref: np.ndarray, targets: np.ndarray) -> None:
    """The metrics the gate judges by (the headline, every target's margins) are ones the task computes for
    this model: a misspelt one is refused here, before anything converts, rather than after conversion."""
    from toolkit.errors import RecipeError
    from toolkit.tasks import get_task, headline
    from toolkit.verify.gate import check_margin_names, resolve_tolerance
    from toolkit.verify.stats import Bootstrap, compare

    recipe = context.recipe
    tolerances = {t.key: resolve_tolerance(spec, t.precision, recipe.tolerances.get(t.precision), t.tolerance) for t in recipe.targets}
    if headline(spec) == get_task(spec.task).headline and not any(tol.margins for tol in tolerances.values()):
        return
    # The metric names, not their intervals: two replicates are enough.
    rows = compare(spec.task, ref, ref, targets, Bootstrap.draw(len(targets), replicates=2),
                   labels=spec.labels, output_names=tuple(o.name for o in spec.outputs))["metrics"]
    known = sorted(k for k, v in rows.items() if "drop" in v)
    if headline(spec) not in rows:
        raise RecipeError(f"model.metric {headline(spec)!r} is not a metric of the {spec.task} task for this model",
                          fix=f"use one of: {', '.join(known)}")
    for key, tol in tolerances.items():
        check_margin_names(tol, rows, target=key)
