"""Stage 6: write the bundle — artifacts, manifest.json, report.md — atomically."""

from toolkit.bundle.manifest import MANIFEST_SCHEMA_VERSION, ArtifactEntry, FailedTargetEntry, Manifest
from toolkit.bundle.writer import commit_bundle, staged_bundle, staging_dir

__all__ = ["MANIFEST_SCHEMA_VERSION", "ArtifactEntry", "FailedTargetEntry", "Manifest", "commit_bundle", "staged_bundle",
           "staging_dir"]
