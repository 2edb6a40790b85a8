"""The export pipeline. Steps, in order:

1. load      — the trained model and its contract (spec, checkpoint, provenance)
2. compress  — optional pruning, on a copy
3. convert   — one artifact per recipe target (ONNX, TFLite, Core ML)
4. verify    — each artifact against the float model on held-out data; the gate
5. benchmark — host latency of each artifact next to the PyTorch reference
6. bundle    — manifest, report and artifacts, renamed into place atomically

Each stage declares the one it follows; the order is validated before anything runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from toolkit.errors import ConversionError, SkinkitError, VerificationError, VerificationFailed
from toolkit.recipe import Recipe


@dataclass(frozen=True)
class ExportState:
    """What flows between stages. Each stage returns a new state; none mutates the one it got."""

    recipe: Recipe
    recipe_path: Path
    staging: Path
    log_path: Path
    loaded: object = None  # LoadedModel
    model: object = None  # the (compressed) network
    wrapped: object = None  # DeviceContract around it
    compression: dict | None = None
    artifacts: tuple = ()
    data: object = None
    verification: dict = field(default_factory=dict)  # artifact filename -> result
    runners: dict = field(default_factory=dict)  # artifact filename -> Runner, built once by verify
    skin_tone: dict | None = None  # measured ITA° and groups of the evaluation images
    gate_inputs: object = None  # GateInputs: evaluation images, float outputs, skin tone, bootstrap (built once)
    calibration: dict | None = None  # what calibrated the full-integer targets
    benchmark: dict = field(default_factory=dict)
    reference_benchmark: dict | None = None
    manifest: dict | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    after: str | None
    run: Callable[[ExportState], ExportState]
    describe: str


def validate_order(stages: tuple[Stage, ...]) -> None:
    if not stages or stages[0].after is not None:
        raise ValueError("the first stage must follow nothing")
    for prev, cur in zip(stages, stages[1:]):
        if cur.after != prev.name:
            raise ValueError(f"stage {cur.name!r} must follow {cur.after!r}, not {prev.name!r}")


def _contract(recipe: Recipe):
    from toolkit.load.contract import InputContract

    return InputContract(layout=recipe.input.layout, pixel_range=recipe.input.pixel_range)


def _load(s: ExportState) -> ExportState:
    from toolkit.load import load_model

    m = s.recipe.model
    loaded = load_model(m.name, checkpoint=m.checkpoint, spec_from=m.spec_from, base_dir=s.recipe_path.parent)
    return replace(s, loaded=loaded, model=loaded.module)


def _compress(s: ExportState) -> ExportState:
    from toolkit.compress import MagnitudePruner
    from toolkit.load.contract import DeviceContract

    model, report = s.model, None
    p = s.recipe.compress.pruning
    if p is not None and p.method == "magnitude":
        model, report = MagnitudePruner(p.sparsity, p.scope, p.exclude, dict(p.overrides)).compress(model)
    elif p is not None:
        model, report = _prune_channels(s, p)
    wrapped = DeviceContract(model, s.loaded.spec, _contract(s.recipe)).eval()
    return replace(s, model=model, wrapped=wrapped, compression=report)


def _prune_channels(s: ExportState, p):
    """Remove channels, then (optionally) distil from the float model on unlabeled images."""
    import torch

    from toolkit._io import captured
    from toolkit.compress.channels import ChannelPruner, distill
    from toolkit.data.tasks import task_data
    from toolkit.load.contract import to_network_input

    spec = s.loaded.spec
    with captured(s.log_path):
        model, report = ChannelPruner(p.sparsity, p.exclude, dict(p.overrides)).compress(s.model, torch.zeros(1, 3, *spec.input_size))
    if p.distill is not None:
        d = p.distill
        images = to_network_input(task_data(spec, d.n, split="train", seed=d.seed).inputs, spec)
        report["distillation"] = distill(model, s.model, images, epochs=d.epochs, lr=d.lr, seed=d.seed)
    return model, report


def _images(s: ExportState, cfg, *, split: str):
    """The images a recipe section names: the synthetic generator's ``split``, or a folder
    (relative to the recipe)."""
    from toolkit.data.folder import load_folder
    from toolkit.data.tasks import task_data

    spec = s.loaded.spec
    if cfg.source == "folder":
        folder = cfg.folder if cfg.folder.is_absolute() else (s.recipe_path.parent / cfg.folder)
        return load_folder(spec, folder.resolve(), limit=cfg.n)
    return task_data(spec, cfg.n, split=split, seed=cfg.seed)


def _calibration_inputs(s: ExportState, evaluation_images) -> tuple[object, dict | None]:
    """Contract-shaped calibration images, only when a target needs activation ranges, checked to share
    no image with the evaluation set; and what they were (for the manifest)."""
    from toolkit.convert.base import PRECISIONS
    from toolkit.data.calibration import check_disjoint, load_calibration
    from toolkit.verify.gate import contract_images

    if not any(PRECISIONS[t.precision].calibrated for t in s.recipe.targets):
        return None, None
    cfg = s.recipe.calibration
    if cfg.source == "manifest":
        path = cfg.manifest if cfg.manifest.is_absolute() else s.recipe_path.parent / cfg.manifest
        images, report = load_calibration(path.resolve(), s.loaded.spec, allow_unreadable=cfg.allow_unreadable, limit=cfg.n)
    else:
        images = _images(s, cfg, split="calib").inputs
        report = {"source": cfg.source, "images": len(images), "folder": str(cfg.folder) if cfg.folder else None}
    check_disjoint(images, evaluation_images)
    report["disjoint_from_evaluation"] = True
    return contract_images(images, s.recipe.input.pixel_range, s.recipe.input.layout), report


def artifact_metadata(s: ExportState) -> dict:
    """What every artifact carries about itself (TFLite metadata entry, Core ML user-defined fields)."""
    from toolkit import __version__

    spec, r = s.loaded.spec, s.recipe
    return {
        "bundle": r.name, "version": r.version, "model": spec.name, "task": spec.task, "description": spec.description,
        "licence": spec.licence, "labels": list(spec.labels), "input": _contract(r).describe(spec),
        "outputs": [{"name": o.name, "description": o.description, "unit": o.unit} for o in spec.outputs],
        "producer": f"skinkit {__version__}", "recipe_sha256": r.sha256(),
    }


def _convert(s: ExportState) -> ExportState:
    import torch

    from toolkit._io import captured
    from toolkit.convert.base import convert_target, describe_failure

    spec = s.loaded.spec
    sample = torch.rand(*_contract(s.recipe).input_shape(spec)) * (255.0 if s.recipe.input.pixel_range == "0-255" else 1.0)
    out_dir = s.staging / "artifacts"
    out_dir.mkdir(exist_ok=True)
    s = replace(s, gate_inputs=_gate_inputs(s))  # the evaluation set: calibration must not overlap it
    calibration, calibration_report = _calibration_inputs(s, s.gate_inputs.data.inputs)
    meta = artifact_metadata(s)
    artifacts = []
    for t in s.recipe.targets:
        options = {**t.backend_options.model_dump(), "pixel_range": s.recipe.input.pixel_range,
                   "layout": s.recipe.input.layout, "calibration": calibration, "metadata": meta,
                   "keep_float": t.keep_float if isinstance(t.keep_float, tuple) else ()}
        try:
            with captured(s.log_path):
                if t.keep_float == "auto":
                    options["keep_float"], search = _mixed_precision(s, t, sample, options)
                artifact = convert_target(s.wrapped, sample, spec, fmt=t.format, precision=t.precision,
                                          out_dir=out_dir, stem=spec.name, options=options, variant=t.variant)
                if t.keep_float == "auto":
                    artifact.details["mixed_precision"] = search
                artifacts.append(artifact)
        except SkinkitError:
            raise
        except Exception as exc:  # a backend's own failure: name model, target and fix
            raise describe_failure(exc, t.format, spec.name, module=s.wrapped, sample=sample) from exc
    return replace(s, artifacts=tuple(artifacts), calibration=calibration_report)


@dataclass(frozen=True)
class GateInputs:
    data: object  # TaskData
    x: object  # contract-shaped inputs
    ref: object  # float outputs
    tone: object  # SkinTone
    boot: object  # Bootstrap


def _gate_inputs(s: ExportState) -> GateInputs:
    """What every gate run compares against, built once per export."""
    from toolkit.verify import subgroups
    from toolkit.verify.gate import contract_inputs, reference_outputs
    from toolkit.verify.stats import Bootstrap

    if s.gate_inputs is not None:
        return s.gate_inputs
    data = _evaluation_data(s)
    x = contract_inputs(data, s.recipe.input.pixel_range, s.recipe.input.layout)
    ev = s.recipe.evaluation
    return GateInputs(data=data, x=x, ref=reference_outputs(s.wrapped, x), tone=subgroups.measure(data.inputs, data.skin_masks),
                      boot=Bootstrap.draw(len(data), replicates=ev.bootstrap, seed=ev.seed))


def _gate(s: ExportState, artifact, runner, g: GateInputs, target=None) -> dict:
    """The gate on one artifact: its precision tier's tolerance with the recipe's overrides (the tier's,
    then the target's own; the target is found from the artifact's file name unless given)."""
    from toolkit.verify.gate import resolve_tolerance, verify_artifact

    target = target or target_of(s.recipe, s.loaded.spec, artifact)
    overrides = (s.recipe.tolerances.get(artifact.precision), target.tolerance if target is not None else None)
    tol = resolve_tolerance(s.loaded.spec, artifact.precision, *overrides)
    ev = s.recipe.evaluation
    judged = next((o.noninferiority for o in reversed(overrides) if o is not None and o.noninferiority), ev.noninferiority)
    # A Core ML classifier returns probabilities: compare them with the reference's.
    ref = softmax(g.ref) if artifact.details.get("output_transform") == "softmax" else g.ref
    res = verify_artifact(artifact, runner, spec=s.loaded.spec, data=g.data, x=g.x, ref=ref, tolerance=tol,
                          layout=s.recipe.input.layout, tone=g.tone, boot=g.boot, noninferiority=judged,
                          min_group_size=ev.min_group_size)
    res["tolerance"] = {**{k: v for k, v in tol.__dict__.items() if v not in (None, {})}, "noninferiority": judged}
    return res


def target_of(recipe: Recipe, spec, artifact):
    """The recipe target an artifact was built for (by its file name), or None."""
    from toolkit.convert.base import artifact_filename

    return next((t for t in recipe.targets if t.format == artifact.format
                 and artifact.filename == artifact_filename(spec.name, t.format, t.variant)), None)


def _mixed_precision(s: ExportState, target, sample, options: dict) -> tuple[tuple[str, ...], dict]:
    """The fewest layers to keep float for the target to pass its gate (``toolkit.compress.mixed``)."""
    from toolkit.compress.mixed import Probe, search_keep_float
    from toolkit.convert.base import convert_target, tree_size
    from toolkit.verify.culprit import locate
    from toolkit.verify.gate import failed_criteria
    from toolkit.backends import get_backend

    spec, g, inp = s.loaded.spec, s.gate_inputs, s.recipe.input
    with tempfile.TemporaryDirectory(dir=s.staging, prefix=".mixed-") as tmp:
        def build(keep: tuple[str, ...]):
            return convert_target(s.wrapped, sample, spec, fmt=target.format, precision=target.precision, out_dir=Path(tmp),
                                  stem=spec.name, options={**options, "keep_float": keep}, variant=f"probe{len(keep)}")

        plain = build(())
        ranked = locate(s.model, g.data.inputs[:s.recipe.evaluation.culprit_images], spec, fmt=target.format,
                        path=plain.path, precision=target.precision)["ranking"]
        ranking = [r["layer"] for r in ranked if r.get("artifact_tensor")]

        def evaluate(keep: tuple[str, ...]) -> Probe:
            artifact = plain if not keep else build(keep)
            runner = get_backend(artifact.format).runner(artifact.path, threads=s.recipe.benchmark.threads, layout=inp.layout,
                                                         pixel_range=inp.pixel_range)
            res = _gate(s, artifact, runner, g, target)
            return Probe(keep=keep, passed=res["passed"], failed=tuple(failed_criteria(f"keep {len(keep)}", res["criteria"])),
                         size_bytes=tree_size(artifact.path), loss=(res.get("task_metric") or {}).get("drop"))

        result = search_keep_float(ranking, evaluate, max_layers=target.keep_float_max)
    keep = tuple(result["kept_float"]) if result["met"] else tuple(ranking[:result["searched_up_to"]])
    return keep, result


def _evaluation_data(s: ExportState):
    return _images(s, s.recipe.evaluation, split=s.recipe.evaluation.split)


def _verify(s: ExportState) -> ExportState:
    from toolkit._io import captured
    from toolkit.backends import get_backend

    inp, ev = s.recipe.input, s.recipe.evaluation
    g = _gate_inputs(s)
    results, runners = {}, {}
    for a in s.artifacts:
        try:
            with captured(s.log_path):
                runner = get_backend(a.format).runner(a.path, threads=s.recipe.benchmark.threads, layout=inp.layout,
                                                      pixel_range=inp.pixel_range)
            runners[a.filename] = runner
            res = _gate(s, a, runner, g)
        except VerificationError as exc:  # could not execute it: a failed check, never a pass
            res = {"check": "not executed", "passed": False, "error": exc.one_line(),
                   "criteria": [{"name": "artifact executes", "value": exc.cause, "bound": True, "op": "==", "passed": False}]}
        if "metrics" in res and (ev.culprits == "all" or (ev.culprits == "failed" and not res["passed"])):
            res["culprits"] = _culprits(s, a, g.data)
        results[a.filename] = res
    return replace(s, data=g.data, verification=results, runners=runners, skin_tone=skin_tone_summary(g.tone, g.data), gate_inputs=g,
                   compression=_against_original(s, g))


def _against_original(s: ExportState, g) -> dict | None:
    """For a compressed model, its float metrics against the uncompressed original's on the evaluation
    set: artifacts are gated against the compressed float model, so this is the cost of compression."""
    from toolkit.load.contract import DeviceContract
    from toolkit.verify.gate import drop_criterion, by_group, compare_outputs, reference_outputs, to_nchw, worst_group_criterion

    if s.compression is None:
        return None
    spec, layout, ev = s.loaded.spec, s.recipe.input.layout, s.recipe.evaluation
    original = DeviceContract(s.loaded.module, spec, _contract(s.recipe)).eval()
    before = reference_outputs(original, g.x)
    rows = compare_outputs(spec, g.ref, before, g.data.targets, g.boot, layout)
    groups = by_group(spec, to_nchw(g.ref, spec, layout), to_nchw(before, spec, layout), g.data.targets, g.tone, g.boot,
                      probabilities=False)
    p = s.recipe.compress.pruning
    criteria = [c for c in (
        drop_criterion(spec.metric, rows[spec.metric], p.max_metric_drop, ev.noninferiority, versus="original float"),
        worst_group_criterion(spec.metric, groups, p.max_group_drop, ev.min_group_size, versus="original float"),
    ) if c is not None] if p is not None else []
    return {**s.compression, "against_original": {
        "metric": spec.metric, **rows[spec.metric],
        "by_group": {k: {"n": v["n"], **v["metrics"][spec.metric]} for k, v in groups.items()},
        "criteria": criteria, "passed": all(c["passed"] for c in criteria)}}


def pruning_criteria(compression: dict | None) -> list[dict]:
    """The pruning budget's criteria (compressed float model against the original); none without a budget."""
    return ((compression or {}).get("against_original") or {}).get("criteria", [])


def compression_passed(compression: dict | None) -> bool:
    """Whether the compressed float model stayed within the recipe's pruning budget (true without one)."""
    return all(c["passed"] for c in pruning_criteria(compression))


def _culprits(s: ExportState, artifact, data) -> dict:
    """Which layers the artifact degrades; a diagnosis, so its own failure is reported, not raised."""
    from toolkit._io import captured
    from toolkit.verify.culprit import locate

    try:
        with captured(s.log_path):
            return locate(s.model, data.inputs[:s.recipe.evaluation.culprit_images], s.loaded.spec,
                          fmt=artifact.format, path=artifact.path, precision=artifact.precision)
    except Exception as exc:  # noqa: BLE001 — recorded in the report next to the gate's verdict
        return {"error": f"culprit localisation failed: {type(exc).__name__}: {exc}"}


def skin_tone_summary(tone, data) -> dict:
    """How the evaluation images were grouped by skin tone, and how that compares with any annotation."""
    from toolkit.verify.subgroups import GROUP_ORDER, agreement_with_annotation

    return {"method": f"ITA° from {tone.method} (CIELab, OpenCV), six Fitzpatrick-proxy bins",
            "groups": {g: tone.groups.count(g) for g in GROUP_ORDER if g in tone.groups},
            "ita": [round(float(v), 3) for v in tone.ita],
            "versus_annotation": agreement_with_annotation(tone, data.ita, data.groups)}


def softmax(z):
    import numpy as np

    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _benchmark(s: ExportState) -> ExportState:
    import torch

    from toolkit.benchmark import measure_latency

    cfg = s.recipe.benchmark
    if not cfg.enabled:
        return s
    x = s.gate_inputs.x[:1]  # one evaluation image, already in the contract's form
    torch.set_num_threads(cfg.threads)
    with torch.inference_mode():
        ref = measure_latency(lambda v: s.wrapped(torch.from_numpy(v)), x, warmup=cfg.warmup, repeats=cfg.repeats)
    ref["runtime"] = f"PyTorch {torch.__version__} eager fp32, {cfg.threads} threads"
    bench = {}
    for a in s.artifacts:
        runner = s.runners.get(a.filename)
        if runner is None:
            bench[a.filename] = {"skipped": "the artifact could not be executed (see verification)"}
            continue
        if not runner.timed:
            bench[a.filename] = {"skipped": "Core ML executes on macOS only; the reference interpreter's latency means nothing"}
            continue
        b = measure_latency(runner.run, x, warmup=cfg.warmup, repeats=cfg.repeats)
        b["runtime"], b["threads"] = runner.check, cfg.threads
        b["ratio_to_torch_fp32"] = round(b["p50_ms"] / ref["p50_ms"], 3)
        bench[a.filename] = b
    return replace(s, benchmark=bench, reference_benchmark=ref)


def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from toolkit import __version__

    out = {"skinkit": __version__, "python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}"}
    for pkg in ("torch", "coremltools", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "onnx", "onnxruntime", "onnxsim", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _bundle(s: ExportState) -> ExportState:
    from toolkit.bundle.manifest import ArtifactEntry, Manifest
    from toolkit.bundle.report import render
    from toolkit.convert.base import file_sha256, tree_size

    spec, r = s.loaded.spec, s.recipe
    entries = []
    for a in s.artifacts:
        v = s.verification[a.filename]
        entries.append(ArtifactEntry(
            path=f"artifacts/{a.filename}", format=a.format, precision=a.precision, sha256=file_sha256(a.path),
            sha256_method="tree" if a.path.is_dir() else "file", size_bytes=tree_size(a.path),
            conversion_seconds=round(a.seconds, 2), structure=a.details,
            verification={"passed": v["passed"], **{k: val for k, val in v.items() if k != "passed"}},
            benchmark=s.benchmark.get(a.filename),
        ))
    passed = [e for e in entries if e.verification["passed"]]
    within_budget = compression_passed(s.compression)
    card_path = s.loaded.provenance.get("checkpoint", "")
    card = Path(card_path).with_suffix(".json")
    training = json.loads(card.read_text()) if card.is_file() else None
    ev = r.evaluation
    manifest = Manifest(
        bundle=r.name, version=r.version,
        created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        model={"name": spec.name, "architecture": spec.architecture, "task": spec.task, "description": spec.description,
               "licence": spec.licence, "metric": spec.metric, **s.loaded.provenance,
               "training_card": training},
        input=_contract(r).describe(spec),
        outputs=[{"name": o.name, "description": o.description, "unit": o.unit} for o in spec.outputs],
        labels=list(spec.labels),
        compression=s.compression,
        calibration=s.calibration,
        evaluation={"source": ev.source, "n": len(s.data), "split": ev.split if ev.source == "synthetic" else None,
                    "seed": ev.seed if ev.source == "synthetic" else None,
                    "folder": str(ev.folder) if ev.folder else None,
                    "skin_tone": s.skin_tone},
        artifacts=entries,
        reference_benchmark=s.reference_benchmark,
        verdict={"passed": len(passed) == len(entries) and within_budget, "artifact_count": len(entries),
                 "passed_count": len(passed), **({"compression_passed": within_budget} if s.compression else {})},
        tools=tool_versions(),
        recipe={"path": str(s.recipe_path), "sha256": r.sha256(), "resolved": r.model_dump(mode="json")},
    )
    data = manifest.model_dump(mode="json")
    (s.staging / "manifest.json").write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    (s.staging / "report.md").write_text(render(data))
    if spec.labels:
        (s.staging / "labels.txt").write_text("\n".join(spec.labels) + "\n")
    return replace(s, manifest=data)


STAGES: tuple[Stage, ...] = (
    Stage("load", None, _load, "load the trained model"),
    Stage("compress", "load", _compress, "compress and bake the device contract"),
    Stage("convert", "compress", _convert, "convert to every target"),
    Stage("verify", "convert", _verify, "verify against float on held-out data"),
    Stage("benchmark", "verify", _benchmark, "measure host latency"),
    Stage("bundle", "benchmark", _bundle, "write manifest and report"),
)
validate_order(STAGES)


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
    log_path = Path(log_name)
    state = ExportState(recipe=recipe, recipe_path=recipe_path.resolve(), staging=staging, log_path=log_path)
    try:
        for i, stage in enumerate(STAGES, 1):
            t0 = time.perf_counter()
            if console:
                console.print(f"[bold]{i}/{len(STAGES)}[/bold] {stage.name}: {stage.describe} …")
            state = stage.run(state)
            if console:
                console.print(f"    done in {time.perf_counter() - t0:.1f} s")
        commit_bundle(staging, final)
    except BaseException as exc:
        discard(staging)
        if isinstance(exc, ConversionError) and exc.fix:
            exc.fix += f" (backend log: {log_path})"
        raise
    log_path.unlink(missing_ok=True)  # kept only when an export fails, for the backend's own messages
    result = ExportResult(final, state.manifest, log_path)
    if not result.passed:
        from toolkit.verify.gate import failed_criteria

        failures = [line for a in state.manifest["artifacts"] for line in failed_criteria(a["path"], a["verification"]["criteria"])]
        failures += failed_criteria("pruning", pruning_criteria(state.manifest.get("compression")))
        raise VerificationFailed(f"verification gate failed for {len(failures)} criteria; bundle and report kept at {final}",
                                 failures=failures, bundle_dir=str(final),
                                 fix="see report.md; loosen tolerances only if the drop is acceptable")
    return result
