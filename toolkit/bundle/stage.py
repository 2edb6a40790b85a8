"""Stage 6, bundle: manifest.json, report.md and labels.txt beside the artifacts in the staging folder
(the pipeline renames it into place); the manifest lists every file with its sha256. Targets that did not convert are listed in the manifest, which then
marks the bundle incomplete."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.benchmark.stage import Benchmarked
from toolkit.tasks import get_task

if TYPE_CHECKING:
    from toolkit.context import Context
    from toolkit.convert.stage import FailedTarget


@dataclass(frozen=True)
class Bundled:
    path: Path  # the folder written (the staging folder during an export)
    manifest: dict  # manifest.json as written
    failed: tuple[FailedTarget, ...] = ()  # recipe targets that did not convert: the bundle is incomplete

    @property
    def complete(self) -> bool:
        return not self.failed


def run(context: Context, benchmarked: Benchmarked) -> Bundled:
    from toolkit.benchmark.recommend import recommend_rows
    from toolkit.bundle.manifest import ArtifactEntry, FailedTargetEntry, Manifest, other_files
    from toolkit.bundle.report import render
    from toolkit.context import portable, recipe_record
    from toolkit.convert.base import file_sha256, tree_size
    from toolkit.load.stage import input_contract
    from toolkit.verify.stage import compression_passed, compression_record

    verified = benchmarked.verified
    converted = verified.converted
    loaded = converted.compressed.loaded
    spec, r = loaded.spec, context.recipe
    entries = []
    for a in converted.artifacts:
        v = verified.results[a.filename]
        bench = benchmarked.artifacts.get(a.filename)
        estimated = {e["profile"]: e["ms"] for e in benchmarked.estimates.get(a.filename, []) if e["ms"] is not None}
        entries.append(ArtifactEntry(
            path=f"artifacts/{a.filename}", format=a.format, precision=a.precision, sha256=file_sha256(a.path),
            sha256_method="tree-v2" if a.path.is_dir() else "file", size_bytes=tree_size(a.path),
            conversion_seconds=round(a.seconds, 2), structure=a.details,
            verification={"passed": v["passed"], **{k: val for k, val in v.items() if k != "passed"}},
            benchmark=None if bench is None else {**bench, "estimated_ms": estimated},
        ))
    passed = [e for e in entries if e.verification["passed"]]
    recommended = None
    if benchmarked.reference is not None:  # benchmarking was on
        recommended = recommend_rows([
            {"artifact": e.path, "format": e.format, "precision": e.precision, "passed": e.verification["passed"],
             "size_bytes": e.size_bytes, "host": {str(r.benchmark.threads): benchmarked.artifacts[a.filename]},
             "estimates": benchmarked.estimates.get(a.filename, [])}
            for a, e in zip(converted.artifacts, entries, strict=True)], benchmarked.profiles)
    compression = compression_record(converted.compressed.report, verified.against_original)
    within_budget = compression_passed(compression)
    card = Path(loaded.provenance.get("checkpoint", "")).with_suffix(".json")
    training = json.loads(card.read_text()) if card.is_file() else None
    ev = r.evaluation
    manifest = Manifest(
        bundle=r.name, version=r.version,
        created_utc=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        model={"name": spec.name, "architecture": spec.architecture, "task": spec.task, "description": spec.description,
               "licence": spec.licence, "metric": spec.metric, **loaded.provenance,
               "checkpoint": portable(loaded.provenance["checkpoint"], context.recipe_dir),
               "training_card": training},
        input=input_contract(r).describe(spec),
        outputs=[{"name": o.name, "description": o.description, "unit": o.unit} for o in spec.outputs],
        labels=list(spec.labels),
        postprocess=get_task(spec.task).app_contract(spec),
        compression=compression,
        calibration=converted.calibration,
        evaluation={"source": ev.source, "n": len(verified.evaluation.data), "split": ev.split if ev.source == "synthetic" else None,
                    "seed": ev.seed if ev.source == "synthetic" else None,
                    "folder": str(ev.folder) if ev.folder else None, "ground_truth": ev.ground_truth,
                    "skin_tone": verified.skin_tone},
        artifacts=entries,
        failed_targets=[FailedTargetEntry(**f.as_dict()) for f in benchmarked.failed],
        reference_benchmark=benchmarked.reference,
        recommended=recommended,
        verdict={"passed": len(passed) == len(entries) and within_budget and not benchmarked.failed,
                 "complete": not benchmarked.failed, "artifact_count": len(entries),
                 "passed_count": len(passed), **({"compression_passed": within_budget} if compression else {})},
        tools=tool_versions(),
        recipe={"path": recipe_record(context.recipe_path, context.staging), "sha256": r.sha256(), "resolved": r.model_dump(mode="json")},
    )
    data = manifest.model_dump(mode="json")
    (context.staging / "report.md").write_text(render(data))
    if spec.labels:
        (context.staging / "labels.txt").write_text("\n".join(spec.labels) + "\n")
    data["files"] = other_files(context.staging, {e.path for e in entries})  # written last: it lists the others
    (context.staging / "manifest.json").write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    return Bundled(path=context.staging, manifest=data, failed=benchmarked.failed)


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
