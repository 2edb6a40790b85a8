"""``skinkit batch``: many recipes at once, on local processes or a Ray cluster.

Each recipe's targets are converted as separate tasks (one per target) into the shared conversion cache
(``toolkit.convert.cache``); once a recipe's conversions are done, its export runs as one more task — loading,
verifying, benchmarking and bundling exactly as ``skinkit export`` does, its conversions now copied from the cache —
so every bundle is what the recipe alone would give (manifests equal but for timings and host facts). On Ray, that
task also shards its verification over the cluster (``toolkit.scale.shards``). A recipe that fails does not stop the
others: the summary gives each recipe's exit code (``skinkit export``'s) and its one-line error. A worker killed
mid-task is retried (Ray's task retries, or a rebuilt local pool) and an export that died half-way leaves nothing: a
bundle is written into a staging folder and renamed into place only when complete, and the next attempt sweeps the
staging folder.

Conversions run as their own tasks only for a recipe that compresses nothing (a pruned network is trained again in
each process, so only its export task converts it) and only for targets that do not search their float layers
(``keep_float: auto`` gates on the evaluation set, so the export does it). Assessment recipes run as one task."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolkit import progress
from toolkit.errors import BadInputError, SkinkitError
from toolkit.scale.executor import TaskLost, executor


@dataclass
class RecipeResult:
    recipe: str  # the recipe file, as given
    name: str | None  # its bundle's name; None when it did not parse
    kind: str  # "model" or "assessment"
    exit_code: int  # skinkit export's: 0 passed, 1 bad input, 2 not converted, 3 gate failed, 4 incomplete
    bundle: str | None = None  # written (also when the gate failed or the bundle is incomplete)
    error: str | None = None  # the one-line cause
    fix: str | None = None
    seconds: float = 0.0  # the export task's own time
    conversions: list[dict] = field(default_factory=list)  # the conversion tasks: target, seconds, error
    summary: dict | None = None  # the export's summary (artifacts, verdicts, metrics), where there is one

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


@dataclass
class BatchResult:
    results: list[RecipeResult]
    workers: str  # what ran the tasks
    seconds: float
    cache: str | None

    @property
    def exit_code(self) -> int:
        """0 when every recipe passed, else the first failing recipe's (in the order given)."""
        return next((r.exit_code for r in self.results if r.exit_code), 0)

    def as_dict(self) -> dict:
        return {"passed": self.exit_code == 0, "exit_code": self.exit_code, "workers": self.workers,
                "seconds": round(self.seconds, 1), "cache": self.cache, "recipes": [asdict(r) for r in self.results]}


def _quiet_task(cache: str | None) -> None:
    """A worker's settings for one task: the batch's conversion cache, no progress output."""
    os.environ["SKINKIT_CACHE"] = cache or "off"


def _failure(exc: BaseException) -> dict:
    if isinstance(exc, SkinkitError):
        return {"error": exc.cause, "fix": exc.fix, "exit_code": exc.exit_code,
                "summary": getattr(exc, "summary", None), "bundle": getattr(exc, "bundle_dir", None)}
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return {"error": f"{type(exc).__name__}: {first}", "fix": "see the traceback with `skinkit export` on this recipe alone",
            "exit_code": 1, "summary": None, "bundle": None}


def convert_task(recipe_path: str, target_key: str, cache: str | None) -> dict:
    """On a worker: convert one target of a recipe into the shared cache (nothing else is written)."""
    from toolkit._io import captured_quietly
    from toolkit.compress import stage as compress
    from toolkit.context import Context
    from toolkit.convert import stage as convert
    from toolkit.load import stage as load
    from toolkit.recipe import parse_recipe, read_yaml
    from toolkit.verify import evaluation

    _quiet_task(cache)
    t0 = time.perf_counter()
    path = Path(recipe_path)
    try:
        with progress.reporting(None), captured_quietly(), tempfile.TemporaryDirectory(prefix="skinkit-batch-") as tmp:
            r = parse_recipe(read_yaml(path), source=str(path))
            target = next(t for t in r.targets if t.key == target_key)
            r = r.model_copy(update={"targets": [target]})
            context = Context(recipe=r, recipe_path=path.resolve(), staging=Path(tmp), log_path=Path(tmp) / "backend.log",
                              cache=cache)
            compressed = compress.run(context, load.run(context, r.model))
            images = evaluation.images(context, compressed)
            convert.run(context, compressed, evaluation_images=images.inputs, strict=True)
    except Exception as exc:  # noqa: BLE001 — reported per task; the export task converts it again and records it
        return {"target": target_key, "seconds": round(time.perf_counter() - t0, 1), **_failure(exc)}
    return {"target": target_key, "seconds": round(time.perf_counter() - t0, 1), "exit_code": 0}


def export_task(recipe_path: str, out: str, force: bool, cache: str | None, shard_images: int | None) -> dict:
    """On a worker: ``skinkit export`` of one recipe (its conversions from the cache); on Ray, verification sharded
    over the cluster with ``shard_images`` images a shard."""
    from toolkit._io import captured_quietly
    from toolkit.chain.recipe import is_chain_recipe, parse_chain_recipe
    from toolkit.recipe import parse_recipe, read_yaml

    _quiet_task(cache)
    t0 = time.perf_counter()
    path, out_dir = Path(recipe_path), Path(out)
    try:
        with progress.reporting(None), captured_quietly():
            data = read_yaml(path)
            if is_chain_recipe(data):
                from toolkit.chain.export import export_chain

                chain = parse_chain_recipe(data, source=str(path), base=path.parent)
                export_chain(chain, recipe_path=path, out_dir=out_dir, force=force)  # raises unless it passed
                bundle = str(out_dir / chain.name)
                return {"exit_code": 0, "seconds": round(time.perf_counter() - t0, 1), "bundle": bundle,
                        "summary": {"bundle": bundle, "passed": True}}
            from toolkit.pipeline import export

            factory = None
            if shard_images:
                from toolkit.scale.executor import RayCluster
                from toolkit.scale.shards import ShardedRunners

                factory = ShardedRunners(RayCluster("auto"), shard_images)  # this worker's own cluster
            result = export(parse_recipe(data, source=str(path)), recipe_path=path, out_dir=out_dir, force=force,
                            cache=cache or False, runner_factory=factory)
            return {"exit_code": 0, "seconds": round(time.perf_counter() - t0, 1), "summary": result.summary(),
                    "bundle": str(result.bundle_dir)}
    except Exception as exc:  # noqa: BLE001 — one recipe's failure is a line of the batch's summary
        return {"seconds": round(time.perf_counter() - t0, 1), **_failure(exc)}


@dataclass
class _Planned:
    index: int
    path: Path
    result: RecipeResult
    targets: list[str]  # converted as their own tasks first
    pending: int = 0  # conversion tasks not finished yet


def _plan(paths: list[Path], out: Path, force: bool) -> list[_Planned]:
    """Each recipe parsed here first: one that does not parse, or names a bundle another recipe of the batch writes,
    fails alone (exit 1) before any work is sent."""
    from toolkit.chain.recipe import is_chain_recipe, parse_chain_recipe
    from toolkit.recipe import parse_recipe, read_yaml

    planned, names = [], {}
    for i, path in enumerate(paths):
        res = RecipeResult(recipe=str(path), name=None, kind="model", exit_code=0)
        targets: list[str] = []
        try:
            data = read_yaml(path)
            if is_chain_recipe(data):
                res.kind, res.name = "assessment", parse_chain_recipe(data, source=str(path), base=path.parent).name
            else:
                r = parse_recipe(data, source=str(path))
                res.name = r.name
                if r.compress.pruning is None and (force or not (out / r.name).exists()):
                    targets = [t.key for t in r.targets if t.keep_float != "auto"]
            if res.name in names:
                raise BadInputError(f"{path} writes bundle {res.name!r}, as {names[res.name]} does in this batch",
                                    fix="give one of the recipes another name:, or run them in separate batches")
            names[res.name] = str(path)
        except SkinkitError as exc:
            res.exit_code, res.error, res.fix = exc.exit_code, exc.cause, exc.fix
        planned.append(_Planned(index=i, path=path, result=res, targets=targets))
    return planned


def run_batch(recipes: list[str | Path], *, out: str | Path = "bundles", ray: str | None = None, workers: int | None = None,
              cache: str | os.PathLike | bool | None = None, force: bool = False, shard_images: int | None = None) -> BatchResult:
    """Export every recipe (``ray``: on a Ray cluster — ``local``, ``auto`` or an address —, else ``workers`` local
    processes). ``cache``: the conversion cache every worker shares (a folder or fsspec URL; None: the environment's or
    the user's cache folder; False: none, so conversions are not shared and every export converts its own).
    ``shard_images``: on Ray, images per verification shard (default ``toolkit.scale.shards.SHARD_IMAGES``)."""
    from toolkit.convert.cache import resolve_root
    from toolkit.scale.shards import SHARD_IMAGES

    t0 = time.perf_counter()
    if not recipes:
        raise BadInputError("no recipes to run", fix="pass one or more recipe files: skinkit batch export_recipes/*.yaml")
    out = Path(out).resolve()
    paths = [Path(p).resolve() for p in recipes]
    root = resolve_root(cache)
    planned = _plan(paths, out, force)
    ex = executor(ray, workers)
    where = ex.describe()
    shard = (shard_images or SHARD_IMAGES) if ray is not None else None
    live: dict = {}  # handle -> (planned, kind, target)
    try:
        for p in planned:
            if p.result.exit_code:
                continue
            for key in p.targets if root else []:
                h = ex.submit(convert_task, str(p.path), key, root, name=f"skinkit convert {p.result.name}:{key}")
                live[h], p.pending = (p, "convert", key), p.pending + 1
            if not p.pending:
                live[_export(ex, p, out, force, root, shard)] = (p, "export", None)
        while live:
            for h in ex.wait(list(live)):
                p, kind, key = live.pop(h)
                try:
                    value = ex.result(h)
                except TaskLost as exc:
                    value = {"exit_code": 1, "error": f"the worker running it died: {exc}", "seconds": 0.0,
                             "fix": "run the batch again: finished bundles are kept (pass --force to redo them)"}
                if kind == "convert":
                    p.result.conversions.append(value)
                    p.pending -= 1
                    if not p.pending:
                        live[_export(ex, p, out, force, root, shard)] = (p, "export", None)
                    progress.finished("batch", f"convert {p.result.name}:{key}", value["seconds"],
                                      f"failed: {value['error']}" if value.get("error") else "into the cache")
                    continue
                _record(p.result, value)
                progress.finished("batch", f"export {p.result.name}", p.result.seconds,
                                  "passed" if p.result.passed else f"exit {p.result.exit_code}: {p.result.error}")
    finally:
        ex.close()
    for p in planned:
        p.result.conversions.sort(key=lambda c: p.targets.index(c["target"]))
    return BatchResult(results=[p.result for p in planned], workers=where, seconds=time.perf_counter() - t0, cache=root)


def _export(ex, p: _Planned, out: Path, force: bool, root: str | None, shard: int | None):
    return ex.submit(export_task, str(p.path), str(out), force, root, shard if p.result.kind == "model" else None,
                     name=f"skinkit export {p.result.name}")


def _record(res: RecipeResult, value: dict) -> None:
    res.exit_code = int(value.get("exit_code", 1))
    res.error, res.fix = value.get("error"), value.get("fix")
    res.seconds = value.get("seconds", 0.0)
    res.summary = value.get("summary")
    res.bundle = value.get("bundle") or (res.summary or {}).get("bundle")
