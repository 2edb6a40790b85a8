"""Verification sharded over workers: an artifact's runner whose ``run(images)`` splits the images into shards, runs
each on a worker (the artifact travels once per worker: its bytes through Ray's object store, or its path to a local
process) and gathers the outputs in order. Everything after — the comparison with the float reference, the metrics,
the bootstrap — runs centrally on the gathered outputs, exactly as for one machine, so the same seed gives the same
confidence intervals."""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from toolkit.backends.base import Runner
    from toolkit.convert.base import Artifact
    from toolkit.progress import Step

SHARD_IMAGES = 250  # images per shard: big enough that loading the artifact on a worker is a small part of a shard


def pack(path: Path) -> bytes:
    """An artifact's bytes: the file, or a folder artifact (.mlpackage, .aimodel) as an uncompressed tar."""
    if not path.is_dir():
        return path.read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(path, arcname=path.name)
    return buf.getvalue()


_MATERIALISED: dict[str, Path] = {}  # in a worker: artifact sha -> where its bytes were written
_RUNNERS: OrderedDict[tuple, Runner] = OrderedDict()  # in a worker: the last few runners built, by artifact and settings


def _materialise(blob: bytes, filename: str, is_dir: bool) -> Path:
    key = hashlib.sha256(blob).hexdigest()
    if key not in _MATERIALISED or not _MATERIALISED[key].exists():
        folder = Path(tempfile.mkdtemp(prefix="skinkit-shard-"))
        if is_dir:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
                tar.extractall(folder, filter="data")
        else:
            (folder / filename).write_bytes(blob)
        _MATERIALISED[key] = folder / filename
    return _MATERIALISED[key]


def run_shard(source, fmt: str, filename: str, is_dir: bool, threads: int, layout: str, pixel_range: str, x) -> dict:
    """On a worker: the artifact (``source``: its path on this machine, or its bytes) on the images ``x``; its outputs
    by name and what executed it. The runner is built once per worker and artifact."""
    from toolkit.backends import get_backend

    path = Path(source) if isinstance(source, str) else _materialise(source, filename, is_dir)
    key = (str(path), fmt, threads, layout, pixel_range)
    runner = _RUNNERS.get(key)
    if runner is None:
        runner = get_backend(fmt).runner(path, threads=threads, layout=layout, pixel_range=pixel_range)
        _RUNNERS[key] = runner
        while len(_RUNNERS) > 2:
            _RUNNERS.popitem(last=False)
    _RUNNERS.move_to_end(key)
    return {"outputs": runner.run(x), "check": runner.check, "note": runner.note, "timed": runner.timed}


class ShardedRunners:
    """A ``Context.runner_factory``: every artifact's runner shards its images over ``executor``'s workers
    (``shard_images`` a shard); a call on a single image (the benchmark's) runs in-process."""

    def __init__(self, executor, shard_images: int = SHARD_IMAGES):
        self.executor, self.shard_images = executor, max(1, shard_images)

    def __call__(self, artifact: Artifact, *, threads: int, layout: str, pixel_range: str) -> ShardedRunner:
        return ShardedRunner(self, artifact, threads=threads, layout=layout, pixel_range=pixel_range)


class ShardedRunner:
    def __init__(self, owner: ShardedRunners, artifact: Artifact, *, threads: int, layout: str, pixel_range: str):
        self._owner, self._artifact = owner, artifact
        self._settings = dict(threads=threads, layout=layout, pixel_range=pixel_range)
        self._source = None
        self._local: Runner | None = None
        self._step: Step | None = None
        self._seen: dict | None = None  # what the workers said executed the artifact
        self.shards = 0

    def counting(self, step: Step) -> ShardedRunner:
        """Advance ``step`` by each shard's images as it comes back."""
        self._step = step
        return self

    def _in_process(self) -> Runner:
        if self._local is None:
            from toolkit.backends import get_backend

            self._local = get_backend(self._artifact.format).runner(self._artifact.path, **self._settings)
        return self._local

    @property
    def check(self) -> str:
        ex = self._owner.executor
        if self._seen is None:
            return f"{self._artifact.format} runtime on {ex.kind} workers"
        return f"{self._seen['check']}; sharded over {ex.describe()} ({self.shards} shards)"

    @property
    def note(self) -> str:
        return self._seen["note"] if self._seen else ""

    @property
    def timed(self) -> bool:
        return self._seen["timed"] if self._seen else self._in_process().timed

    def run(self, x: np.ndarray) -> dict:
        import numpy as np

        from toolkit.scale.executor import run_all

        size = self._owner.shard_images
        if len(x) <= 1:  # the benchmark's single image: timed here, where it runs
            out = self._in_process().run(x)
            if self._step is not None:
                self._step.advance(len(x))
            return out
        ex, a = self._owner.executor, self._artifact
        if self._source is None:
            self._source = str(a.path) if ex.same_machine else ex.put(pack(a.path))
        bounds = [(i, min(i + size, len(x))) for i in range(0, len(x), size)]
        tasks = [(f"skinkit verify {a.filename} [{i}:{j}]", run_shard,
                  (self._source, a.format, a.filename, a.path.is_dir(), self._settings["threads"], self._settings["layout"],
                   self._settings["pixel_range"], x[i:j])) for i, j in bounds]

        images = {t[0]: j - i for t, (i, j) in zip(tasks, bounds)}

        def done(handle, result, lost):
            if self._step is not None and not lost:
                self._step.advance(images[handle.name])

        results = run_all(ex, tasks, on_done=done)
        lost = [(t[0], r["lost"]) for t, r in zip(tasks, results) if "lost" in r]
        if lost:
            from toolkit.scale.executor import TaskLost

            raise TaskLost(f"{len(lost)} of {len(tasks)} shards got no result ({lost[0][0]}: {lost[0][1]})")
        self._seen, self.shards = results[0], self.shards + len(tasks)
        return {k: np.concatenate([r["outputs"][k] for r in results]) for k in results[0]["outputs"]}
