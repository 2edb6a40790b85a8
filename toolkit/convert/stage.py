"""Stage 3, convert: one artifact per recipe target, from the compressed network with its device
contract. Full-integer targets are calibrated on images disjoint from the evaluation set; a
``keep_float: auto`` target searches the fewest layers to keep float with the search the caller gives.
A target that fails to convert is recorded (``FailedTarget``) and the others still convert, unless the
caller asks for all or nothing (``strict``); when none converts, the stage raises."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit import progress
from toolkit.compress.stage import Compressed
from toolkit.convert.base import Artifact, artifact_filename
from toolkit.errors import ConversionError, SkinkitError

if TYPE_CHECKING:
    import numpy as np

    from toolkit.compress.mixed import Probe
    from toolkit.context import Context
    from toolkit.convert.cache import ConversionCache
    from toolkit.recipe import Recipe, Target
    from toolkit.registry import ModelSpec


@dataclass(frozen=True)
class FailedTarget:
    """A recipe target that did not convert, and why. It travels with the stage records to the manifest
    (``failed_targets``), which marks the bundle incomplete."""

    key: str  # the recipe target's key, e.g. coreml_fp16
    format: str
    precision: str
    error: str  # the cause, naming the model and the target
    fix: str | None = None
    op: str | None = None  # the torch op the converter failed on, where known
    module: str | None = None  # the PyTorch module (path and class) that calls it, where known

    @classmethod
    def of(cls, target: Target, err: ConversionError) -> FailedTarget:
        return cls(key=target.key, format=target.format, precision=target.precision, error=err.cause, fix=err.fix,
                   op=err.op, module=err.module)

    def one_line(self) -> str:
        return f"{self.key} not converted: {self.error}" + (f" — fix: {self.fix}" if self.fix else "")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Converted:
    compressed: Compressed
    artifacts: tuple[Artifact, ...]
    calibration: dict | None  # what calibrated the full-integer targets; None when none is calibrated
    failed: tuple[FailedTarget, ...] = ()  # targets that did not convert, in recipe order

    @property
    def complete(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class MixedPrecisionSearch:
    """How a ``keep_float: auto`` target is judged; verification builds it (it gates on the evaluation set)."""

    rank: Callable[[Artifact], list[str]]  # the plainly quantized artifact's layers, noisiest first
    probe: Callable[[Artifact, Target, tuple[str, ...]], Probe]  # the gate on an artifact keeping those layers float


@dataclass(frozen=True)
class Ahead:
    """Targets a second process converts into ``cache`` while this one converts the others (``toolkit.pipeline``):
    they are taken last, each from that cache once ``wait()`` returns, and converted here after all if not there.
    ``close()`` stops the process if it is still running."""

    keys: frozenset[str]
    cache: ConversionCache
    wait: Callable[[], None]
    close: Callable[[], None]


def second_process_share(targets: list[Target], others: int) -> list[Target]:
    """Which of ``targets`` (converting here otherwise) a second process converts: the costliest format group
    (``Backend.conversion_cost`` per target; TFLite's variants share one float lowering, so a group stays together),
    when something else (another group, or ``others`` targets that must convert here) is left to convert meanwhile."""
    from toolkit.backends import get_backend

    groups: dict[str, list[Target]] = {}
    for t in targets:
        groups.setdefault(t.format, []).append(t)
    if not groups or len(groups) + (others > 0) < 2:
        return []
    best = max(groups, key=lambda f: (get_backend(f).conversion_cost * len(groups[f]), f))
    return groups[best]


def run(context: Context, compressed: Compressed, *, evaluation_images: np.ndarray | None,
        mixed_precision: MixedPrecisionSearch | None = None, strict: bool = False,
        on_artifact: Callable[[Artifact], None] | None = None, ahead: Ahead | None = None, check_outputs: bool = True,
        cached_only_skipped: bool = False) -> Converted:
    """``evaluation_images``: the evaluation set's uint8 images, which calibration must not share. A target
    that fails to convert is recorded and the next one converted; with ``strict`` the first failure raises.
    Raises ``ConversionError`` when no target converts. Targets whose runtime is slow (``Backend.slow_runtime``)
    convert first, and ``on_artifact`` is called with each artifact as it is written (verification starts running
    those in the background); the artifacts are returned in recipe order. ``ahead``: a second process converting
    some targets meanwhile (taken last, from the cache when there, else from that process); it is closed on return.
    ``check_outputs``: False where the caller has already checked that the network's outputs are static.
    ``cached_only_skipped``: targets already in the cache are left there, not copied (the second process's own run).
    ``evaluation_images`` None: calibration is not checked against them (the second process: the export checks)."""
    import torch

    from toolkit.convert.base import check_static_outputs
    from toolkit.convert.cache import network_digest
    from toolkit.load.stage import input_contract

    spec, recipe = compressed.spec, context.recipe
    sample = torch.rand(*input_contract(recipe).input_shape(spec)) * (255.0 if recipe.input.pixel_range == "0-255" else 1.0)
    out_dir = context.staging / "artifacts"
    out_dir.mkdir(exist_ok=True)
    calibration, calibration_report = calibration_inputs(context, spec, evaluation_images)
    meta = artifact_metadata(recipe, spec)
    cache = _cache(context)
    network = network_digest(compressed.wrapped)
    if mixed_precision is None and any(t.keep_float == "auto" for t in recipe.targets):
        raise ValueError("targets with keep_float: auto need a mixed-precision search: pass mixed_precision")

    def options_of(t: Target) -> dict:
        return {**t.backend_options.model_dump(), "pixel_range": recipe.input.pixel_range, "layout": recipe.input.layout,
                "calibration": calibration, "metadata": meta, "keep_float": t.keep_float if isinstance(t.keep_float, tuple) else ()}

    keys = {t.key: None if t.keep_float == "auto" else _key(compressed, sample, t, options_of(t), network) for t in recipe.targets}
    cached = {k for k, key in keys.items() if key is not None and cache is not None and cache.has(key)}
    if ahead is not None and ahead.keys <= cached:  # nothing left for the second process: stop it now
        ahead.close()
        ahead = None
    if cached_only_skipped and cached:
        recipe = recipe.model_copy(update={"targets": tuple(t for t in recipe.targets if t.key not in cached)})
        context = replace(context, recipe=recipe)
        if not recipe.targets:
            return Converted(compressed=compressed, artifacts=(), calibration=calibration_report)
    try:
        # Every target already converted (the cache holds only conversions that passed it): this network passed the check.
        if check_outputs and len(cached) < len(keys):
            check_static_outputs(compressed.wrapped, sample, spec.name)
        return _convert_all(context, compressed, sample, out_dir, calibration_report, meta, cache, keys, cached, options_of,
                            ahead, mixed_precision, strict, on_artifact)
    finally:
        if ahead is not None:
            ahead.close()


def _convert_all(context, compressed, sample, out_dir, calibration_report, meta, cache, keys, cached_before, options_of,
                 ahead, mixed_precision, strict, on_artifact) -> Converted:
    """Each target in turn (slow runtimes first, a second process's share last); ``cached_before``: the keys of the
    targets the cache held when the export began."""
    from toolkit._io import captured
    from toolkit.backends import get_backend
    from toolkit.convert.base import convert_target, describe_failure

    spec, recipe = compressed.spec, context.recipe
    artifacts, failed, errors, position = [], [], [], {}
    order = sorted(recipe.targets, key=lambda t: (not get_backend(t.format).slow_runtime, ahead is not None and t.key in ahead.keys))
    for i, t in enumerate(order, 1):
        with progress.step("convert", t.key, message=f"target {i}/{len(recipe.targets)}") as step:
            options = options_of(t)
            before = set(out_dir.iterdir())
            try:
                with captured(context.log_path):
                    if t.keep_float == "auto":
                        options["keep_float"], search = _keep_float(context, compressed, t, sample, options, mixed_precision)
                    key, artifact, source = keys[t.key], None, ""
                    filename = artifact_filename(spec.name, t.format, t.variant)
                    if t.key in cached_before:
                        artifact, source = cache.get(key, out_dir, filename), " (from the conversion cache)"
                    if artifact is None and key is not None and ahead is not None and t.key in ahead.keys:
                        ahead.wait()
                        artifact = ahead.cache.get(key, out_dir, filename, recorded_seconds=True)
                        source = " (converted by a second process meanwhile)"
                    cached = artifact is not None
                    if not cached:
                        if key is not None:  # the artifact says which conversion made it
                            options["metadata"] = {**meta, "conversion_sha256": key}
                        artifact = convert_target(compressed.wrapped, sample, spec, fmt=t.format, precision=t.precision,
                                                  out_dir=out_dir, stem=spec.name, options=options, variant=t.variant)
                        if key is not None and cache is not None:
                            cache.put(key, artifact)
                        source = ""
                    if t.keep_float == "auto":
                        artifact.details["mixed_precision"] = search
                    artifacts.append(artifact)
                    position[artifact.filename] = recipe.targets.index(t)
                if on_artifact is not None:
                    on_artifact(artifact)
                step.finish(artifact.filename + source)
                continue
            except ConversionError as exc:  # the backend's own check: it names the target and the fix
                err, cause = exc, None
            except SkinkitError:
                raise
            except Exception as exc:  # a backend's own failure: name model, target, op, module and fix
                err, cause = describe_failure(exc, t.format, spec.name, module=compressed.wrapped, sample=sample), exc
            if strict:
                raise err from cause
            for leftover in set(out_dir.iterdir()) - before:  # a half-written file must not reach the bundle
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            failed.append(FailedTarget.of(t, err))
            errors.append((err, cause))
            step.finish("not converted")
    artifacts.sort(key=lambda a: position[a.filename])
    rank = {t.key: i for i, t in enumerate(recipe.targets)}
    failed.sort(key=lambda f: rank[f.key])
    if not artifacts:
        err, cause = errors[0] if len(errors) == 1 else (_none_converted(failed), None)
        raise err from cause
    if cache is not None:
        cache.trim(max_bytes())
    return Converted(compressed=compressed, artifacts=tuple(artifacts), calibration=calibration_report, failed=tuple(failed))


def _cache(context: Context):
    from toolkit.convert.cache import ConversionCache

    return None if not context.cache else ConversionCache(context.cache)


def _key(compressed: Compressed, sample, target: Target, options: dict, network: bytes) -> str | None:
    """The conversion cache's key of ``target`` (``toolkit.convert.cache``): calibration images count only for a
    precision calibrated on them."""
    from toolkit.backends.precisions import PRECISIONS
    from toolkit.convert.cache import conversion_key

    calibration = options["calibration"] if PRECISIONS[target.precision].calibrated else None
    try:
        return conversion_key(compressed.wrapped, sample, compressed.spec, fmt=target.format, precision=target.precision,
                              variant=target.variant, options=options, calibration=calibration, network=network)
    except TypeError:  # an option with no stable form (a user's object): this target is neither cached nor keyed
        return None


def max_bytes() -> int:
    """How large the local conversion cache may grow (``SKINKIT_CACHE_MAX_GB``, default 5): least recently used
    entries go first."""
    import os

    try:
        return int(float(os.environ.get("SKINKIT_CACHE_MAX_GB", "5")) * 1e9)
    except ValueError:
        return int(5e9)


def _none_converted(failed: list[FailedTarget]) -> ConversionError:
    """One error for several targets that all failed to convert: each target's cause, every distinct fix."""
    fixes = list(dict.fromkeys(f.fix for f in failed if f.fix))
    return ConversionError(f"no target converted ({len(failed)} failed): " + "; ".join(f"{f.key}: {f.error}" for f in failed),
                           fix="; ".join(fixes) or None, op=", ".join(dict.fromkeys(f.op for f in failed if f.op)) or None,
                           module="; ".join(dict.fromkeys(f.module for f in failed if f.module)) or None)


def calibration_inputs(context: Context, spec: ModelSpec, evaluation_images: np.ndarray | None) -> tuple[np.ndarray | None, dict | None]:
    """Contract-shaped calibration images, only when a target needs activation ranges, checked to share
    no image with the evaluation set; and what they were (for the manifest)."""
    from toolkit.backends.precisions import PRECISIONS
    from toolkit.context import portable
    from toolkit.convert.cache import section_images
    from toolkit.data.calibration import check_disjoint, load_calibration
    from toolkit.load.stage import contract_images

    recipe = context.recipe
    if not any(PRECISIONS[t.precision].calibrated for t in recipe.targets):
        return None, None
    cfg = recipe.calibration
    with progress.step("calibrate", "calibration images") as step:
        if cfg.source == "manifest":
            images, report = load_calibration(context.resolve(cfg.manifest), spec, allow_unreadable=cfg.allow_unreadable, limit=cfg.n)
            report["manifest"] = portable(context.resolve(cfg.manifest), context.recipe_dir)  # no build-machine path in the bundle
        else:
            images = section_images(context, spec, cfg, split="calib", labelled=False).inputs
            report = {"source": cfg.source, "images": len(images), "folder": str(cfg.folder) if cfg.folder else None}
        if evaluation_images is not None:
            check_disjoint(images, evaluation_images)
        step.finish(f"{len(images)} images ({cfg.source})" + (", none shared with evaluation" if evaluation_images is not None else ""))
    report["disjoint_from_evaluation"] = evaluation_images is not None
    return contract_images(images, recipe.input.pixel_range, recipe.input.layout), report


def artifact_metadata(recipe: Recipe, spec: ModelSpec) -> dict:
    """What every artifact carries about itself (TFLite metadata entry, Core ML user-defined fields)."""
    from toolkit import __version__
    from toolkit.load.stage import input_contract

    return {
        "bundle": recipe.name, "version": recipe.version, "model": spec.name, "task": spec.task, "description": spec.description,
        "licence": spec.licence, "labels": list(spec.labels), "input": input_contract(recipe).describe(spec),
        "outputs": [{"name": o.name, "description": o.description, "unit": o.unit} for o in spec.outputs],
        "producer": f"skinkit {__version__}",
    }


def target_of(recipe: Recipe, spec: ModelSpec, artifact: Artifact) -> Target | None:
    """The recipe target an artifact was built for (by its file name), or None."""
    return next((t for t in recipe.targets if t.format == artifact.format
                 and artifact.filename == artifact_filename(spec.name, t.format, t.variant)), None)


def _keep_float(context: Context, compressed: Compressed, target: Target, sample, options: dict,
                search: MixedPrecisionSearch) -> tuple[tuple[str, ...], dict]:
    """The fewest layers to keep float for the target to pass its gate (``toolkit.compress.mixed``)."""
    from toolkit.compress.mixed import search_keep_float
    from toolkit.convert.base import convert_target

    spec = compressed.spec
    with tempfile.TemporaryDirectory(dir=context.staging, prefix=".mixed-") as tmp:
        def build(keep: tuple[str, ...]) -> Artifact:
            return convert_target(compressed.wrapped, sample, spec, fmt=target.format, precision=target.precision,
                                  out_dir=Path(tmp), stem=spec.name, options={**options, "keep_float": keep},
                                  variant=f"probe{len(keep)}")

        plain = build(())
        ranking = search.rank(plain)
        result = search_keep_float(ranking, lambda keep: search.probe(plain if not keep else build(keep), target, keep),
                                   max_layers=target.keep_float_max)
    keep = tuple(result["kept_float"]) if result["met"] else tuple(ranking[:result["searched_up_to"]])
    return keep, result
