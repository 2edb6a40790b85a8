"""``skinkit verify BUNDLE``: re-check a written bundle, the way CI gates a pull request.

1. Integrity: every file's sha256 against the manifest (a tampered, missing or unlisted file is an
   error naming it; so is a manifest path leading outside the bundle, or a symbolic link in it), the
   signature over manifest.json where a public key is given (``toolkit.verify.signing``), and the
   reference checkpoint's sha256 against the one the bundle was built from.
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
from toolkit.verify.signing import SIGNATURE_FILE

if TYPE_CHECKING:
    from toolkit.compress.stage import Compressed
    from toolkit.context import Context
    from toolkit.convert.stage import Converted
    from toolkit.load.loader import LoadedModel


class IntegrityError(BadInputError):
    """A bundle's files do not match its manifest."""


_FIX = "re-export the bundle; never edit its files by hand"


def read_manifest(bundle: Path, raw: bytes | None = None) -> dict:
    """The bundle's manifest; parsed from ``raw`` (its bytes, as read once for a signature check) when given."""
    path = bundle / "manifest.json"
    if raw is None:
        raw = manifest_bytes(bundle)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise IntegrityError(f"{path} is not valid JSON: {exc}", fix="re-export the bundle") from None
    if not isinstance(manifest, dict):
        raise IntegrityError(f"{path} is not a manifest (a JSON object)", fix="re-export the bundle")
    return manifest


def manifest_bytes(bundle: Path) -> bytes:
    """manifest.json's bytes: read once, then parsed, checked against the files and against the signature alike (a
    manifest swapped between two reads could otherwise pass one check as itself and the other as the original)."""
    path = bundle / "manifest.json"
    if not path.is_file():
        raise BadInputError(f"{bundle} is not a skinkit bundle (no manifest.json)",
                            fix="pass the folder `skinkit export` wrote, e.g. bundles/acne_mobilenetv2")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{path} cannot be read: {exc.strerror}", fix="check the bundle's permissions") from None


def not_converted(manifest: dict) -> list[dict]:
    """The recipe targets the export could not convert: none for a complete bundle, or a manifest older
    than schema 1.1 (which had no such list: such exports were all or nothing)."""
    return list(manifest.get("failed_targets") or [])


def check_integrity(bundle: Path, manifest: dict, *, signature_allowed: bool = True) -> list[dict]:
    """One entry per artifact with its expected and actual sha256; raises naming every problem: a modified, missing
    or unlisted file, a manifest path that leads outside the bundle, a symbolic link.

    Since schema 1.3 ``files`` lists every other file with its sha256, and a file anywhere in the bundle that the
    manifest does not list is refused; an older manifest lists only its artifacts, so only ``artifacts/`` is searched
    for unlisted files (``integrity_notes`` says so). ``signature_allowed``: ``signature.json`` may sit beside the
    manifest (a component of an assessment bundle is signed through the assessment's manifest instead)."""
    checked = _Checked(bundle, legacy="files" not in manifest)
    for a in _entries(manifest, "artifacts"):
        checked.file(a.get("path"), a.get("sha256"), row=True)
    files = _files(manifest)
    for rel, sha in files.items():
        checked.file(rel, sha)
    checked.unlisted(extra={"manifest.json", *([SIGNATURE_FILE] if signature_allowed else [])},
                     under=None if "files" in manifest else "artifacts")
    return checked.result()


def check_pipeline_integrity(bundle: Path, manifest: dict) -> list[dict]:
    """Every file an assessment bundle's manifest lists — each component's manifest and artifacts (its own
    ``check_integrity``), the fused graphs, the app code, the other files — against its sha256; a modified, missing or
    unlisted file, a path leading outside the bundle or a symbolic link is an error naming it. A manifest before
    pipeline-1.1 has no ``files``: then only ``fused/`` is searched for unlisted files."""
    checked = _Checked(bundle, legacy="files" not in manifest)
    for c in _entries(manifest, "components"):
        root, problem = _inside(bundle, c.get("bundle"))
        if problem:
            checked.problems.append(problem)
            continue
        checked.listed.add(root)  # what is inside, its own manifest lists
        checked.file(f"{root}/manifest.json", c.get("manifest_sha256"), row=True)
        if checked.problems:
            continue
        try:
            checked.rows += [{**r, "path": f"{root}/{r['path']}"}
                             for r in check_integrity(bundle / root, read_manifest(bundle / root), signature_allowed=False)]
        except IntegrityError as exc:
            checked.problems.append(exc.cause.removeprefix("bundle integrity check failed: ") + f" (component {c.get('name')})")
    for f in _entries(manifest, "fused"):
        if "path" in f:
            checked.file(f["path"], f.get("sha256"), row=True)
    for a in _entries(manifest, "app_code"):
        checked.file(a.get("path"), a.get("sha256"), row=True)
    for rel, sha in _files(manifest).items():
        checked.file(rel, sha)
    checked.unlisted(extra={"manifest.json", SIGNATURE_FILE}, under=None if "files" in manifest else "fused")
    return checked.result()


def check_bundle_integrity(bundle: Path, manifest: dict) -> list[dict]:
    """``check_pipeline_integrity`` for an assessment bundle, ``check_integrity`` for a single model's."""
    return (check_pipeline_integrity if manifest.get("kind") == "pipeline" else check_integrity)(bundle, manifest)


def integrity_notes(manifest: dict) -> list[str]:
    """What the integrity check could not cover: files of a bundle written before the manifest listed them all."""
    if "files" in manifest:
        return []
    return [f"manifest schema {manifest.get('schema_version', '?')} lists only the bundle's artifacts: they were checked, "
            "but other files in the bundle were not (re-export the bundle for a manifest that lists every file)"]


def unlisted_files(bundle: Path, listed: set[str]) -> list[str]:
    """The files in ``bundle`` (relative POSIX paths, sorted) that are neither in ``listed`` nor inside a listed
    folder: what a manifest must add to ``files`` so that ``check_integrity`` accounts for every file."""
    files, _ = _tree(bundle)
    return [p for p in files if not _covered(p, listed)]


def sign_bundle(bundle: Path, key: Path) -> dict:
    """Check the bundle's integrity, then sign its manifest with the Ed25519 private key in ``key``."""
    from toolkit.verify.signing import load_private_key, sign_manifest

    load_private_key(key)  # a wrong key fails before a large bundle is read
    raw = manifest_bytes(bundle)
    manifest = read_manifest(bundle, raw)
    _signable(bundle, manifest)
    check_bundle_integrity(bundle, manifest)
    return sign_manifest(bundle, key, raw)


def _signable(bundle: Path, manifest: dict) -> None:
    """Only a manifest that lists every file (schema 1.3 / pipeline-1.1) can stand for the whole bundle: an older
    one leaves files outside ``artifacts/`` unchecked, and hashes folders without file lengths."""
    if "files" not in manifest:
        raise IntegrityError(f"{bundle / 'manifest.json'} (schema {manifest.get('schema_version')}) does not list every "
                             "file of the bundle, so a signature over it would not cover them",
                             fix="re-export the bundle with this skinkit, then sign it")


def signature_status(bundle: Path, public_key: Path | None, manifest: dict, raw: bytes) -> dict:
    """The bundle's signature over ``raw`` (the manifest's bytes, as parsed into ``manifest`` and checked against the
    files) checked with ``public_key`` (raising ``SignatureError`` if it does not hold), or, without a key, whether
    there is one to check."""
    from toolkit.verify.signing import check_signature

    if public_key is not None:
        _signable(bundle, manifest)
        return {"present": True, "checked": True, **check_signature(bundle, public_key, raw)}
    return {"present": (bundle / SIGNATURE_FILE).is_file(), "checked": False}


def signature_notes(signature: dict) -> list[str]:
    """A signature that is there but was not checked is worth a line."""
    if signature["present"] and not signature["checked"]:
        return [f"the bundle is signed ({SIGNATURE_FILE}) but the signature was not checked: pass --public-key PUBLIC.pem"]
    return []


class _Checked:
    """The files checked so far against a manifest's sha256s, and the problems found."""

    def __init__(self, bundle: Path, *, legacy: bool = False):
        self.bundle = bundle
        self.legacy = legacy  # folder artifacts hashed as before schema 1.3 / pipeline-1.1 (no file lengths)
        self.rows: list[dict] = []
        self.problems: list[str] = []
        self.listed: set[str] = set()

    def file(self, rel, want, *, row: bool = False) -> str | None:
        """Check one file (or folder artifact) the manifest lists; its normalised path, or None if it is not inside."""
        from toolkit.convert.base import file_sha256

        rel, problem = _inside(self.bundle, rel)
        if problem:
            self.problems.append(problem)
            return None
        self.listed.add(rel)
        path = self.bundle / rel
        try:
            if not (path.is_file() or path.is_dir()):
                self.problems.append(f"{rel} is {'not a regular file' if path.exists() else 'missing'}")
                return rel
            got = file_sha256(path, legacy=self.legacy)
        except (OSError, ValueError) as exc:
            self.problems.append(f"{rel} cannot be read ({getattr(exc, 'strerror', None) or exc})")
            return rel
        if row:
            self.rows.append({"path": rel, "sha256": got, "matches": got == want})
        if got != want:
            said = f"{want[:12]}…" if isinstance(want, str) else repr(want)
            self.problems.append(f"{rel} was modified (sha256 {got[:12]}…, manifest says {said})")
        return rel

    def unlisted(self, *, extra: set[str], under: str | None) -> None:
        """Every symbolic link in the bundle, and every file the manifest does not list (only those ``under`` a
        folder, for a manifest that does not list every file)."""
        files, links = _tree(self.bundle)
        self.problems += [f"{p} is a symbolic link (a bundle holds plain files: a link's target lies outside what "
                          "the manifest's sha256s and signature cover)" for p in links]
        self.problems += [f"{p} is not listed in the manifest" for p in files  # extra: files, never folders
                          if p not in extra and not _covered(p, self.listed) and (under is None or p.startswith(under + "/"))]

    def result(self) -> list[dict]:
        if self.problems:
            raise IntegrityError("bundle integrity check failed: " + "; ".join(self.problems), fix=_FIX)
        return self.rows


def _entries(manifest: dict, key: str) -> list[dict]:
    """``manifest[key]``, a list of objects; anything else is a damaged manifest."""
    value = manifest.get(key, [] if key in ("fused", "app_code") else None)
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise IntegrityError(f"manifest.json's {key} is not a list of entries", fix=_FIX)
    return value


def _files(manifest: dict) -> dict:
    """``manifest["files"]`` (relative path → sha256), empty for a manifest from before schema 1.3."""
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise IntegrityError("manifest.json's files is not a map of path to sha256", fix=_FIX)
    return files


def _inside(bundle: Path, rel) -> tuple[str, str | None]:
    """``rel`` normalised (``a/./b`` → ``a/b``), and the problem if it is not a relative path staying inside ``bundle``:
    absolute, with ``..``, or through a symbolic link out of it."""
    from pathlib import PurePosixPath, PureWindowsPath

    if not isinstance(rel, str) or not rel.strip("/. "):
        return "", f"{rel!r} is not a file path"
    if "\0" in rel or "\\" in rel:
        return "", f"{rel!r} is not a portable relative path (NUL or backslash)"
    if rel.startswith("/") or PureWindowsPath(rel).drive:
        return "", f"{rel} is an absolute path (a manifest path must stay inside the bundle)"
    norm = PurePosixPath(rel)
    if ".." in norm.parts:
        return "", f"{rel} leads outside the bundle (..)"
    try:
        inside = (bundle / norm).resolve().is_relative_to(bundle.resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long
        inside = False
    if not inside:
        return "", f"{rel} leads outside the bundle (through a symbolic link)"
    return norm.as_posix(), None


def _tree(bundle: Path) -> tuple[list[str], list[str]]:
    """Every file under ``bundle`` and every symbolic link (not followed), as sorted relative POSIX paths."""
    files, links = [], []
    for root, dirs, names in os.walk(bundle):
        here = Path(root).relative_to(bundle)
        links += [(here / d).as_posix() for d in dirs if os.path.islink(os.path.join(root, d))]
        for n in names:
            (links if os.path.islink(os.path.join(root, n)) else files).append((here / n).as_posix())
    return sorted(files), sorted(links)


def _covered(path: str, listed: set[str]) -> bool:
    """Whether ``path`` is listed, or lies in a listed folder (a .mlpackage artifact, a component's bundle)."""
    parts = path.split("/")
    return any("/".join(parts[:i]) in listed for i in range(1, len(parts) + 1))


def bundle_context(bundle: Path, manifest: dict, log_path: Path, *, data: Path | None = None, n: int | None = None,
                   culprits: str | None = None, recipe_path: Path | None = None) -> Context:
    """The context a bundle was exported with, from its manifest's resolved recipe; ``data``, ``n`` and
    ``culprits`` replace the evaluation images, their number and the culprit setting (the gate's settings stay)."""
    from toolkit.context import Context, names_files, recorded_recipe
    from toolkit.recipe import Recipe

    recipe = Recipe.model_validate(manifest["recipe"]["resolved"])
    recipe_path = recorded_recipe(bundle, manifest["recipe"]["path"], override=recipe_path,
                                  needed=names_files(recipe, evaluation=data is None))
    ev = recipe.evaluation
    if data is not None:  # the recipe's gate settings stay; only the images change
        ev = ev.model_copy(update={"source": "folder", "folder": data.resolve(), "n": n or 100_000})
    elif n is not None:
        ev = ev.model_copy(update={"n": n})
    if culprits is not None:
        ev = ev.model_copy(update={"culprits": culprits})
    recipe = recipe.model_copy(update={"evaluation": ev})
    return Context(recipe=recipe, recipe_path=recipe_path, staging=bundle, log_path=log_path)


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


def verify_bundle(bundle: str | Path, *, data: Path | None = None, n: int | None = None, culprits: str | None = None,
                  public_key: Path | None = None, recipe: Path | None = None) -> dict:
    """The signature (with ``public_key``), integrity, then the gate on every artifact. Returns a summary; never
    modifies the bundle."""
    from toolkit.verify import evaluation
    from toolkit.verify import stage as verify

    bundle = Path(bundle)
    raw = manifest_bytes(bundle)
    manifest = read_manifest(bundle, raw)
    signature = signature_status(bundle, public_key, manifest, raw)
    integrity = check_integrity(bundle, manifest)
    fd, log_name = tempfile.mkstemp(prefix="skinkit-verify-", suffix=".log")
    os.close(fd)
    t0 = time.perf_counter()
    try:
        context = bundle_context(bundle, manifest, Path(log_name), data=data, n=n, culprits=culprits, recipe_path=recipe)
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
        "integrity": integrity, "signature": signature, "notes": integrity_notes(manifest) + signature_notes(signature),
        "artifacts": results, "seconds": round(time.perf_counter() - t0, 1),
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
              not_converted: dict | None = None, advice: dict | None = None) -> tuple[str, bool]:
    """One JUnit test case, failing with every criterion it missed (or because its target did not convert), and the
    recipe change advised for it (``toolkit.verify.advice``) first in the failure's text; and whether it failed."""
    failed = [c for c in criteria if not c["passed"]]
    body = ""
    if not_converted is not None:
        text = not_converted["error"] + (f"\nfix: {not_converted['fix']}" if not_converted.get("fix") else "")
        body = f'<failure message={quoteattr("not converted")}>{escape(text)}</failure>'
    elif failed:
        from toolkit.verify.advice import advice_lines

        text = "\n".join(f"{c['name']}: {c['value']} (required {c['op']} {c['bound']})" for c in failed)
        message = f"{len(failed)} criteria failed"
        if advice:
            text = "suggested recipe change:\n" + "\n".join(advice_lines(advice, name)) + "\n\nfailed criteria:\n" + text
            message += f"; suggested fix: {advice['change']}"
        body = f'<failure message={quoteattr(message)}>{escape(text)}</failure>'
    if system_out is not None:
        body += f"<system-out>{escape(system_out)}</system-out>"
    return (f"  <testcase classname={quoteattr(classname)} name={quoteattr(name)}>{body}</testcase>",
            bool(failed) or not_converted is not None)


def junit_xml(summary: dict) -> str:
    """JUnit XML for CI: one test case per artifact (and one for a pruning budget), failing with every
    criterion it missed; and one failing test case per recipe target that did not convert."""
    cases = [testcase(summary["model"], a["path"], a["criteria"], a["check"], advice=a.get("advice")) for a in summary["artifacts"]]
    cases += [testcase(summary["model"], f"{f['key']} (not converted)", [], not_converted=f) for f in summary.get("failed_targets", [])]
    if "pruning" in summary:  # the pruned float model within its budget against the original
        cases.append(testcase(summary["model"], "pruning (float vs original)", summary["pruning"]["criteria"]))
    head = (f'<testsuite name={quoteattr("skinkit verify " + summary["bundle"])} tests="{len(cases)}" '
            f'failures="{sum(failed for _, failed in cases)}" time="{summary["seconds"]}">')
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + head + "\n" + "\n".join(xml for xml, _ in cases) + "\n</testsuite>\n"
