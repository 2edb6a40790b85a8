"""Each artifact's outputs on the evaluation set, computed once and as early as possible.

- A slow runtime (``Backend.slow_runtime``: Core AI's Linux CPU runtime, ~0.75 s per MobileNetV2 image on one core)
  starts on the evaluation images in a background thread as soon as its artifact is written, while the other targets
  convert (the convert stage converts such targets first); verification then waits for what is left of it.
- With the conversion cache on, outputs are also kept by content: the artifact's bytes, the images, the runtime's
  settings (threads, layout, pixel range), the versions of skinkit and every runtime, and the host's CPU. The same
  artifact on the same images on a like machine gives the same bits, so a re-export that changed only a tolerance
  reads them back instead of running the artifact again; the verification record says so (``outputs``).

The runner verification gets answers ``run(evaluation.x)`` from either; any other input (the benchmark's single image)
runs on the artifact's own runner, built only when needed."""

from __future__ import annotations

import hashlib
import json
import platform
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from toolkit import progress
    from toolkit.backends.base import Runner
    from toolkit.context import Context
    from toolkit.convert.base import Artifact
    from toolkit.convert.cache import ConversionCache


class EvaluationOutputs:
    """The artifacts' outputs on ``x`` (the evaluation images in the contract's form) for one export."""

    def __init__(self, context: Context, x: np.ndarray, make: Callable[[Artifact], Runner]):
        """``make``: an artifact's runner, as verification builds it."""
        from toolkit.convert.cache import ConversionCache

        self.context, self.x, self._make = context, x, make
        self.cache: ConversionCache | None = ConversionCache(context.cache) if context.cache else None
        self._images = _images_digest(x)
        self._jobs: dict[str, tuple[Runner, Future]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._keys: dict[Path, str] = {}

    def start(self, artifact: Artifact) -> None:
        """Begin running ``artifact`` on the evaluation images in the background when its runtime is slow (and its
        outputs are not cached): called by the convert stage as each artifact is written."""
        from toolkit._io import captured
        from toolkit.backends import get_backend

        try:
            if (not get_backend(artifact.format).slow_runtime or self.context.runner_factory is not None
                    or artifact.filename in self._jobs or (self.cache is not None and self.cache.has(self.key(artifact)))):
                return
            with captured(self.context.log_path):  # the runtime's loading chatter goes to the log, as in verification
                runner = self._make(artifact)
        except Exception:  # noqa: BLE001 — verification builds it again and reports why it cannot
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skinkit-outputs")
        self._jobs[artifact.filename] = (runner, self._pool.submit(_stoppable, runner, self.x, self._stop))

    def runner(self, artifact: Artifact, make: Callable[[], Runner]) -> tuple[Runner, dict | None]:
        """The runner verification uses for ``artifact`` (``make()`` builds the artifact's own when needed), and where
        its outputs on the evaluation images come from when not from running it now: a background run or the cache."""
        job = self._jobs.pop(artifact.filename, None)
        if job is not None:
            runner, future = job
            return _Answering(runner, self.x, future, self, artifact, make=make), {"from": "started while the other targets converted"}
        hit = self._cached(artifact)
        if hit is not None:
            outputs, record = hit
            done: Future = Future()
            done.set_result(outputs)
            return _Answering(None, self.x, done, self, artifact, make=make, record=record), {
                "from": "the output cache", "computed_utc": record.get("computed_utc"), "key": record["key"]}
        return _Answering(make(), self.x, None, self, artifact, make=make), None

    def close(self) -> None:
        """Stop background runs still going (an export that failed before verification)."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)  # a run in progress stops at its next few images
            self._pool = None

    def key(self, artifact: Artifact) -> str:
        """The outputs' key: the artifact's bytes, the images, the runtime's settings and versions, the host's CPU."""
        from toolkit.convert.base import file_sha256
        from toolkit.convert.cache import converter_versions, skinkit_version

        if artifact.path in self._keys:
            return self._keys[artifact.path]
        inp, threads = self.context.recipe.input, self.context.recipe.benchmark.threads
        parts = {"artifact": file_sha256(artifact.path), "format": artifact.format, "images": self._images,
                 "settings": {"threads": threads, "layout": inp.layout, "pixel_range": inp.pixel_range},
                 "skinkit": skinkit_version(), "versions": converter_versions(), "host": _host()}
        self._keys[artifact.path] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return self._keys[artifact.path]

    def _cached(self, artifact: Artifact) -> tuple[dict, dict] | None:
        if self.cache is None:
            return None
        return self.cache.get_outputs(self.key(artifact))

    def keep(self, artifact: Artifact, outputs: dict, check: str, note: str, timed: bool) -> None:
        if self.cache is not None:
            key = self.key(artifact)
            self.cache.put_outputs(key, outputs, {"key": key, "artifact": artifact.filename, "check": check, "note": note,
                                                  "timed": timed, "computed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


class _Answering:
    """A runner whose ``run(x)`` on the evaluation images answers from a background run or the cache (kept in the
    cache when computed now); any other input runs on the artifact's own runner (built by ``make`` when first needed)."""

    def __init__(self, runner: Runner | None, x, future: Future | None, owner: EvaluationOutputs, artifact: Artifact, *,
                 make: Callable[[], Runner], record: dict | None = None):
        self._runner, self._x, self._future, self._owner, self._artifact = runner, x, future, owner, artifact
        self._make, self._record = make, record
        self._facts = {k: record[k] for k in ("check", "note", "timed")} if record else None
        self._step = None

    @property
    def inner(self) -> Runner:
        if self._runner is None:
            self._runner = self._make()
        return self._runner

    def release(self) -> None:
        """Let the runtime go (its session, interpreter, weights) until the next call builds it again: verification
        and the benchmark release each artifact's once done with it, so a large model's runtimes are not all held at
        once. What it said of itself (``check``, ``note``, ``timed``) is kept."""
        if self._runner is not None:
            self._facts = {"check": self._runner.check, "note": self._runner.note, "timed": self._runner.timed}
            self._runner = None
        self._future = None if self._future is not None and self._future.done() else self._future

    def _fact(self, name: str):
        return self._facts[name] if self._runner is None and self._facts else getattr(self.inner, name)

    @property
    def check(self) -> str:
        return self._fact("check")

    @property
    def note(self) -> str:
        return self._fact("note")

    @property
    def timed(self) -> bool:
        return self._fact("timed")

    def counting(self, step) -> _Answering:
        """Advance ``step`` by the evaluation images as their outputs come (``toolkit.verify.stage.counted_runner``)."""
        self._step = step
        return self

    def run(self, x):
        if x is not self._x:
            return self.inner.run(x)
        if self._future is not None:
            outputs = self._future.result()
            if self._step is not None:
                self._step.advance(len(x))
        else:
            outputs = (self.inner if self._step is None else counted_runner(self.inner, self._step)).run(x)
        if self._record is None:  # computed by this export: kept for the next
            self._owner.keep(self._artifact, outputs, self.check, self.note, self.timed)
        return outputs


def counted_runner(runner: Runner, step: progress.Step, chunks: int = 20) -> Runner:
    """``runner`` over the evaluation set in about ``chunks`` slices (8 images at least), advancing ``step`` by the
    images of each (images/s and time left). Artifacts run one image at a time anyway, so the slicing changes no
    output; every other attribute (``check``, ``note``, ``timed``) is the runner's own. A runner that counts its own
    images (``counting(step)``: one that shards them over workers) is given the step instead."""
    if hasattr(runner, "counting"):
        return runner.counting(step)
    return _Counted(runner, step, chunks)


class _Counted:
    def __init__(self, runner: Runner, step: progress.Step, chunks: int):
        self._runner, self._step, self._chunks = runner, step, chunks

    def __getattr__(self, name: str):
        return getattr(self._runner, name)

    def run(self, x):
        import numpy as np

        size = max(8, -(-len(x) // self._chunks))
        parts = []
        for i in range(0, len(x), size):
            parts.append(self._runner.run(x[i:i + size]))
            self._step.advance(len(x[i:i + size]))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if len(parts) > 1 else parts[0] if parts else self._runner.run(x)


def _stoppable(runner: Runner, x, stop: threading.Event, chunk: int = 8):
    """``runner.run(x)`` a few images at a time, so that ``stop`` (an export that failed meanwhile) ends it early."""
    import numpy as np

    parts = []
    for i in range(0, len(x), chunk):
        if stop.is_set():
            raise RuntimeError("stopped: the export ended before verification")
        parts.append(runner.run(x[i:i + chunk]))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if len(parts) > 1 else parts[0]


def _images_digest(x) -> str:
    import numpy as np

    a = np.ascontiguousarray(x)
    return f"{a.shape} {a.dtype} " + hashlib.sha256(a.tobytes()).hexdigest()


def _host() -> str:
    """The machine's architecture and CPU model: kernels chosen by instruction set may round differently elsewhere."""
    from toolkit._io import cpu_model

    return f"{platform.system()} {platform.machine()} {cpu_model()}"
