"""What a task is: the one interface every ``toolkit/tasks/<task>.py`` implements.

A task knows which of a model's named outputs it reads and how, the targets of its data (synthetic and
folder), its training loss, its metric set (per-image statistics whose weighted sums give every metric,
so the bootstrap is one matrix product), its agreement with the float model, its extras (a confusion
matrix) and its headline metric. Nothing outside ``toolkit/tasks/`` branches on a task's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from toolkit.data.records import TaskData
    from toolkit.data.synthetic import SkinSample
    from toolkit.outputs import Outputs
    from toolkit.registry import ModelSpec


class Task(ABC):
    name: ClassVar[str]
    headline: ClassVar[str]  # the metric a spec is judged by unless it names another
    higher_is_better: ClassVar[bool] = True
    # Criterion label of agreement with float; None: the task has no agreement metric.
    agreement_label: ClassVar[str | None] = None
    # Metric families (the part of a name before the first dot) where lower is better, and those with no better side.
    lower_is_better: ClassVar[tuple[str, ...]] = ()
    undirected: ClassVar[tuple[str, ...]] = ()
    report_title: ClassVar[str] = "Task details"  # heading of the report section ``report_lines`` fills
    # The first output scores one class per label: a Core ML target can carry it as a classifier.
    class_scores: ClassVar[bool] = False
    # What a user's model of this task that borrows no registered spec gets unless its recipe says otherwise:
    # tolerance tiers (precision tier -> ``toolkit.registry.Tolerance``), the name of its one output (None: the
    # recipe must declare its outputs), and whether the recipe must name its labels.
    default_tolerances: ClassVar[dict] = {}
    default_output: ClassVar[str | None] = None
    needs_labels: ClassVar[bool] = False

    # --- outputs -------------------------------------------------------------------------------------
    def reads(self, spec: ModelSpec) -> tuple[str, ...]:
        """Names of the outputs the task's metrics read; the others are gated on numerics alone."""
        return (spec.task_output or spec.outputs[0].name,)

    def read(self, outputs: Outputs, spec: ModelSpec) -> np.ndarray:
        """The array the metrics take (dense outputs channel-first) from named, batch-first outputs."""
        return outputs[self.reads(spec)[0]]

    reads_as: ClassVar[str] = ""  # what the task takes the output it reads for, in words

    def expected_shape(self, spec: ModelSpec) -> tuple[int | None, ...] | None:
        """Per-image shape (channel-first) of the output ``read`` takes; None: any size along that axis."""
        return None

    def check_outputs(self, spec: ModelSpec, outputs: Outputs) -> None:
        """Refuse, in one line, a model whose read output is not what the task takes it for (e.g. the
        declared order puts an embedding where the class scores belong). ``outputs``: channel-first."""
        from toolkit.errors import BadInputError

        want = self.expected_shape(spec)
        name = self.reads(spec)[0]
        got = tuple(outputs[name].shape[1:])
        if want is None or (len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))):
            return
        shown = "[" + ", ".join("any" if w is None else str(w) for w in want) + "]"
        if len(got) == len(want) > 1 and want[0] in (None, got[0]):
            fix = (f"set model.output_size: {list(got[1:])} if that is what the model makes, "
                   f"or give the model the contract's output size {list(want[1:])}")
        elif len(got) == len(want) and self.needs_labels and spec.labels:
            fix = (f"if {name!r} holds {self.reads_as}, give model.labels one entry per class ({got[0]}); "
                   f"otherwise name the output that does in model.task_output")
        else:
            fix = f"name the output that holds {self.reads_as} in model.task_output (default: the first)"
        raise BadInputError(f"the {self.name} task reads output {name!r} as {self.reads_as} of shape {shown} per image, "
                            f"but it has shape {list(got)}", fix=fix)

    # --- data ------------------------------------------------------------------------------------------
    def synthetic_example(self, spec: ModelSpec, *, seed: int, split: str, index: int, labelled: bool = True):
        """``(sample, input, target, skin mask)`` for one synthetic image: the sample resized to the input
        (target 0 when not ``labelled``: the float model's outputs will stand for it)."""
        import cv2

        from toolkit.data.synthetic import make_sample

        h, w = spec.input_size
        sample = make_sample(seed, split, index, size=h if h == w else 224)
        resized = sample.image.shape[:2] != (h, w)
        x = cv2.resize(sample.image, (w, h), interpolation=cv2.INTER_AREA) if resized else sample.image
        skin = cv2.resize(sample.skin_mask, (w, h), interpolation=cv2.INTER_NEAREST) if resized else sample.skin_mask
        return sample, x, self.synthetic_target(sample, spec) if labelled else 0, skin

    def synthetic_problem(self, spec: ModelSpec) -> str | None:
        """Why the synthetic generator cannot annotate data for ``spec`` (its labels or outputs are not what
        the generator draws), in words; None when it can."""
        return None

    def synthetic_target(self, sample: SkinSample, spec: ModelSpec) -> np.ndarray | int:
        raise NotImplementedError(f"task {self.name!r} builds its synthetic examples itself")

    def stack_targets(self, targets: list) -> np.ndarray:
        return np.stack(targets)

    def targets_from(self, ref: np.ndarray) -> np.ndarray:
        """Targets that stand for ground truth where there is none: the float model's own decisions (or
        values), from its outputs as ``read`` gives them; metrics against them measure agreement with float."""
        raise NotImplementedError(f"task {self.name!r} cannot take the float model's outputs for ground truth")

    def folder_columns(self, spec: ModelSpec) -> list[str]:
        """The labels.csv columns holding the target (between ``file`` and the skin-tone columns)."""
        return []

    def folder_example(self, image: np.ndarray, row: dict, *, spec: ModelSpec, folder: Path, where: str):
        """``(input, target)`` from a folder row; ``where`` names the row in errors (``labels.csv line 3``)."""
        import cv2

        h, w = spec.input_size
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA), self.folder_target(row, spec=spec, folder=folder, where=where)

    def folder_target(self, row: dict, *, spec: ModelSpec, folder: Path, where: str):
        raise NotImplementedError

    def folder_write(self, data: TaskData, i: int, *, spec: ModelSpec, folder: Path, name: str) -> tuple[np.ndarray, list[str]]:
        """The inverse of ``folder_example``: the image to write under ``name`` and the row's target cells."""
        return data.inputs[i], []

    # --- training --------------------------------------------------------------------------------------
    @abstractmethod
    def loss(self, spec: ModelSpec, model) -> Callable: ...

    @abstractmethod
    def targets_tensor(self, targets: np.ndarray): ...

    def training_outputs(self, model, x):
        """What ``loss`` is computed on during training: the network's outputs, unless the task says otherwise."""
        return model(x)

    # --- metrics ---------------------------------------------------------------------------------------
    @abstractmethod
    def quick_metrics(self, out: np.ndarray, targets: np.ndarray, *, num_classes: int = 0,
                      output_names: tuple[str, ...] = ()) -> dict[str, float]:
        """The task's metrics of raw outputs against ground truth, without CIs (a training card's)."""

    def agreement(self, ref: np.ndarray, out: np.ndarray) -> float | None:
        """Fraction of decisions that match float's; None where the task makes no discrete decision."""
        return None

    @abstractmethod
    def per_image(self, out: np.ndarray, targets: np.ndarray, ref: np.ndarray, *, labels: tuple[str, ...] = (),
                  probabilities: bool = False) -> dict[str, np.ndarray]:
        """Per-image statistics (N x k arrays) from which every metric is a ratio of sums.

        ``out`` and ``ref``: the artifact's and the float model's outputs as ``read`` gives them;
        ``probabilities``: the outputs are already probabilities (a Core ML classifier)."""

    @abstractmethod
    def aggregate(self, sums: dict[str, np.ndarray], *, labels: tuple[str, ...] = (),
                  output_names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """Every metric from the statistics' weighted sums (R x k each, one row per resample): name -> (R,)."""

    def extras(self, art_stats: dict[str, np.ndarray], float_stats: dict[str, np.ndarray], *,
               labels: tuple[str, ...] = ()) -> dict:
        """What the task adds to a comparison besides metrics (a confusion matrix)."""
        return {}

    def report_lines(self, verification: dict, *, labels: tuple[str, ...] = ()) -> list[str]:
        """Markdown lines the task adds to an artifact's report (its extras, readable)."""
        return []

    # --- the app's side --------------------------------------------------------------------------------
    def app_contract(self, spec: ModelSpec) -> dict | None:
        """What an app must do with the outputs beyond reading them (the manifest's ``postprocess``), each step
        stated exactly; None: the outputs are the result."""
        return None
