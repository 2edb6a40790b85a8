"""Stage 3, convert: one artifact per recipe target, from the compressed network with its device
contract. Full-integer targets are calibrated on images disjoint from the evaluation set; a
``keep_float: auto`` target searches the fewest layers to keep float with the search the caller gives."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.compress.stage import Compressed
from toolkit.convert.base import Artifact
from toolkit.errors import SkinkitError

if TYPE_CHECKING:
    import numpy as np

    from toolkit.compress.mixed import Probe
    from toolkit.context import Context
    from toolkit.recipe import Recipe, Target
    from toolkit.registry import ModelSpec


@dataclass(frozen=True)
class Converted:
    compressed: Compressed
    artifacts: tuple[Artifact, ...]
    calibration: dict | None  # what calibrated the full-integer targets; None when none is calibrated


@dataclass(frozen=True)
class MixedPrecisionSearch:
    """How a ``keep_float: auto`` target is judged; verification builds it (it gates on the evaluation set)."""

    rank: Callable[[Artifact], list[str]]  # the plainly quantized artifact's layers, noisiest first
    probe: Callable[[Artifact, Target, tuple[str, ...]], Probe]  # the gate on an artifact keeping those layers float


def run(context: Context, compressed: Compressed, *, evaluation_images: np.ndarray,
        mixed_precision: MixedPrecisionSearch | None = None) -> Converted:
    """``evaluation_images``: the evaluation set's uint8 images, which calibration must not share."""
    import torch

    from toolkit._io import captured
    from toolkit.convert.base import convert_target, describe_failure
    from toolkit.load.stage import input_contract

    spec, recipe = compressed.spec, context.recipe
    sample = torch.rand(*input_contract(recipe).input_shape(spec)) * (255.0 if recipe.input.pixel_range == "0-255" else 1.0)
    out_dir = context.staging / "artifacts"
    out_dir.mkdir(exist_ok=True)
    calibration, calibration_report = _calibration_inputs(context, spec, evaluation_images)
    meta = artifact_metadata(recipe, spec)
    if mixed_precision is None and any(t.keep_float == "auto" for t in recipe.targets):
        raise ValueError("targets with keep_float: auto need a mixed-precision search: pass mixed_precision")
    artifacts = []
    for t in recipe.targets:
        options = {**t.backend_options.model_dump(), "pixel_range": recipe.input.pixel_range,
                   "layout": recipe.input.layout, "calibration": calibration, "metadata": meta,
                   "keep_float": t.keep_float if isinstance(t.keep_float, tuple) else ()}
        try:
            with captured(context.log_path):
                if t.keep_float == "auto":
                    options["keep_float"], search = _keep_float(context, compressed, t, sample, options, mixed_precision)
                artifact = convert_target(compressed.wrapped, sample, spec, fmt=t.format, precision=t.precision,
                                          out_dir=out_dir, stem=spec.name, options=options, variant=t.variant)
                if t.keep_float == "auto":
                    artifact.details["mixed_precision"] = search
                artifacts.append(artifact)
        except SkinkitError:
            raise
        except Exception as exc:  # a backend's own failure: name model, target and fix
            raise describe_failure(exc, t.format, spec.name, module=compressed.wrapped, sample=sample) from exc
    return Converted(compressed=compressed, artifacts=tuple(artifacts), calibration=calibration_report)


def _calibration_inputs(context: Context, spec: ModelSpec, evaluation_images: np.ndarray) -> tuple[np.ndarray | None, dict | None]:
    """Contract-shaped calibration images, only when a target needs activation ranges, checked to share
    no image with the evaluation set; and what they were (for the manifest)."""
    from toolkit.backends.precisions import PRECISIONS
    from toolkit.data.calibration import check_disjoint, load_calibration
    from toolkit.load.stage import contract_images

    recipe = context.recipe
    if not any(PRECISIONS[t.precision].calibrated for t in recipe.targets):
        return None, None
    cfg = recipe.calibration
    if cfg.source == "manifest":
        images, report = load_calibration(context.resolve(cfg.manifest), spec, allow_unreadable=cfg.allow_unreadable, limit=cfg.n)
    else:
        images = context.images(spec, cfg, split="calib", labelled=False).inputs
        report = {"source": cfg.source, "images": len(images), "folder": str(cfg.folder) if cfg.folder else None}
    check_disjoint(images, evaluation_images)
    report["disjoint_from_evaluation"] = True
    return contract_images(images, recipe.input.pixel_range, recipe.input.layout), report


def artifact_metadata(recipe: Recipe, spec: ModelSpec) -> dict:
    """What every artifact carries about itself (TFLite metadata entry, Core ML user-defined fields)."""
    from toolkit import __version__
    from toolkit.load.stage import input_contract

    return {
        "bundle": recipe.name, "version": recipe.version, "model": spec.name, "task": spec.task, "description": spec.description,
        "licence": spec.licence, "labels": list(spec.labels), "input": input_contract(recipe).describe(spec),
        "outputs": [{"name": o.name, "description": o.description, "unit": o.unit} for o in spec.outputs],
        "producer": f"skinkit {__version__}", "recipe_sha256": recipe.sha256(),
    }


def target_of(recipe: Recipe, spec: ModelSpec, artifact: Artifact) -> Target | None:
    """The recipe target an artifact was built for (by its file name), or None."""
    from toolkit.convert.base import artifact_filename

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
