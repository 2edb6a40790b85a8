"""``skinkit verify BUNDLE``: re-check a written bundle, the way CI gates a pull request.

1. Integrity: every artifact's sha256 against the manifest (a tampered, missing or unlisted file is
   an error naming it), and the reference checkpoint's sha256 against the one the bundle was built
   from.
2. The gate: every artifact runs again on the evaluation set (the bundle's own, or ``--data DIR``)
   against the float PyTorch reference rebuilt from the manifest's recipe; the same criteria as at
   export. Nothing is rewritten in the bundle.
3. Completeness: recipe targets that did not convert at export are listed in the manifest (schema 1.1);
   the bundle is reported incomplete (``passed`` false) even when every artifact it holds passes.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from toolkit.errors import BadInputError

if TYPE_CHECKING:
    from toolkit.compress.stage import Compressed
    from toolkit.context import Context
    from toolkit.convert.stage import Converted
    from toolkit.load.loader import LoadedModel


class IntegrityError(BadInputError):
    """A bundle's files do not match its manifest."""


def read_manifest(bundle: Path) -> dict:
    path = bundle / "manifest.json"
    if not path.is_file():
        raise BadInputError(f"{bundle} is not a skinkit bundle (no manifest.json)",
                            fix="pass the folder `skinkit export` wrote, e.g. bundles/acne_mobilenetv2")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise IntegrityError(f"{path} is not valid JSON: {exc}", fix="re-export the bundle") from None


def not_converted(manifest: dict) -> list[dict]:
    """The recipe targets the export could not convert: none for a complete bundle, or a manifest older
    than schema 1.1 (which had no such list: such exports were all or nothing)."""
    return list(manifest.get("failed_targets") or [])


def check_integrity(bundle: Path, manifest: dict) -> list[dict]:
    """One entry per artifact file with its expected and actual sha256; raises naming every mismatch."""
    from toolkit.convert.base import file_sha256

    rows, problems = [], []
    listed = set()
    for a in manifest["artifacts"]:
        path = bundle / a["path"]
        listed.add(path.name)
        if not path.exists():
            problems.append(f"{a['path']} is missing")
            continue
        actual = file_sha256(path)
        rows.append({"path": a["path"], "sha256": actual, "matches": actual == a["sha256"]})
        if actual != a["sha256"]:
            problems.append(f"{a['path']} was modified (sha256 {actual[:12]}…, manifest says {a['sha256'][:12]}…)")
    extra = sorted(p.name for p in (bundle / "artifacts").iterdir() if p.name not in listed) if (bundle / "artifacts").is_dir() else []
    problems += [f"artifacts/{name} is not listed in the manifest" for name in extra]
    if problems:
        raise IntegrityError("bundle integrity check failed: " + "; ".join(problems),
                             fix="re-export the bundle; never edit its files by hand")
    return rows


def bundle_context(bundle: Path, manifest: dict, log_path: Path, *, data: Path | None = None, n: int | None = None,
                   culprits: str | None = None) -> Context:
    """The context a bundle was exported with, from its manifest's resolved recipe; ``data``, ``n`` and
    ``culprits`` replace the evaluation images, their number and the culprit setting (the gate's settings stay)."""
    from toolkit.context import Context, recorded_recipe
    from toolkit.recipe import Recipe

    recipe = Recipe.model_validate(manifest["recipe"]["resolved"])
    ev = recipe.evaluation
    if data is not None:  # the recipe's gate settings stay; only the images change
        ev = ev.model_copy(update={"source": "folder", "folder": data.resolve(), "n": n or 100_000})
    elif n is not None:
        ev = ev.model_copy(update={"n": n})
    if culprits is not None:
        ev = ev.model_copy(update={"culprits": culprits})
    recipe = recipe.model_copy(update={"evaluation": ev})
    return Context(recipe=recipe, recipe_path=recorded_recipe(bundle, manifest["recipe"]["path"]), staging=bundle, log_path=log_path)


def reference(context: Context) -> Compressed:
    """The float model the bundle was built from, compressed as its recipe says: the load and compress
    stages again."""
    from toolkit.compress import stage as compress
    from toolkit.load import stage as load

    return compress.run(context, load.run(context, context.recipe.model))


def check_checkpoint(manifest: dict, loaded: LoadedModel) -> None:
    """The reference checkpoint must be the one the bundle was built from."""
    from toolkit.errors import CheckpointError

    want = manifest["model"].get("checkpoint_sha256")
    got = loaded.provenance.get("checkpoint_sha256")
    if want and got != want:
        raise CheckpointError(f"the reference checkpoint {loaded.provenance.get('checkpoint')} is not the one "
                              f"the bundle was built from (sha256 {str(got)[:12]}…, manifest says {want[:12]}…)",
                              fix="verify with the checkpoint named in the manifest, or re-export the bundle")


def bundled_artifacts(bundle: Path, manifest: dict, compressed: Compressed) -> Converted:
    """The bundle's artifacts, and the targets that did not convert, as the convert stage's record."""
    from toolkit.convert.base import Artifact
    from toolkit.convert.stage import Converted, FailedTarget

    artifacts = tuple(Artifact(format=a["format"], precision=a["precision"], path=bundle / a["path"], seconds=0.0,
                               details=a["structure"]) for a in manifest["artifacts"])
    return Converted(compressed=compressed, artifacts=artifacts, calibration=manifest.get("calibration"),
                     failed=tuple(FailedTarget(**f) for f in not_converted(manifest)))


def verify_bundle(bundle: str | Path, *, data: Path | None = None, n: int | None = None, culprits: str | None = None) -> dict:
    """Integrity, then the gate on every artifact. Returns a summary; never modifies the bundle."""
    from toolkit.verify import evaluation
    from toolkit.verify import stage as verify

    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    integrity = check_integrity(bundle, manifest)
    fd, log_name = tempfile.mkstemp(prefix="skinkit-verify-", suffix=".log")
    os.close(fd)
    t0 = time.perf_counter()
    try:
        context = bundle_context(bundle, manifest, Path(log_name), data=data, n=n, culprits=culprits)
        compressed = reference(context)
        check_checkpoint(manifest, compressed.loaded)
        verified = verify.run(context, bundled_artifacts(bundle, manifest, compressed),
                              evaluation=evaluation.run(context, compressed))
    finally:
        Path(log_name).unlink(missing_ok=True)
    results = []
    for a in manifest["artifacts"]:
        v = verified.results[Path(a["path"]).name]
        results.append({"path": a["path"], "format": a["format"], "precision": a["precision"], "passed": v["passed"],
                        "check": v["check"], "criteria": v["criteria"],  # then the rest: figures, the task's extras, culprits
                        **{k: val for k, val in v.items() if k not in ("passed", "check", "criteria", "n_samples", "note")}})
    compression = verify.compression_record(compressed.report, verified.against_original)
    ev = context.recipe.evaluation
    gate_passed = all(r["passed"] for r in results) and verify.compression_passed(compression)
    failed = [f.as_dict() for f in verified.failed]
    return {
        "bundle": str(bundle), "model": manifest["model"]["name"], "task": manifest["model"]["task"],
        "labels": manifest["labels"], "passed": gate_passed and not failed, "gate_passed": gate_passed,
        "complete": not failed, "failed_targets": failed,
        **({"pruning": _pruning_summary(compression)} if compression else {}),
        "evaluation": {"source": "folder" if data else manifest["evaluation"]["source"], "n": len(verified.evaluation.data),
                       "folder": str(data) if data else manifest["evaluation"].get("folder"),
                       "bootstrap": ev.bootstrap, "noninferiority": ev.noninferiority,
                       "skin_tone": verified.skin_tone},
        "integrity": integrity, "artifacts": results, "seconds": round(time.perf_counter() - t0, 1),
    }


def _pruning_summary(compression: dict) -> dict:
    """The pruned float model against the original: its headline drop, and the budget's criteria."""
    ao = compression["against_original"]
    return {"metric": ao["metric"], "original": ao["float"]["value"], "pruned": ao["artifact"]["value"], "drop": ao["drop"],
            "criteria": ao["criteria"], "passed": ao["passed"]}


def json_safe(value):
    """``value`` with NaN and infinities as None, so the JSON is strict (readable by any parser)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def testcase(classname: str, name: str, criteria: list[dict], system_out: str | None = None,
              not_converted: dict | None = None) -> tuple[str, bool]:
    """One JUnit test case, failing with every criterion it missed (or because its target did not convert);
    and whether it failed."""
    failed = [c for c in criteria if not c["passed"]]
    body = ""
    if not_converted is not None:
        text = not_converted["error"] + (f"\nfix: {not_converted['fix']}" if not_converted.get("fix") else "")
        body = f'<failure message={quoteattr("not converted")}>{escape(text)}</failure>'
    elif failed:
        text = "\n".join(f"{c['name']}: {c['value']} (required {c['op']} {c['bound']})" for c in failed)
        body = f'<failure message={quoteattr(f"{len(failed)} criteria failed")}>{escape(text)}</failure>'
    if system_out is not None:
        body += f"<system-out>{escape(system_out)}</system-out>"
    return (f"  <testcase classname={quoteattr(classname)} name={quoteattr(name)}>{body}</testcase>",
            bool(failed) or not_converted is not None)


def junit_xml(summary: dict) -> str:
    """JUnit XML for CI: one test case per artifact (and one for a pruning budget), failing with every
    criterion it missed; and one failing test case per recipe target that did not convert."""
    cases = [testcase(summary["model"], a["path"], a["criteria"], a["check"]) for a in summary["artifacts"]]
    cases += [testcase(summary["model"], f"{f['key']} (not converted)", [], not_converted=f) for f in summary.get("failed_targets", [])]
    if "pruning" in summary:  # the pruned float model within its budget against the original
        cases.append(testcase(summary["model"], "pruning (float vs original)", summary["pruning"]["criteria"]))
    head = (f'<testsuite name={quoteattr("skinkit verify " + summary["bundle"])} tests="{len(cases)}" '
            f'failures="{sum(failed for _, failed in cases)}" time="{summary["seconds"]}">')
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + head + "\n" + "\n".join(xml for xml, _ in cases) + "\n</testsuite>\n"
