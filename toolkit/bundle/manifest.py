"""The bundle manifest: the contract an app and a CI job read. Versioned; unknown keys rejected.

1.1 adds ``failed_targets`` (recipe targets that did not convert) and ``verdict.complete``; a 1.0 manifest has
neither and reads as complete. 1.2 adds ``postprocess``: what an app does with the outputs (an instance
segmenter's: which detections are valid, how a mask goes back on the picture), from the task. 1.3 adds ``files``:
every other file of the bundle (report.md, labels.txt, …) with its sha256, so that ``skinkit verify`` refuses any file
the manifest does not account for (manifest.json itself and signature.json aside); a manifest without it is checked
as before, its artifacts only. 1.4 adds ``recommended``: per device (this host per runtime, each device profile) the
fastest artifact that passed its gate, with its latency, the basis of that figure (measured or estimated) and the
runner-up, or none and why; and the artifacts slower than a more precise sibling (``toolkit.benchmark.recommend``).
Each artifact's ``benchmark`` then also holds ``estimated_ms``, its estimate per device profile that runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from toolkit.benchmark.recommend import Recommended

MANIFEST_SCHEMA_VERSION = "1.4"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArtifactEntry(_Strict):
    path: str  # relative to the bundle
    format: str
    precision: str
    sha256: str  # of the file; for a directory (.mlpackage), of its files' relative paths and bytes, sorted
    sha256_method: str = "file"
    size_bytes: int
    conversion_seconds: float
    structure: dict[str, Any]
    verification: dict[str, Any]  # "passed" first among its figures
    benchmark: dict[str, Any] | None = None


class FailedTargetEntry(_Strict):
    """A recipe target that did not convert: the bundle holds no artifact for it."""

    key: str  # the recipe target's key, e.g. coreml_fp16
    format: str
    precision: str
    error: str  # the cause
    fix: str | None = None
    op: str | None = None  # the torch op the converter failed on, where known
    module: str | None = None  # the PyTorch module (path and class) that calls it, where known


class Manifest(_Strict):
    schema_version: str = MANIFEST_SCHEMA_VERSION
    bundle: str
    version: str
    created_utc: str
    model: dict[str, Any]
    input: dict[str, Any]
    outputs: list[dict[str, Any]]
    labels: list[str]
    postprocess: dict[str, Any] | None = None  # the task's app contract (``Task.app_contract``); None: none needed
    compression: dict[str, Any] | None
    calibration: dict[str, Any] | None = None  # the calibration set of full-integer targets, and its checks
    evaluation: dict[str, Any]
    artifacts: list[ArtifactEntry]
    failed_targets: list[FailedTargetEntry] = []  # non-empty: the bundle is incomplete (verdict.complete false)
    files: dict[str, str] = {}  # every file besides the artifacts, manifest.json and signature.json: path → sha256
    reference_benchmark: dict[str, Any] | None
    recommended: Recommended | None = None  # None: benchmarking was off (or a manifest from before 1.4)
    verdict: dict[str, Any]
    tools: dict[str, str]
    recipe: dict[str, Any]


def other_files(root: Path, listed: set[str]) -> dict[str, str]:
    """Every file under ``root`` that is not in or under a ``listed`` path (nor manifest.json, nor signature.json),
    with its sha256: a manifest's ``files``, so that verify accounts for every file of the bundle."""
    from toolkit.convert.base import file_sha256
    from toolkit.verify.bundle import unlisted_files
    from toolkit.verify.signing import SIGNATURE_FILE

    return {p: file_sha256(root / p) for p in unlisted_files(root, {*listed, "manifest.json", SIGNATURE_FILE})}


def schema() -> dict:
    """The JSON Schema of a single model's bundle manifest."""
    out = Manifest.model_json_schema()
    out["$id"] = f"https://skinkit.dev/schemas/manifest-{MANIFEST_SCHEMA_VERSION}.json"
    out["title"] = "skinkit bundle manifest"
    return out
