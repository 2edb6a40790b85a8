"""Tasks as plug-ins: one module per task behind ``toolkit.tasks.base.Task``, one line each in ``TASKS``.

Adding a task: write ``toolkit/tasks/<task>.py`` (a ``Task`` subclass) and add it to the line below; a
model declares it by name (``ModelSpec.task``).
"""

from __future__ import annotations

from toolkit.errors import BadInputError
from toolkit.tasks.base import Task
from toolkit.tasks.classification import Classification
from toolkit.tasks.instance_segmentation import InstanceSegmentation
from toolkit.tasks.regression import Regression
from toolkit.tasks.segmentation import Segmentation
from toolkit.tasks.super_resolution import SuperResolution

TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Regression(), Segmentation(), SuperResolution(), InstanceSegmentation())}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise BadInputError(f"unknown task {name!r}", fix=f"use one of: {', '.join(TASKS)}") from None


def headline(spec) -> str:
    """The metric a model is judged by: its spec's, else its task's."""
    return spec.metric or get_task(spec.task).headline


__all__ = ["TASKS", "Task", "get_task", "headline"]
