"""Where independent pieces of work run: a pool of local processes, or a Ray cluster (a fresh one on this machine,
or one that is already running). Both run module-level functions on picklable arguments, retry a task whose worker
died (killed, out of memory) and hand back each task's result or why it could not be had; neither sends anything
anywhere but to its own workers (Ray's usage statistics are turned off before Ray starts)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import BadInputError

RETRIES = 3  # a task whose worker dies is run again this many times


class TaskLost(Exception):
    """A task's worker died on every attempt (or the cluster went away): no result."""


@dataclass(eq=False)
class Handle:
    """One submitted task."""

    name: str
    fn: Callable
    args: tuple
    ref: Any = None  # the Future, or the Ray ObjectRef
    attempts: int = 1
    lost: str | None = None  # why the task has no result, once it is given up
    meta: dict = field(default_factory=dict)  # the caller's own bookkeeping


def _init_worker(threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


class LocalPool:
    """``workers`` local processes (spawned: a fresh interpreter each, nothing inherited from the caller's threads),
    each with ``cpu_count / workers`` threads. A worker that dies breaks the pool: the pool is rebuilt and every task
    without a result is submitted again, up to ``RETRIES`` more times each."""

    kind = "local processes"
    same_machine = True  # its workers read this machine's files

    def __init__(self, workers: int | None = None):
        import multiprocessing

        self.workers = max(1, workers or os.cpu_count() or 1)
        self._threads = max(1, (os.cpu_count() or 1) // self.workers)
        self._ctx = multiprocessing.get_context("spawn")
        self._pool = self._new_pool()
        self._live: list[Handle] = []

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self._ctx, initializer=_init_worker,
                                   initargs=(self._threads,))

    def describe(self) -> str:
        return f"{self.workers} local worker processes, {self._threads} thread(s) each"

    def put(self, value):
        return value

    def submit(self, fn: Callable, *args, name: str) -> Handle:
        h = Handle(name=name, fn=fn, args=args)
        h.ref = self._pool.submit(fn, *args)
        self._live.append(h)
        return h

    def wait(self, handles: list[Handle], timeout: float | None = None) -> list[Handle]:
        """At least one of ``handles`` that has finished (a result, or given up), unless ``timeout`` passes first."""
        while True:
            done = [h for h in handles if h.lost or (h.ref.done() and not _broken(h.ref))]
            if done:
                return done
            if any(_broken(h.ref) for h in handles if h.ref.done()):
                self._restart()
                continue
            finished, _ = wait_futures([h.ref for h in handles], timeout=timeout, return_when=FIRST_COMPLETED)
            if not finished:
                return []

    def _restart(self) -> None:
        """A worker died: a new pool, and every unfinished task again (each up to ``RETRIES`` more times)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()
        for h in self._live:
            if h.lost or (h.ref.done() and not _broken(h.ref) and not h.ref.cancelled()):
                continue
            if _broken(h.ref):  # the pool cannot tell whose worker died: every task it broke counts an attempt
                if h.attempts > RETRIES:
                    h.lost = f"its worker process died on all {h.attempts} attempts"
                    continue
                h.attempts += 1
            h.ref = self._pool.submit(h.fn, *h.args)

    def result(self, h: Handle):
        if h in self._live:
            self._live.remove(h)
        if h.lost:
            raise TaskLost(h.lost)
        return h.ref.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _broken(f: Future) -> bool:
    return f.done() and not f.cancelled() and isinstance(f.exception(), BrokenProcessPool)


class RayCluster:
    """Tasks on Ray. ``address``: ``local`` starts a private cluster on this machine (``workers`` CPUs, default all),
    ``auto`` joins the one running here (``ray start --head``), anything else is a cluster's address
    (``ray://host:10001`` or ``host:6379``). A Ray session already initialised in this process is used as it is. A
    task whose worker dies is retried by Ray (``RETRIES`` times)."""

    kind = "Ray"
    same_machine = False  # its workers may be other machines: data travels through the object store

    def __init__(self, address: str = "local", workers: int | None = None):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the user's machines
        try:
            import ray
        except ImportError:
            raise BadInputError("Ray is not installed", fix="pip install -e '.[ray]' (or drop --ray for local processes)") from None
        self._ray = ray
        self._own = False
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                if address == "local":
                    ray.init(num_cpus=workers or os.cpu_count(), **kwargs)
                else:
                    ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise BadInputError(f"cannot reach a Ray cluster at {address!r}: {first}",
                                    fix="start one (`ray start --head`) and pass --ray auto, pass its address, or use --ray local") from None
            self._own = True
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        self._remote: dict[Callable, Any] = {}

    def describe(self) -> str:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        return f"Ray {self._ray.__version__}: {len(nodes)} node(s), {self.workers} CPUs"

    def put(self, value):
        return self._ray.put(value)

    def submit(self, fn: Callable, *args, name: str) -> Handle:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(max_retries=RETRIES, num_cpus=1)(fn)
        h = Handle(name=name, fn=fn, args=args)
        h.ref = remote.options(name=name).remote(*args)
        return h

    def wait(self, handles: list[Handle], timeout: float | None = None) -> list[Handle]:
        by_ref = {h.ref: h for h in handles}
        done, _ = self._ray.wait(list(by_ref), num_returns=1, timeout=timeout, fetch_local=False)
        return [by_ref[r] for r in done]

    def result(self, h: Handle):
        from ray import exceptions

        try:
            return self._ray.get(h.ref)
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.OutOfMemoryError,
                exceptions.TaskUnschedulableError, exceptions.ObjectLostError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise TaskLost(f"{type(exc).__name__} after {RETRIES} retries: {first}") from None
        except exceptions.RayTaskError as exc:  # the task's own exception, raised in the worker
            raise exc.as_instanceof_cause() from None

    def close(self) -> None:
        if self._own:
            self._ray.shutdown()


def executor(ray: str | None = None, workers: int | None = None) -> LocalPool | RayCluster:
    """``ray`` None: local processes; else a Ray cluster (``RayCluster``'s ``address``)."""
    if workers is not None and workers < 1:
        raise BadInputError(f"--workers {workers} is not a number of workers", fix="pass --workers 1 or more")
    return LocalPool(workers) if ray is None else RayCluster(ray, workers)


def run_all(ex, tasks: list[tuple[str, Callable, tuple]], on_done: Callable[[Handle, Any, str | None], None] | None = None) -> list:
    """Every ``(name, fn, args)`` on ``ex``; the results in order (a task without one: ``TaskLost``'s reason as
    ``{"lost": ...}``). ``on_done(handle, result, lost)`` as each finishes."""
    handles = [ex.submit(fn, *args, name=name) for name, fn, args in tasks]
    index = {id(h): i for i, h in enumerate(handles)}
    results: list = [None] * len(handles)
    pending = list(handles)
    while pending:
        for h in ex.wait(pending):
            pending.remove(h)
            try:
                value, lost = ex.result(h), None
            except TaskLost as exc:
                value, lost = {"lost": str(exc)}, str(exc)
            results[index[id(h)]] = value
            if on_done is not None:
                on_done(h, value, lost)
    return results
