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
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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


def run_stages(context: Context, *, console=None, strict: bool = False) -> bundle.Bundled:
    """Every stage in order, into ``context.staging``. ``strict``: the first target that fails to convert
    stops the export (otherwise it is recorded and the bundle marked incomplete)."""
    step = _steps(STAGES, console)
    with step("load") as run:
        loaded = run(context, context.recipe.model)
    with step("compress") as run:
        compressed = run(context, loaded)
    with step("convert") as run:
        evaluated = evaluation.run(context, compressed)
        search = verify.mixed_precision_search(context, compressed, evaluated)
        converted = run(context, compressed, evaluation_images=evaluated.data.inputs, mixed_precision=search, strict=strict)
    with step("verify") as run:
        verified = run(context, converted, evaluation=evaluated)
    with step("benchmark") as run:
        benchmarked = run(context, verified)
    with step("bundle") as run:
        return run(context, benchmarked)


def _steps(stages: tuple[Stage, ...], console):
    """Per stage: its numbered line and time on the console; refused when entered out of declared order."""
    entered: list[str] = []

    @contextmanager
    def step(name: str):
        i, stage = next((i, s) for i, s in enumerate(stages, 1) if s.name == name)
        validate_order((*(s for s in stages if s.name in entered), stage))
        entered.append(name)
        t0 = time.perf_counter()
        if console:
            console.print(f"[bold]{i}/{len(stages)}[/bold] {stage.name}: {stage.describe} …")
        yield stage.run
        if console:
            console.print(f"    done in {time.perf_counter() - t0:.1f} s")

    return step


@dataclass(frozen=True)
class ExportResult:
    bundle_dir: Path
    manifest: dict
    log_path: Path  # removed after an export in which every target converted

    @property
    def passed(self) -> bool:
        """Every target converted and every artifact passed its gate."""
        return bool(self.manifest["verdict"]["passed"])

    @property
    def complete(self) -> bool:
        """Every recipe target converted."""
        return not self.manifest["failed_targets"]

    def summary(self) -> dict:
        return {
            "bundle": str(self.bundle_dir),
            "passed": self.passed,
            "complete": self.complete,
            "artifacts": [{"path": a["path"], "format": a["format"], "precision": a["precision"], "sha256": a["sha256"],
                           "size_bytes": a["size_bytes"], "passed": a["verification"]["passed"],
                           "check": a["verification"]["check"]} for a in self.manifest["artifacts"]],
            "failed_targets": self.manifest["failed_targets"],
        }


def export(recipe: Recipe, *, recipe_path: Path, out_dir: Path, force: bool = False, strict: bool = False,
           console=None) -> ExportResult:
    """Run every stage; write the bundle to ``out_dir/<recipe.name>`` atomically.

    A target that fails to convert is recorded and the others are converted, verified and bundled; the
    bundle is then marked incomplete. ``strict``: all or nothing, the first failure stops the export.

    Raises ``ConversionError`` (nothing written: no target converted, or one failed with ``strict``),
    ``VerificationFailed`` (bundle written, gate failed; it also names targets that did not convert) or
    ``IncompleteBundle`` (bundle written, some targets did not convert, the others pass the gate).
    """
    from toolkit.bundle.writer import commit_bundle, staged_bundle
    from toolkit.verify.gate import failed_criteria

    final = out_dir / recipe.name
    with staged_bundle(out_dir, recipe.name, force=force) as staging:  # locked: one export of this bundle at a time
        log_fd, log_name = tempfile.mkstemp(prefix=f"skinkit-{recipe.name}-", suffix=".log")
        os.close(log_fd)
        log_path = Path(log_name)  # kept only when a target fails, for the backend's own messages
        context = Context(recipe=recipe, recipe_path=recipe_path.resolve(), staging=staging, log_path=log_path)
        try:
            bundled = run_stages(context, console=console, strict=strict)
            commit_bundle(staging, final, force=force)
        except ConversionError as exc:
            if exc.fix:
                exc.fix += f" (backend log: {log_path})"
            raise
    if bundled.complete:
        log_path.unlink(missing_ok=True)
    result = ExportResult(final, bundled.manifest, log_path)
    not_converted = [f.one_line() for f in bundled.failed]
    verdict = bundled.manifest["verdict"]
    if verdict["passed_count"] < verdict["artifact_count"] or not verdict.get("compression_passed", True):
        gate_failures = [line for a in bundled.manifest["artifacts"] for line in failed_criteria(a["path"], a["verification"]["criteria"])]
        gate_failures += failed_criteria("pruning", verify.pruning_criteria(bundled.manifest.get("compression")))
        also = f"; {len(not_converted)} target(s) did not convert either ({', '.join(f.key for f in bundled.failed)})" if not_converted else ""
        raise VerificationFailed(f"verification gate failed for {len(gate_failures)} criteria{also}; bundle and report kept at {final}",
                                 failures=gate_failures, bundle_dir=str(final), not_converted=not_converted,
                                 fix="see report.md; loosen tolerances only if the drop is acceptable")
    if not_converted:
        raise IncompleteBundle(f"bundle incomplete: {len(not_converted)} of {len(recipe.targets)} targets did not convert "
                               f"({', '.join(f.key for f in bundled.failed)}); the {len(bundled.manifest['artifacts'])} that did "
                               f"pass the gate; bundle and report kept at {final}",
                               not_converted=not_converted, bundle_dir=str(final), summary=result.summary(),
                               fix=f"fix or drop the failed targets (below; backend log: {log_path}), or pass --strict for all or nothing")
    return result
