"""The export pipeline: wiring only; each stage's logic is its package's ``stage.run``. Steps, in order:

1. load      — the trained model and its contract (spec, checkpoint, provenance)
2. compress  — optional pruning, on a copy; the device contract baked around the network
3. convert   — first, once, the evaluation set (calibration must not overlap it); then one artifact per target
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
from toolkit.errors import ConversionError, VerificationFailed
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


def run_stages(context: Context, *, console=None) -> bundle.Bundled:
    """Every stage in order, into ``context.staging``."""
    step = _steps(STAGES, console)
    with step("load") as run:
        loaded = run(context, context.recipe.model)
    with step("compress") as run:
        compressed = run(context, loaded)
    with step("convert") as run:
        evaluated = evaluation.run(context, compressed)
        search = verify.mixed_precision_search(context, compressed, evaluated)
        converted = run(context, compressed, evaluation_images=evaluated.data.inputs, mixed_precision=search)
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
    log_path: Path  # removed after a successful export

    @property
    def passed(self) -> bool:
        return bool(self.manifest["verdict"]["passed"])

    def summary(self) -> dict:
        return {
            "bundle": str(self.bundle_dir),
            "passed": self.passed,
            "artifacts": [{"path": a["path"], "format": a["format"], "precision": a["precision"], "sha256": a["sha256"],
                           "size_bytes": a["size_bytes"], "passed": a["verification"]["passed"],
                           "check": a["verification"]["check"]} for a in self.manifest["artifacts"]],
        }


def export(recipe: Recipe, *, recipe_path: Path, out_dir: Path, force: bool = False, console=None) -> ExportResult:
    """Run every stage; write the bundle to ``out_dir/<recipe.name>`` atomically.

    Raises ``ConversionError`` (nothing written) or ``VerificationFailed`` (bundle written, gate failed).
    """
    from toolkit.bundle.writer import commit_bundle, discard, staging_dir

    final = out_dir / recipe.name
    staging = staging_dir(out_dir, recipe.name, force=force)
    log_fd, log_name = tempfile.mkstemp(prefix=f"skinkit-{recipe.name}-", suffix=".log")
    os.close(log_fd)
    log_path = Path(log_name)  # kept only when an export fails, for the backend's own messages
    context = Context(recipe=recipe, recipe_path=recipe_path.resolve(), staging=staging, log_path=log_path)
    try:
        bundled = run_stages(context, console=console)
        commit_bundle(staging, final)
    except BaseException as exc:
        discard(staging)
        if isinstance(exc, ConversionError) and exc.fix:
            exc.fix += f" (backend log: {log_path})"
        raise
    log_path.unlink(missing_ok=True)
    result = ExportResult(final, bundled.manifest, log_path)
    if not result.passed:
        from toolkit.verify.gate import failed_criteria

        failures = [line for a in bundled.manifest["artifacts"] for line in failed_criteria(a["path"], a["verification"]["criteria"])]
        failures += failed_criteria("pruning", verify.pruning_criteria(bundled.manifest.get("compression")))
        raise VerificationFailed(f"verification gate failed for {len(failures)} criteria; bundle and report kept at {final}",
                                 failures=failures, bundle_dir=str(final),
                                 fix="see report.md; loosen tolerances only if the drop is acceptable")
    return result
