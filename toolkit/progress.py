"""Progress of the long steps (conversion per target, calibration, verification per artifact, benchmark repeats,
training epochs, an assessment's parts). Stages only emit ``ProgressEvent``s through ``step()``; whoever runs them
decides where the events go with ``reporting(callback)``: the Python API's ``progress=`` callback, or one of the
two renderers here — a ``rich`` live display when stderr is a terminal, one plain line per finished step when it is
not (what CI logs and tests see). Without a callback, emitting costs nothing."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class ProgressEvent:
    """One step's state: ``done`` of ``total`` (``done <= total``; the step's last event has ``done == total``)."""

    stage: str  # export, load, convert, calibrate, verify, benchmark, train, assessment
    step: str  # what within the stage: a target key, an artifact file, an epoch, a pipeline stage
    done: int
    total: int
    elapsed: float  # seconds since the step began
    message: str = ""
    unit: str = ""  # what done counts (images, repeats, batches); empty for a step that is one piece of work

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    @property
    def rate(self) -> float | None:
        """Units per second so far; None before the first unit."""
        return self.done / self.elapsed if self.done and self.elapsed > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far; None before the first unit."""
        rate = self.rate
        return (self.total - self.done) / rate if rate else None


ProgressCallback = Callable[[ProgressEvent], None]

_callback: contextvars.ContextVar[ProgressCallback | None] = contextvars.ContextVar("skinkit_progress", default=None)


@contextlib.contextmanager
def reporting(callback: ProgressCallback | None) -> Iterator[None]:
    """Every step run inside the block reports to ``callback`` (None: to nobody, also inside an outer reporter)."""
    token = _callback.set(callback)
    try:
        yield
    finally:
        _callback.reset(token)


class Step:
    """A step in progress: ``advance()`` as units complete; ``finish()`` (or leaving ``step()``'s block) ends it."""

    def __init__(self, stage: str, name: str, total: int, unit: str, callback: ProgressCallback | None):
        self.stage, self.name, self.total, self.unit = stage, name, max(int(total), 1), unit
        self.done, self.finished, self._message = 0, False, ""
        self._callback = callback
        self._t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def advance(self, n: int = 1, message: str = "") -> None:
        """``n`` more units done. Reaching ``total`` sends nothing yet: ``finish()`` sends the step's last event, with
        its verdict as the message."""
        self.done = min(self.done + n, self.total)
        self._message = message or self._message
        if self.done < self.total:
            self._emit(message)

    def finish(self, message: str = "") -> None:
        if not self.finished:
            self.done, self.finished = self.total, True
            self._emit(message or self._message)

    def _emit(self, message: str) -> None:
        if self._callback is not None:
            self._callback(ProgressEvent(self.stage, self.name, self.done, self.total, self.elapsed, message, self.unit))


@contextlib.contextmanager
def step(stage: str, name: str, total: int = 1, *, unit: str = "", message: str = "") -> Iterator[Step]:
    """A step of ``total`` units: an event with ``done == 0`` now, one per ``advance()``, and one with ``done == total``
    when the block ends (unless ``finish()`` sent it). A step that raises sends no final event."""
    s = Step(stage, name, total, unit, _callback.get())
    s._emit(message)
    yield s
    s.finish()


def finished(stage: str, name: str, seconds: float, message: str = "") -> None:
    """A step that ran elsewhere (a worker's task) and took ``seconds``: its one finished event."""
    callback = _callback.get()
    if callback is not None:
        callback(ProgressEvent(stage, name, 1, 1, seconds, message))


def counted(fn: Callable, s: Step) -> Callable:
    """``fn`` that advances ``s`` by one after each call (benchmark repeats)."""
    def run(*args, **kwargs):
        out = fn(*args, **kwargs)
        s.advance()
        return out
    return run


def plain_line(e: ProgressEvent) -> str:
    """A finished step as the plain log prints it:
    ``[verify] acne_fp32.onnx: 3.1 s, 200 images, 64.5 images/s; passed``."""
    line = f"[{e.stage}] {e.step}: {e.elapsed:.1f} s"
    if e.unit:
        line += f", {e.total} {e.unit}"
        if e.rate is not None and e.total > 1:
            line += f", {e.rate:.1f} {e.unit}/s"
    return line + (f"; {e.message}" if e.message else "")


class PlainLog:
    """One line per finished step on ``stream``: for logs that are not a terminal (CI, pipes, tests)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def __call__(self, e: ProgressEvent) -> None:
        if e.finished:
            print(plain_line(e), file=self.stream, flush=True)

    def __enter__(self) -> PlainLog:
        return self

    def __exit__(self, *exc) -> None:
        return None


class RichProgress:
    """A live ``rich.progress`` display on a terminal console: a bar per step with its count, rate and time left;
    a finished step stays as one line."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]{task.fields[stage]}[/bold] {task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[message]}"), console=console,
                                 redirect_stdout=False, redirect_stderr=False)  # backends' output goes to the log file
        self.tasks: dict[tuple[str, str], int] = {}

    def __call__(self, e: ProgressEvent) -> None:
        key = (e.stage, e.step)
        rate = f"{e.rate:.1f} {e.unit}/s" if e.unit and e.rate is not None and e.total > 1 else ""
        if key not in self.tasks or (e.done == 0 and self.progress.tasks[self.tasks[key]].finished):
            self.tasks[key] = self.progress.add_task(e.step, total=e.total, stage=e.stage, rate=rate, message=e.message)
        self.progress.update(self.tasks[key], completed=e.done, total=e.total, rate=rate, message=e.message)

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def for_console(console) -> PlainLog | RichProgress:
    """The renderer for a ``rich`` console: live bars on a terminal, plain lines otherwise."""
    return RichProgress(console) if console.is_terminal else PlainLog(console.file)
