"""A user's model described by its recipe: the spec built from ``model:`` (over a borrowed ``spec_from``
or the task's defaults), and the one forward pass that checks the model against it before anything converts."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from toolkit.errors import BadInputError
from toolkit.registry import ModelSpec, OutputSpec, get_spec
from toolkit.tasks import get_task

if TYPE_CHECKING:
    from toolkit.recipe import ModelRef


def user_spec(ref: ModelRef, name: str) -> ModelSpec:
    """The spec of the user's model ``name``: ``spec_from``'s, each field the recipe gives overriding it; without
    ``spec_from``, the task's defaults (tolerances, output name) under the recipe's description."""
    base = get_spec(ref.spec_from) if ref.spec_from else None
    task_name = ref.task or base.task
    task = get_task(task_name)
    if base is None or ref.task not in (None, base.task):
        # Another task's tolerances, metric and output names mean nothing here: start from the task's own.
        base = ModelSpec(name=name, task=task_name, architecture="user model", factory=lambda: None, description="",
                         input_size=ref.input_size or (base.input_size if base else (224, 224)),
                         outputs=(OutputSpec(task.default_output or "output", ""),), tolerances=dict(task.default_tolerances),
                         labels=(), mean=base.mean if base else (0.0, 0.0, 0.0),
                         std=base.std if base else (1.0, 1.0, 1.0), licence="the model owner's", output_size=None)
    changes: dict = {"name": name, "task": task_name, "metric": ref.metric or base.metric or task.headline,
                     "architecture": f"user model ({ref.name})"}
    if ref.outputs is not None:
        changes["outputs"] = tuple(OutputSpec(o.name, o.description, o.unit, o.shape) for o in ref.outputs)
    if ref.normalization is not None:
        changes["mean"], changes["std"] = ref.normalization.unit_scale()
    for field in ("description", "input_size", "output_size", "labels", "task_output"):
        if getattr(ref, field) is not None:
            changes[field] = getattr(ref, field)
    if ref.channel_order is not None:
        changes["color_order"] = ref.channel_order
    if ref.input_size is not None and ref.output_size is None and base.output_size == base.input_size:
        changes["output_size"] = None  # a same-size dense output follows the new input; the probe reads it
    spec = replace(base, **changes)
    if spec.task_output is not None and spec.task_output not in [o.name for o in spec.outputs]:
        raise BadInputError(f"model.task_output {spec.task_output!r} is not one of the model's outputs "
                            f"({', '.join(o.name for o in spec.outputs)})", fix="name one of them, or declare model.outputs")
    return spec


def untrained(ref: ModelRef, base_dir) -> ModelSpec:
    """The spec of the user's model ``ref`` names, with its factory, for training it from scratch: the
    factory imported, the model probed once against the description."""
    from pathlib import Path

    from toolkit.load.loader import _import_factory, build_module

    if not ref.is_user_model or ref.name.endswith(".pt2"):
        raise BadInputError(f"model {ref.name!r} is not a 'file.py:factory' of yours",
                            fix="train a registered model by name (skinkit train MODEL), or name your factory in model.name")
    factory = _import_factory(ref.name, Path(base_dir))
    spec = replace(user_spec(ref, Path(ref.name.rpartition(":")[0]).stem), factory=factory)
    return probe(build_module(factory, ref.name), spec)


def run_once(module, x, *, what: str, fix: str):
    """``module``'s output on ``x`` in eval mode without autograd (its training flag restored after); a failure is one
    line naming ``what`` it was given and the exception, with ``fix``."""
    import torch

    training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            return module(x)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise BadInputError(f"the model fails on {what}: {type(exc).__name__}: {first}", fix=fix) from None
    finally:
        module.train(training)


def probe(module, spec: ModelSpec) -> ModelSpec:
    """Run ``module`` once on one input of the spec's size and check what it returns against the spec: the
    structure and names of the outputs, each declared shape, and the shape the task reads. One line naming
    expected and actual when they differ. Returns the spec with a dense output's size filled in from the
    model when the recipe left it out."""
    import torch

    from toolkit.outputs import name_outputs

    h, w = spec.input_size
    result = run_once(module, torch.zeros(1, 3, h, w), what=f"one input of the declared size [1, 3, {h}, {w}]",
                      fix="set model.input_size to the size the network takes")
    named = name_outputs(result, [o.name for o in spec.outputs])
    for decl in spec.outputs:
        got = tuple(named[decl.name].shape[1:])
        if decl.shape is not None and (len(got) != len(decl.shape) or any(d is not None and g != d for g, d in zip(got, decl.shape))):
            shown = "[" + ", ".join("any" if d is None else str(d) for d in decl.shape) + "]"
            raise BadInputError(f"output {decl.name!r} has shape {list(got)} per image, but model.outputs declares {shown}",
                                fix=f"declare shape {list(got)} for {decl.name!r}, or fix the model")
    task = get_task(spec.task)
    read = named[task.reads(spec)[0]]
    if spec.output_size is None and read.dim() == 4:
        spec = replace(spec, output_size=tuple(read.shape[-2:]))
    if not spec.labels and task.needs_labels and read.dim() >= 2:
        spec = replace(spec, labels=tuple(f"class_{i}" for i in range(read.shape[1])))
    task.check_outputs(spec, {n: v.numpy() for n, v in named.items()})
    return spec


def check_synthetic(spec: ModelSpec, section: str) -> None:
    """A synthetic ``section`` (evaluation) must be able to annotate data for the model: refused up front if not."""
    problem = get_task(spec.task).synthetic_problem(spec)
    if problem:
        raise BadInputError(f"{section} uses the synthetic generator, but {problem}",
                            fix=f"evaluate on your own labelled images ({section}: {{source: folder, folder: path/to/images}}, a "
                                f"labels.csv beside them), or against the float model's own decisions ({section}.ground_truth: float)")
