"""The export pipeline: wiring only; each stage's logic is its package's ``stage.run``. Steps, in order:

1. load      — the trained model and its contract (spec, checkpoint, provenance)
2. compress  — optional pruning, on a copy; the device contract baked around the network
3. convert   — first, once, the evaluation set (calibration must not overlap it); then one artifact per target
               (a target that fails is recorded and the others go on, unless ``strict``)
4. verify    — each artifact against the float model on the evaluation set; the gate
5. benchmark — host latency of each artifact next to the PyTorch reference
6. bundle    — manifest, report and artifacts, renamed into place atomically

Each stage declares the one it follows; the order is validated before anything runs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from toolkit import progress as _progress
from toolkit.benchmark import stage as benchmark
from toolkit.bundle import stage as bundle
from toolkit.compress import stage as compress
from toolkit.context import Context
from toolkit.convert import stage as convert
from toolkit.errors import ConversionError, IncompleteBundle, VerificationFailed
from toolkit.load import stage as load
from toolkit.recipe import Recipe
from toolkit.verify import evaluation
from toolkit.verify import stage as verify
from toolkit.verify.outputs import EvaluationOutputs


@dataclass(frozen=True)
class Stage:
    name: str
    after: str | None
    run: Callable[..., object]  # the stage's public run(context, input, ...) -> output
    describe: str


def validate_order(stages: tuple[Stage, ...]) -> None:
    if not stages or stages[0].after is not None:
        raise ValueError("the first stage must follow nothing")
    for prev, cur in zip(stages, stages[1:]):
        if cur.after != prev.name:
            raise ValueError(f"stage {cur.name!r} must follow {cur.after!r}, not {prev.name!r}")


STAGES: tuple[Stage, ...] = (
    Stage("load", None, load.run, "load the trained model"),
    Stage("compress", "load", compress.run, "compress and bake the device contract"),
    Stage("convert", "compress", convert.run, "convert to every target"),
    Stage("verify", "convert", verify.run, "verify against float on held-out data"),
    Stage("benchmark", "verify", benchmark.run, "measure host latency"),
    Stage("bundle", "benchmark", bundle.run, "write manifest and report"),
)
validate_order(STAGES)


def run_stages(context: Context, *, strict: bool = False) -> bundle.Bundled:
    """Every stage in order, into ``context.staging``. ``strict``: the first target that fails to convert
    stops the export (otherwise it is recorded and the bundle marked incomplete). Each stage is a progress step
    (``toolkit.progress``), and reports its own long steps inside it."""
    step = _steps(STAGES)
    with step("load") as run:
        loaded = run(context, context.recipe.model)
    with step("compress") as run:
        compressed = run(context, loaded)
    outputs, ahead = None, None
    try:
        with step("convert") as run:
            ahead = start_second_process(context, compressed)  # first: it loads the model and data for itself
            evaluated = evaluation.run(context, compressed)
            search = verify.mixed_precision_search(context, compressed, evaluated)
            # slow runtimes start on the evaluation images as their artifacts are written
            outputs = EvaluationOutputs(context, evaluated.x, lambda a: verify.make_runner(context, a))
            converted = run(context, compressed, evaluation_images=evaluated.data.inputs, mixed_precision=search,
                            strict=strict, on_artifact=outputs.start, ahead=ahead)
        with step("verify") as run:
            verified = run(context, converted, evaluation=evaluated, outputs=outputs)
    finally:
        if outputs is not None:
            outputs.close()
        if ahead is not None:
            ahead.close()
    with step("benchmark") as run:
        benchmarked = run(context, verified)
    with step("bundle") as run:
        return run(context, benchmarked)


# Memory a machine must have available for an export to convert in two processes: each holds its own converter
# libraries (~1.2 GB between them), so a full-size ResNet-50 peaks at 3.1 GB in two processes and 1.8 GB in one.
TWO_PROCESS_MIN_AVAILABLE_GB = 6.0


def conversion_workers() -> int:
    """Processes that convert one export's targets: ``SKINKIT_CONVERT_WORKERS`` (1: everything in this process), else
    two where this process may use two cores or more and the machine has ``TWO_PROCESS_MIN_AVAILABLE_GB`` available."""
    value = os.environ.get("SKINKIT_CONVERT_WORKERS", "auto").strip().lower()
    if value not in ("", "auto"):
        try:
            return max(1, int(value))
        except ValueError:
            return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    available = available_memory_gb()
    return 2 if cores >= 2 and (available is None or available >= TWO_PROCESS_MIN_AVAILABLE_GB) else 1


def available_memory_gb() -> float | None:
    """Memory available to new processes (Linux ``MemAvailable``), GB; None where the system does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        return None
    return None


def start_second_process(context: Context, compressed) -> convert.Ahead | None:
    """A second Python process converting the recipe's costliest format group (``convert.second_process_share``)
    into the conversion cache (a temporary one when the export has none) while this one builds the evaluation set
    and converts the others. It loads the model and draws the calibration images from the recipe as this process
    does, so the conversion keys agree; targets already cached it leaves alone. None when conversion runs in one
    process (``conversion_workers``), for a pruned model (its pruning is this process's), when nothing would be left
    to convert here meanwhile, or when the process cannot start."""
    import pickle
    import shutil
    import subprocess
    import sys

    import toolkit
    from toolkit.backends import get_backend
    from toolkit.convert.cache import ConversionCache

    if conversion_workers() < 2 or compressed.report is not None:
        return None
    recipe = context.recipe
    movable = [t for t in recipe.targets if t.keep_float != "auto" and not get_backend(t.format).slow_runtime]
    targets = convert.second_process_share(movable, others=len(recipe.targets) - len(movable))
    if not targets:
        return None
    tmp = Path(tempfile.mkdtemp(prefix="skinkit-second-"))
    root = context.cache or str(tmp / "cache")
    try:
        job = {"recipe": recipe.model_copy(update={"targets": tuple(targets)}), "recipe_path": str(context.recipe_path), "cache": root}
        (tmp / "job.pickle").write_bytes(pickle.dumps(job))
        here = str(Path(toolkit.__file__).resolve().parents[1])  # this process's skinkit, however it was found
        env = {**os.environ, "SKINKIT_CONVERT_WORKERS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
        with open(tmp / "second.log", "w") as log:
            proc = subprocess.Popen([sys.executable, "-c", "import sys; from toolkit.pipeline import convert_in_second_process as f; "
                                     "f(sys.argv[1])", str(tmp / "job.pickle")], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):  # cannot start: everything converts here
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    closed = []

    def close() -> None:
        if closed:
            return
        closed.append(True)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        with open(context.log_path, "a") as log:  # its converters' messages, for the export's backend log
            log.write((tmp / "second.log").read_text(errors="replace"))
        shutil.rmtree(tmp, ignore_errors=True)

    return convert.Ahead(keys=frozenset(t.key for t in targets), cache=ConversionCache(root), wait=proc.wait, close=close)


def convert_in_second_process(job_path: str) -> None:
    """The second process of ``start_second_process``: load and contract the model as the export does, then convert
    the job's targets that are not cached yet into its cache; nothing else is written. A failure leaves the targets
    to the export."""
    import pickle

    from toolkit._io import captured_quietly

    job = pickle.loads(Path(job_path).read_bytes())  # noqa: S301 — written by this export's own process
    with _progress.reporting(None), captured_quietly(), tempfile.TemporaryDirectory(prefix="skinkit-second-") as tmp:
        context = Context(recipe=job["recipe"], recipe_path=Path(job["recipe_path"]), staging=Path(tmp),
                          log_path=Path(tmp) / "backend.log", cache=job["cache"])
        compressed = compress.run(context, load.run(context, context.recipe.model))
        convert.run(context, compressed, evaluation_images=None, check_outputs=False, cached_only_skipped=True)


def _steps(stages: tuple[Stage, ...]):
    """Per stage: a progress step ``export <i>/<n> <name>``; refused when entered out of declared order."""
    entered: list[str] = []

    @contextmanager
    def step(name: str):
        i, stage = next((i, s) for i, s in enumerate(stages, 1) if s.name == name)
        validate_order((*(s for s in stages if s.name in entered), stage))
        entered.append(name)
        with _progress.step("export", f"{i}/{len(stages)} {stage.name}", message=stage.describe):
            yield stage.run

    return step


@dataclass(frozen=True)
class Headline:
    """An artifact's headline task metric (the one the gate judges drops by) against the float model."""

    name: str  # e.g. accuracy, macro_f1, miou, mask_ap, mae_hydration
    float_value: float
    value: float  # the artifact's
    drop: float  # positive: worse than float
    drop_ci95: tuple[float, float]  # paired bootstrap
    higher_is_better: bool
    bound: float | None  # the largest drop the gate allows; None: no bound on it
    judged_on: str | None  # 'upper 95 % CI' or 'point estimate': the figure the bound is held against
    margin: float | None  # bound minus the judged figure: room left (negative: over the bound)
    passed: bool | None  # the drop criterion's verdict; None without a bound


@dataclass(frozen=True)
class WorstGroup:
    """The skin-tone group in which the artifact's headline metric dropped most."""

    name: str
    n: int
    drop: float  # point estimate in that group
    gated: bool  # the group is large enough for the gate to judge it (evaluation.min_group_size)


@dataclass(frozen=True)
class ArtifactResult:
    path: Path  # in the bundle
    format: str
    precision: str
    passed: bool
    check: str  # what executed it
    size_bytes: int
    sha256: str
    metric: Headline | None  # None: the artifact did not execute, or its outputs failed before any metric
    worst_group: WorstGroup | None

    def as_dict(self, bundle_dir: Path) -> dict:
        from dataclasses import asdict

        d = asdict(self)
        d["path"] = self.path.relative_to(bundle_dir).as_posix()
        return d


def artifact_result(a: dict, bundle_dir: Path, min_group_size: int) -> ArtifactResult:
    """What a manifest's artifact entry says of its headline metric, gate margin and worst skin-tone group."""
    v = a["verification"]
    tm, metric, worst = v.get("task_metric"), None, None
    if tm:
        prefix = f"{tm['name']} drop vs float ("
        crit = next((c for c in v.get("criteria", []) if c["name"].startswith(prefix)), None)
        judged = crit["name"][len(prefix):-1] if crit else None
        metric = Headline(name=tm["name"], float_value=tm["float"], value=tm["artifact"], drop=tm["drop"],
                          drop_ci95=tuple(tm["drop_ci95"]), higher_is_better=tm["higher_is_better"],
                          bound=crit["bound"] if crit else None, judged_on=judged,
                          margin=crit["bound"] - crit["value"] if crit else None, passed=crit["passed"] if crit else None)
        groups = {g: d for g, d in (v.get("by_group") or {}).items() if g != "unknown" and tm["name"] in d["metrics"]}
        gated = {g: d for g, d in groups.items() if d["n"] >= min_group_size}
        pool = gated or groups
        if pool:
            g = max(pool, key=lambda k: pool[k]["metrics"][tm["name"]]["drop"]["value"])
            worst = WorstGroup(name=g, n=pool[g]["n"], drop=pool[g]["metrics"][tm["name"]]["drop"]["value"], gated=g in gated)
    return ArtifactResult(path=bundle_dir / a["path"], format=a["format"], precision=a["precision"], passed=v["passed"],
                          check=v["check"], size_bytes=a["size_bytes"], sha256=a["sha256"], metric=metric, worst_group=worst)


@dataclass(frozen=True)
class ExportResult:
    bundle_dir: Path
    manifest: dict
    log_path: Path  # removed after an export in which every target converted
    recipe_path: Path | None = None  # the recipe it was exported from (toolkit.export of a module: the one it wrote)

    @property
    def passed(self) -> bool:
        """Every target converted and every artifact passed its gate."""
        return bool(self.manifest["verdict"]["passed"])

    @property
    def complete(self) -> bool:
        """Every recipe target converted."""
        return not self.manifest["failed_targets"]

    @property
    def artifacts(self) -> tuple[ArtifactResult, ...]:
        """Every artifact with its verdict, headline metric (float, artifact, drop with its CI, gate margin) and worst
        skin-tone group."""
        ev = (self.manifest.get("recipe", {}).get("resolved") or {}).get("evaluation") or {}
        return tuple(artifact_result(a, self.bundle_dir, ev.get("min_group_size", 1)) for a in self.manifest["artifacts"])

    @property
    def failed_targets(self) -> list[dict]:
        """The recipe targets that did not convert: key, format, precision, error and fix."""
        return self.manifest["failed_targets"]

    def summary(self) -> dict:
        return {
            "bundle": str(self.bundle_dir),
            "passed": self.passed,
            "complete": self.complete,
            "artifacts": [a.as_dict(self.bundle_dir) for a in self.artifacts],
            "failed_targets": self.failed_targets,
        }


def summary_lines(summary: dict) -> list[tuple[bool | None, str]]:
    """``summary()`` as a compact table, one row per artifact: (passed, text); the header's and the failed targets'
    first field is None. What ``skinkit export`` prints on stderr."""
    width = max([len("artifact"), *(len(a["path"]) for a in summary["artifacts"])])
    rows = [(None, f"{'artifact':{width}} {'size':>8}  {'metric':10} {'float':>7} {'value':>7} {'drop [95 % CI]':>27} "
                   f"{'margin':>8}  worst skin-tone group")]
    for a in summary["artifacts"]:
        m, w = a["metric"], a["worst_group"]
        size = f"{a['size_bytes'] / 1e6:.2f} MB"
        if m is None:
            text = f"{a['path']:{width}} {size:>8}  not measured ({a['check']})"
        else:
            ci = f"{m['drop']:+.4f} [{m['drop_ci95'][0]:+.4f}, {m['drop_ci95'][1]:+.4f}]"
            margin = "—" if m["margin"] is None else f"{m['margin']:+.4f}"
            group = "—" if w is None else f"{w['name']} {w['drop']:+.4f} (n={w['n']}{'' if w['gated'] else ', too few to gate'})"
            text = (f"{a['path']:{width}} {size:>8}  {m['name']:10} {m['float_value']:7.4f} {m['value']:7.4f} {ci:>27} "
                    f"{margin:>8}  {group}")
        rows.append((a["passed"], text))
    rows += [(None, f"NOT CONVERTED  {f['key']}: {f['error']}") for f in summary["failed_targets"]]
    return rows


def export(recipe: Recipe, *, recipe_path: Path, out_dir: Path, force: bool = False, strict: bool = False,
           console=None, progress: _progress.ProgressCallback | None = None, cache: str | os.PathLike | bool | None = None,
           runner_factory: Callable | None = None) -> ExportResult:
    """Run every stage; write the bundle to ``out_dir/<recipe.name>`` atomically.

    ``progress``: called with a ``toolkit.progress.ProgressEvent`` as each long step advances (default: whatever
    reporter the caller set with ``toolkit.progress.reporting``; ``console``, a ``rich`` console, renders them on it).
    ``cache``: the conversion cache (``toolkit.convert.cache``): a folder or fsspec URL, False for none, None for the
    environment's (``SKINKIT_CACHE``, else the user's cache folder). ``runner_factory``: see ``Context``.

    A target that fails to convert is recorded and the others are converted, verified and bundled; the
    bundle is then marked incomplete. ``strict``: all or nothing, the first failure stops the export.

    Raises ``ConversionError`` (nothing written: no target converted, or one failed with ``strict``),
    ``VerificationFailed`` (bundle written, gate failed; it also names targets that did not convert) or
    ``IncompleteBundle`` (bundle written, some targets did not convert, the others pass the gate).
    """
    if progress is not None:
        with _progress.reporting(progress):
            return export(recipe, recipe_path=recipe_path, out_dir=out_dir, force=force, strict=strict, cache=cache,
                          runner_factory=runner_factory)
    if console is not None:
        with _progress.for_console(console) as shown:
            return export(recipe, recipe_path=recipe_path, out_dir=out_dir, force=force, strict=strict, progress=shown,
                          cache=cache, runner_factory=runner_factory)
    from toolkit.bundle.writer import commit_bundle, staged_bundle
    from toolkit.convert.cache import resolve_root
    from toolkit.verify.gate import failed_criteria

    final = out_dir / recipe.name
    with staged_bundle(out_dir, recipe.name, force=force) as staging:  # locked: one export of this bundle at a time
        log_fd, log_name = tempfile.mkstemp(prefix=f"skinkit-{recipe.name}-", suffix=".log")
        os.close(log_fd)
        log_path = Path(log_name)  # kept only when a target fails, for the backend's own messages
        context = Context(recipe=recipe, recipe_path=recipe_path.resolve(), staging=staging, log_path=log_path,
                          cache=resolve_root(cache),
                          runner_factory=runner_factory)
        try:
            bundled = run_stages(context, strict=strict)
            commit_bundle(staging, final, force=force)
        except ConversionError as exc:
            if exc.fix:
                exc.fix += f" (backend log: {log_path})"
            raise
    if bundled.complete:
        log_path.unlink(missing_ok=True)
    result = ExportResult(final, bundled.manifest, log_path, recipe_path)
    not_converted = [f.one_line() for f in bundled.failed]
    verdict = bundled.manifest["verdict"]
    if verdict["passed_count"] < verdict["artifact_count"] or not verdict.get("compression_passed", True):
        gate_failures = [line for a in bundled.manifest["artifacts"] for line in failed_criteria(a["path"], a["verification"]["criteria"])]
        gate_failures += failed_criteria("pruning", verify.pruning_criteria(bundled.manifest.get("compression")))
        also = f"; {len(not_converted)} target(s) did not convert either ({', '.join(f.key for f in bundled.failed)})" if not_converted else ""
        failed = VerificationFailed(f"verification gate failed for {len(gate_failures)} criteria{also}; bundle and report kept at {final}",
                                    failures=gate_failures, bundle_dir=str(final), not_converted=not_converted,
                                    fix="see report.md; loosen tolerances only if the drop is acceptable")
        failed.summary = result.summary()  # the bundle is written: what each artifact measured travels with the error
        failed.result = result
        raise failed
    if not_converted:
        incomplete = IncompleteBundle(f"bundle incomplete: {len(not_converted)} of {len(recipe.targets)} targets did not convert "
                                      f"({', '.join(f.key for f in bundled.failed)}); the {len(bundled.manifest['artifacts'])} that did "
                                      f"pass the gate; bundle and report kept at {final}",
                                      not_converted=not_converted, bundle_dir=str(final), summary=result.summary(),
                                      fix=f"fix or drop the failed targets (below; backend log: {log_path}), or pass --strict for all or nothing")
        incomplete.result = result
        raise incomplete
    return result


@dataclass(frozen=True)
class Plan:
    """What an export of ``recipe`` would do, resolved and checked without converting (``skinkit export
    --dry-run``): the model, checkpoint and data it reads, the files it writes and what each artifact is judged by."""

    recipe: Recipe
    bundle_dir: Path
    bundle_exists: bool
    model: dict
    evaluation: dict
    calibration: dict | None  # None: no target is calibrated
    compression: dict | None  # None: the recipe compresses nothing
    files: tuple[str, ...]  # beside the artifacts, in the bundle
    artifacts: tuple[dict, ...]  # per target: its file, tolerance and criteria

    def summary(self) -> dict:
        return {"bundle": str(self.bundle_dir), "bundle_exists": self.bundle_exists, "model": self.model,
                "evaluation": self.evaluation, "calibration": self.calibration, "compression": self.compression,
                "files": list(self.files), "artifacts": list(self.artifacts), "recipe": self.recipe.model_dump(mode="json")}

    def lines(self) -> list[str]:
        m, ev, cal = self.model, self.evaluation, self.calibration
        where = f"folder {ev['folder']}" if ev["folder"] else f"synthetic, {ev['split']} split, seed {ev['seed']}"
        out = [f"model: {m['name']} ({m['task']}, {m['input_size'][0]}x{m['input_size'][1]}, judged by {m['metric']}); "
               f"checkpoint {m['checkpoint']}",
               f"evaluation: {ev['n']} images ({where}; ground truth: {ev['ground_truth']})"]
        if cal is not None:
            out.append(f"calibration: {cal['images']} images ({cal.get('folder') or cal['source']}), none shared with evaluation")
        if self.compression is not None:
            c = self.compression
            out.append(f"compression: {c['method']} pruning, sparsity {c['sparsity']} (not run by --dry-run)"
                       + "".join(f"; {k['name']} {k['op']} {k['bound']}" for k in c["criteria"]))
        exists = " (exists: export replaces it only with --force)" if self.bundle_exists else ""
        out.append(f"bundle: {self.bundle_dir}/{exists}: {', '.join(self.files)}, and {len(self.artifacts)} artifact(s):")
        for a in self.artifacts:
            out.append(f"  {a['path']}  ({a['target']})")
            out += [f"    {c['name']} {c['op']} {c['bound']}" for c in a["criteria"]]
        return out


def plan(recipe: Recipe, *, recipe_path: Path, out_dir: Path) -> Plan:
    """Every check an export makes before converting, with the export's own functions, and what it would write:
    the model loads (a registered name, or a factory that builds a network) with its checkpoint and runs on its
    contract, the evaluation and calibration images load and share none, the metrics the gate names are the
    task's. Compression is not run (its budget is listed). Seconds; nothing is written."""
    from dataclasses import asdict

    from toolkit.backends.precisions import PRECISIONS
    from toolkit.convert.base import artifact_filename
    from toolkit.tasks import headline
    from toolkit.verify.gate import planned_criteria

    context = Context(recipe=recipe, recipe_path=recipe_path.resolve(), staging=Path(tempfile.gettempdir()), log_path=Path(os.devnull))
    loaded = load.run(context, recipe.model)
    images = evaluation.check(context, compress.uncompressed(context, loaded))
    spec, ev = loaded.spec, recipe.evaluation
    _, calibration = convert.calibration_inputs(context, spec, images.inputs)
    artifacts = []
    for t in recipe.targets:
        tol, judged = verify.tolerance_of(recipe, spec, t.precision, t)
        artifacts.append({
            "target": t.key, "format": t.format, "precision": t.precision,
            "path": f"artifacts/{artifact_filename(spec.name, t.format, t.variant)}",
            "tolerance": {**{k: v for k, v in asdict(tol).items() if v not in (None, {})}, "noninferiority": judged},
            "criteria": planned_criteria(spec, tol, PRECISIONS[t.precision].tier, noninferiority=judged,
                                         min_group_size=ev.min_group_size)})
    p = recipe.compress.pruning
    compression = None if p is None else {
        "method": p.method, "sparsity": p.sparsity,
        "criteria": [c for c in (
            {"name": f"{headline(spec)} drop vs original float", "op": "<=", "bound": p.max_metric_drop},
            {"name": f"worst skin-tone group {headline(spec)} drop vs original float", "op": "<=", "bound": p.max_group_drop},
        ) if c["bound"] is not None]}
    final = out_dir / recipe.name
    return Plan(
        recipe=recipe, bundle_dir=final, bundle_exists=final.exists(),
        model={"name": spec.name, "task": spec.task, "metric": headline(spec), "input_size": list(spec.input_size),
               "outputs": [o.name for o in spec.outputs], **loaded.provenance},
        evaluation={"source": ev.source, "n": len(images), "folder": str(context.resolve(ev.folder)) if ev.folder else None,
                    "split": ev.split, "seed": ev.seed, "ground_truth": ev.ground_truth},
        calibration=calibration, compression=compression,
        files=("manifest.json", "report.md", *(("labels.txt",) if spec.labels else ())),
        artifacts=tuple(artifacts))
