"""Stage 5, benchmark: host latency of every artifact next to the float PyTorch reference, with the
runners verification built; and each artifact's estimated latency per device profile (``devices.estimate``), from
which the bundle names the artifact to ship per device (``toolkit.benchmark.recommend``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from toolkit import progress
from toolkit.verify.stage import Verified

if TYPE_CHECKING:
    from toolkit.benchmark.devices import DeviceProfile
    from toolkit.context import Context
    from toolkit.convert.stage import FailedTarget


@dataclass(frozen=True)
class Benchmarked:
    verified: Verified
    artifacts: dict[str, dict]  # artifact file name -> latency figures, or why it was skipped
    reference: dict | None  # the float PyTorch model's; None when the recipe turns benchmarking off
    estimates: dict[str, list[dict]] = field(default_factory=dict)  # artifact file name -> one estimate per profile
    profiles: tuple[DeviceProfile, ...] = ()  # the device profiles estimated for

    @property
    def failed(self) -> tuple[FailedTarget, ...]:
        """The recipe targets that did not convert: nothing of theirs to time."""
        return self.verified.failed


def run(context: Context, verified: Verified) -> Benchmarked:
    import torch

    from toolkit._io import captured
    from toolkit.benchmark import measure_latency
    from toolkit.benchmark.cost import artifact_cost
    from toolkit.benchmark.devices import estimate, load_profiles
    from toolkit.convert.cache import ConversionCache

    cfg = context.recipe.benchmark
    if not cfg.enabled:
        return Benchmarked(verified=verified, artifacts={}, reference=None)
    x = verified.evaluation.x[:1]  # one evaluation image, already in the contract's form
    wrapped = verified.converted.compressed.wrapped
    torch.set_num_threads(cfg.threads)
    runs = cfg.warmup + cfg.repeats
    with torch.inference_mode(), progress.step("benchmark", "PyTorch fp32 reference", total=runs, unit="runs") as step:
        ref = measure_latency(progress.counted(lambda v: wrapped(torch.from_numpy(v)), step), x, warmup=cfg.warmup, repeats=cfg.repeats,
                              max_seconds=cfg.max_seconds)
        step.finish(f"p50 {ref['p50_ms']:.2f} ms")
    ref["runtime"] = f"PyTorch {torch.__version__} eager fp32, {cfg.threads} threads"
    bench = {}
    for a in verified.converted.artifacts:
        runner = verified.runners.get(a.filename)
        if runner is None:
            bench[a.filename] = {"skipped": "the artifact could not be executed (see verification)"}
            continue
        if not runner.timed:
            bench[a.filename] = {"skipped": "Core ML executes on macOS only; the reference interpreter's latency means nothing"}
            continue
        with progress.step("benchmark", a.filename, total=runs, unit="runs") as step:
            b = measure_latency(progress.counted(runner.run, step), x, warmup=cfg.warmup, repeats=cfg.repeats,
                              max_seconds=cfg.max_seconds)
            step.finish(f"p50 {b['p50_ms']:.2f} ms")
        b["runtime"], b["threads"] = runner.check, cfg.threads
        if hasattr(runner, "release"):  # one artifact's runtime held at a time
            runner.release()
        b["ratio_to_torch_fp32"] = round(b["p50_ms"] / ref["p50_ms"], 3)
        bench[a.filename] = b
    profiles = tuple(load_profiles())
    estimates = {}
    cache = ConversionCache(context.cache) if context.cache else None
    for a in verified.converted.artifacts:
        if a.filename in verified.runners:  # read back by its runtime: its graph can be costed
            with captured(context.log_path):  # a converter library imported for the first time here says hello
                cost = artifact_cost(a.path, cache)
            estimates[a.filename] = [estimate(p, cost, a.precision) for p in profiles]
    return Benchmarked(verified=verified, artifacts=bench, reference=ref, estimates=estimates, profiles=profiles)
