"""Bundle integrity that holds, and signed bundles.

Every path a manifest names stays inside the bundle (no absolute path, no ``..``, no symbolic link), every file in the
bundle is one the manifest lists with its sha256 (schema 1.3 / pipeline-1.1 ``files``), and `skinkit keygen / sign /
verify --public-key` sign manifest.json with Ed25519 — for a single model's bundle and an assessment's alike.

One small export serves every test: a one-component assessment of a tiny network (its component is a single model's
bundle, copied out where a test needs one)."""

import hashlib
import json
import os
import shutil
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_NET, run_cli, write_recipe
from toolkit.convert.base import file_sha256
from toolkit.errors import BadInputError, SkinkitError
from toolkit.verify.bundle import (
    IntegrityError,
    check_integrity,
    check_pipeline_integrity,
    integrity_notes,
    read_manifest,
)
from toolkit.verify.signing import SIGNATURE_FILE, SignatureError, check_signature, generate_keys, sign_manifest

CHAIN = """
name: tiny_chain
description: one tiny classifier as an assessment
input: {size: 224}
components:
  grade:
    model: {name: 'tiny.py:build', checkpoint: tiny.pt, spec_from: acne_mobilenetv2}
    targets: [{format: tflite, precision: fp32}]
    evaluation: {n: 8, bootstrap: 100}
    benchmark: {enabled: false}
chain:
  - {id: grade, run: grade}
outputs:
  - {name: acne_grade, from: grade.logits, judge: classification, truth: float}
evaluation: {n: 10, bootstrap: 100}
"""

ARTIFACT = "artifacts/tiny_fp32.tflite"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import importlib.util

    import torch

    tmp = tmp_path_factory.mktemp("integrity")
    (tmp / "tiny.py").write_text(TINY_NET)
    spec = importlib.util.spec_from_file_location("tiny", tmp / "tiny.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    torch.save(mod.build().state_dict(), tmp / "tiny.pt")
    proc = run_cli("export", str(write_recipe(tmp / "chain.yaml", CHAIN)), "--out", str(tmp / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp / "out" / "tiny_chain"


@pytest.fixture
def assessment(built, tmp_path):
    return shutil.copytree(built, tmp_path / "tiny_chain")


@pytest.fixture
def bundle(built, tmp_path):
    """The component's own bundle, on its own, two folders down (so ``../../x`` is ``tmp_path/x``)."""
    return shutil.copytree(built / "components" / "grade", tmp_path / "a" / "grade")


@pytest.fixture
def recipe(built) -> str:
    """The recipe the bundles were exported from: the copies below live elsewhere, so verify is told where it is."""
    return str(built.parent.parent / "chain.yaml")


def test_a_moved_bundle_of_a_users_model_names_its_recipe_and_the_fix(bundle, recipe):
    proc = run_cli("verify", str(bundle), "--n", "4")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "skinkit: error: the recipe this bundle was exported from is not at " in proc.stderr
    assert proc.stderr.strip().endswith("— fix: pass --recipe PATH to that recipe (the bundle was moved), or verify the "
                                        "bundle where it was written")
    missing = run_cli("verify", str(bundle), "--recipe", str(bundle / "nope.yaml"))
    assert missing.returncode == 1 and f"--recipe {bundle / 'nope.yaml'} is not a file" in missing.stderr


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two key pairs: (private, public) of the signer, and another public key."""
    tmp = tmp_path_factory.mktemp("keys")
    private, public, _ = generate_keys(tmp / "mine")
    _, other, _ = generate_keys(tmp / "other")
    return private, public, other


def _rewrite(bundle, change) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    change(m)
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")


def _refused(bundle, check=check_integrity) -> str:
    with pytest.raises(IntegrityError) as e:
        check(bundle, read_manifest(bundle))
    assert e.value.exit_code == 1 and e.value.fix == "re-export the bundle; never edit its files by hand"
    return e.value.cause


# -- what an export writes --------------------------------------------------------------------------------------

def test_a_written_bundle_lists_every_file_with_its_sha256(built):
    component = built / "components" / "grade"
    m = read_manifest(component)
    assert m["schema_version"] == "1.4"
    assert m["files"] == {name: file_sha256(component / name) for name in ("labels.txt", "report.md")}
    assert [r["path"] for r in check_integrity(component, m)] == [ARTIFACT]
    p = read_manifest(built)
    assert p["schema_version"] == "pipeline-1.1"
    assert p["files"] == {name: file_sha256(built / name) for name in ("manifest.schema.json", "report.md")}
    assert [r["path"] for r in check_pipeline_integrity(built, p)] == [
        "components/grade/manifest.json", f"components/grade/{ARTIFACT}", "app/TinyChainChain.kt"]
    assert integrity_notes(m) == integrity_notes(p) == []


# -- paths that lead outside -------------------------------------------------------------------------------------

def test_a_dotdot_path_is_refused_even_where_the_file_it_reaches_matches(bundle, tmp_path):
    shutil.copy(bundle / ARTIFACT, tmp_path / "outside.tflite")
    _rewrite(bundle, lambda m: m["artifacts"][0].update(path="../../outside.tflite"))
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 1
    assert "skinkit: error: bundle integrity check failed: ../../outside.tflite leads outside the bundle (..)" in proc.stderr
    assert "— fix: re-export the bundle; never edit its files by hand" in proc.stderr


@pytest.mark.parametrize("listed_in", ["artifacts", "files"])
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlinked file", "symlinked folder"])
def test_a_manifest_path_leading_outside_is_refused_naming_it(bundle, tmp_path, how, listed_in):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(bundle / ARTIFACT, outside / "x.tflite")
    if how == "dotdot":
        rel, problem = "artifacts/../../../outside/x.tflite", "leads outside the bundle (..)"
    elif how == "absolute":
        rel, problem = str(outside / "x.tflite"), "is an absolute path (a manifest path must stay inside the bundle)"
    elif how == "symlinked file":
        (bundle / "artifacts" / "x.tflite").symlink_to(outside / "x.tflite")
        rel, problem = "artifacts/x.tflite", "leads outside the bundle (through a symbolic link)"
    else:
        (bundle / "linked").symlink_to(outside, target_is_directory=True)
        rel, problem = "linked/x.tflite", "leads outside the bundle (through a symbolic link)"
    sha = file_sha256(outside / "x.tflite")
    _rewrite(bundle, lambda m: m["artifacts"][0].update(path=rel, sha256=sha) if listed_in == "artifacts"
             else m["files"].update({rel: sha}))
    cause = _refused(bundle)
    assert f"{rel} {problem}" in cause
    if how.startswith("symlinked"):
        assert f"{rel.split('/')[0] if how == 'symlinked folder' else rel} is a symbolic link" in cause


def test_a_symbolic_link_inside_the_bundle_is_refused(bundle):
    """A link's target lies outside what the sha256s and the signature cover, even where it points inside today."""
    (bundle / "notes.md").symlink_to("report.md")
    assert _refused(bundle) == ("bundle integrity check failed: notes.md is a symbolic link (a bundle holds plain files: "
                                "a link's target lies outside what the manifest's sha256s and signature cover)")


# -- files the manifest does not account for ----------------------------------------------------------------------

@pytest.mark.parametrize("rel", ["notes.txt", ".DS_Store", "docs/readme.md", "artifacts/sub/extra.bin", "artifacts/extra.onnx"])
def test_an_unlisted_file_anywhere_in_the_bundle_is_refused(bundle, rel):
    (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
    (bundle / rel).write_bytes(b"x")
    assert _refused(bundle) == f"bundle integrity check failed: {rel} is not listed in the manifest"


def test_an_unlisted_file_fails_verify_with_exit_1(bundle):
    (bundle / "payload.sh").write_text("echo hi\n")
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 1
    assert ("skinkit: error: bundle integrity check failed: payload.sh is not listed in the manifest — fix: re-export "
            "the bundle; never edit its files by hand") in proc.stderr


def test_skinkit_run_refuses_a_bundle_that_fails_its_integrity_check(bundle, tmp_path):
    import cv2
    import numpy as np

    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 128, np.uint8))
    (bundle / "artifacts" / "extra.onnx").write_bytes(b"x")
    proc = run_cli("run", str(bundle), str(photo))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert ("skinkit: error: bundle integrity check failed: artifacts/extra.onnx is not listed in the manifest"
            in proc.stderr)


def test_a_folder_artifacts_hash_covers_each_files_length(tmp_path):
    """Without lengths, one file's bytes could stand in for the next file's name: two different folders, one hash."""
    one, two = tmp_path / "one.mlpackage", tmp_path / "two.mlpackage"
    one.mkdir(), two.mkdir()
    (one / "a").write_bytes(b"1")
    (one / "b").write_bytes(b"2")
    (two / "a").write_bytes(b"1b\x002")
    assert file_sha256(one, legacy=True) == file_sha256(two, legacy=True)  # the old hash: forgeable
    assert file_sha256(one) != file_sha256(two)
    h = hashlib.sha256(b"a\0" + (1).to_bytes(8, "big") + b"1" + b"b\0" + (1).to_bytes(8, "big") + b"2")
    assert file_sha256(one) == h.hexdigest()


def test_a_changed_or_missing_listed_file_is_named(bundle):
    (bundle / "report.md").write_text((bundle / "report.md").read_text() + "\nall good, trust me\n")
    (bundle / "labels.txt").unlink()
    cause = _refused(bundle)
    assert "labels.txt is missing" in cause and "report.md was modified (sha256 " in cause


def test_an_assessment_bundle_accounts_for_every_file_and_its_components(assessment):
    (assessment / "extra.json").write_text("{}")
    (assessment / "components" / "grade" / "extra.txt").write_text("x")
    (assessment / "components" / "grade" / SIGNATURE_FILE).write_text("{}")  # a component is signed through the assessment
    cause = _refused(assessment, check_pipeline_integrity)
    assert "extra.json is not listed in the manifest" in cause
    assert f"extra.txt is not listed in the manifest; {SIGNATURE_FILE} is not listed in the manifest (component grade)" in cause
    _rewrite(assessment, lambda m: m["app_code"][0].update(path="../../etc/TinyChainChain.kt"))
    assert "../../etc/TinyChainChain.kt leads outside the bundle (..)" in _refused(assessment, check_pipeline_integrity)


# -- manifests from before `files` --------------------------------------------------------------------------------

def _old(m: dict, version: str) -> None:
    del m["files"]
    m["schema_version"] = version


def test_a_manifest_without_files_is_checked_as_before_and_says_so(bundle, recipe):
    _rewrite(bundle, lambda m: _old(m, "1.2"))
    (bundle / "notes.txt").write_text("not covered by a 1.2 manifest")
    m = read_manifest(bundle)
    assert [r["path"] for r in check_integrity(bundle, m)] == [ARTIFACT]
    note = ("manifest schema 1.2 lists only the bundle's artifacts: they were checked, but other files in the bundle "
            "were not (re-export the bundle for a manifest that lists every file)")
    assert integrity_notes(m) == [note]
    proc = run_cli("verify", str(bundle), "--n", "4", "--recipe", recipe)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"  note: {note}\n" in proc.stdout
    # what the old check covered still holds, and so does the path check
    (bundle / "artifacts" / "extra.onnx").write_bytes(b"x")
    _rewrite(bundle, lambda m: m["artifacts"][0].update(path="/abs/tiny_fp32.tflite"))
    cause = _refused(bundle)
    assert "/abs/tiny_fp32.tflite is an absolute path" in cause and "artifacts/extra.onnx is not listed in the manifest" in cause


def test_an_assessment_manifest_without_files_is_checked_as_before(assessment):
    _rewrite(assessment, lambda m: _old(m, "pipeline-1.0"))
    (assessment / "notes.txt").write_text("x")
    m = read_manifest(assessment)
    assert len(check_pipeline_integrity(assessment, m)) == 3 and integrity_notes(m)[0].startswith("manifest schema pipeline-1.0")
    (assessment / "fused").mkdir()
    (assessment / "fused" / "x.tflite").write_bytes(b"x")
    assert _refused(assessment, check_pipeline_integrity) == "bundle integrity check failed: fused/x.tflite is not listed in the manifest"


# -- signed bundles -------------------------------------------------------------------------------------------------

def test_keygen_writes_an_owner_only_private_key_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "keys"
    proc = run_cli("keygen", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((out / "private.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "public.pem").stat().st_mode) == 0o644
    assert (out / "private.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (out / "public.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert f"wrote {out / 'private.pem'} (secret: signs bundles) and {out / 'public.pem'} (verifies them); key sha256:" in proc.stderr
    before = (out / "private.pem").read_bytes()
    again = run_cli("keygen", "--out", str(out))
    assert again.returncode == 1 and (out / "private.pem").read_bytes() == before
    assert f"skinkit: error: {out / 'private.pem'} and {out / 'public.pem'} already exist — fix: choose another --out" in again.stderr
    forced = run_cli("keygen", "--out", str(out), "--force")
    assert forced.returncode == 0 and (out / "private.pem").read_bytes() != before
    assert stat.S_IMODE((out / "private.pem").stat().st_mode) == 0o600


def test_sign_then_verify_a_single_model_bundle(bundle, keys, recipe):
    private, public, _ = keys
    proc = run_cli("sign", str(bundle), "--key", str(private))
    assert proc.returncode == 0, proc.stderr
    sig = json.loads((bundle / SIGNATURE_FILE).read_text())
    assert (sig["algorithm"], sig["signed_file"]) == ("ed25519", "manifest.json")
    assert sig["manifest_sha256"] == file_sha256(bundle / "manifest.json")
    checked = run_cli("verify", str(bundle), "--public-key", str(public), "--n", "4", "--recipe", recipe)
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert f"  signature ok (ed25519, key {sig['public_key_fingerprint'][:23]}…)\n" in checked.stdout
    assert "note:" not in checked.stdout
    # without the key: integrity and the gate still run, and the signature is said to be there, unchecked
    unchecked = run_cli("verify", str(bundle), "--n", "4", "--json", "--recipe", recipe)
    assert unchecked.returncode == 0, unchecked.stderr[-2000:]
    summary = json.loads(unchecked.stdout)
    assert summary["signature"] == {"present": True, "checked": False}
    assert summary["notes"] == ["the bundle is signed (signature.json) but the signature was not checked: pass --public-key PUBLIC.pem"]
    assert [r["path"] for r in summary["integrity"]] == [ARTIFACT]


def test_sign_then_verify_an_assessment_bundle(assessment, keys, recipe):
    private, public, other = keys
    assert run_cli("sign", str(assessment), "--key", str(private)).returncode == 0
    proc = run_cli("verify", str(assessment), "--public-key", str(public), "--json", "--recipe", recipe)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["signature"]["checked"] and summary["passed"] and summary["notes"] == []
    wrong = run_cli("verify", str(assessment), "--public-key", str(other))
    assert wrong.returncode == 1 and f"{assessment / SIGNATURE_FILE} was made by another key" in wrong.stderr
    # a component's manifest changed: the assessment's manifest holds its sha256
    _rewrite(assessment / "components" / "grade", lambda m: m.update(labels=["a", "b", "c", "d"]))
    tampered = run_cli("verify", str(assessment), "--public-key", str(public))
    assert tampered.returncode == 1 and "components/grade/manifest.json was modified" in tampered.stderr


def test_a_changed_manifest_fails_the_signature(bundle, keys):
    private, public, _ = keys
    sign_manifest(bundle, private)
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text.replace('"passed": true', '"passed": false', 1))
    proc = run_cli("verify", str(bundle), "--public-key", str(public))
    assert proc.returncode == 1
    assert (f"skinkit: error: {bundle / 'manifest.json'} does not match {bundle / SIGNATURE_FILE}: the manifest changed after "
            "it was signed — fix: get the bundle again from whoever signed it, or re-export and sign it again") in proc.stderr


def test_a_changed_artifact_fails_its_sha256_and_a_manifest_made_to_match_fails_the_signature(bundle, keys):
    private, public, _ = keys
    sign_manifest(bundle, private)
    art = bundle / ARTIFACT
    data = bytearray(art.read_bytes())
    data[-100] ^= 0xFF
    art.write_bytes(bytes(data))
    proc = run_cli("verify", str(bundle), "--public-key", str(public))
    assert proc.returncode == 1 and f"{ARTIFACT} was modified (sha256 " in proc.stderr
    _rewrite(bundle, lambda m: m["artifacts"][0].update(sha256=file_sha256(art)))
    assert check_integrity(bundle, read_manifest(bundle))  # the files match the manifest again …
    proc = run_cli("verify", str(bundle), "--public-key", str(public))
    assert proc.returncode == 1 and "the manifest changed after it was signed" in proc.stderr  # … which is not the signed one


def test_a_signature_by_another_key_or_none_at_all_fails(bundle, keys):
    private, _, other = keys
    unsigned = run_cli("verify", str(bundle), "--public-key", str(other))
    assert unsigned.returncode == 1
    assert (f"skinkit: error: {bundle / SIGNATURE_FILE} is missing: the bundle is not signed — fix: sign it with "
            "`skinkit sign BUNDLE --key PRIVATE.pem`, or verify without --public-key") in unsigned.stderr
    sign_manifest(bundle, private)
    with pytest.raises(SignatureError, match="was made by another key") as e:
        check_signature(bundle, other)
    assert e.value.fix == "verify with the public key of whoever signed the bundle"
    (bundle / SIGNATURE_FILE).write_text('{"algorithm": "ed25519"}')
    with pytest.raises(SignatureError, match=r"signature.json is not a skinkit signature \(KeyError"):
        check_signature(bundle, other)


def test_sign_refuses_a_bundle_whose_files_do_not_match(bundle, keys):
    (bundle / "notes.txt").write_text("x")
    proc = run_cli("sign", str(bundle), "--key", str(keys[0]))
    assert proc.returncode == 1 and "notes.txt is not listed in the manifest" in proc.stderr
    assert not (bundle / SIGNATURE_FILE).exists()


def test_a_wrong_key_file_is_one_line_with_its_fix(bundle, keys, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, public, _ = keys
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "notes.txt").write_text("not a key\n")
    cases = [
        (("sign", str(bundle), "--key", str(tmp_path / "nope.pem")),
         f"{tmp_path / 'nope.pem'}: no such key file — fix: pass the private key PEM that `skinkit keygen --out DIR` wrote"),
        (("sign", str(bundle), "--key", str(tmp_path / "notes.txt")),
         f"{tmp_path / 'notes.txt'} is not a PEM key — fix: pass the private key PEM that `skinkit keygen --out DIR` wrote"),
        (("sign", str(bundle), "--key", str(public)),
         f"{public} holds a public key; signing needs the private key — fix: pass the private.pem that `skinkit keygen` wrote beside it"),
        (("sign", str(bundle), "--key", str(ec_key)),
         f"{ec_key} is not an Ed25519 key (EC); skinkit signs with Ed25519 — fix: make a key pair with `skinkit keygen --out DIR`"),
        (("verify", str(bundle), "--public-key", str(private)),
         f"{private} holds a private key; verify with the public one (never ship the private key) — fix: pass the public.pem"),
    ]
    for args, message in cases:
        proc = run_cli(*args)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith(f"skinkit: error: {message}"), proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("skinkit: error:") == 1
    assert not (bundle / SIGNATURE_FILE).exists()


def test_a_passphrase_protected_key_is_refused_with_its_fix(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from toolkit.verify.signing import load_private_key

    path = tmp_path / "locked.pem"
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(BadInputError, match="is encrypted with a passphrase, which skinkit does not ask for"):
        load_private_key(path)


# -- the manifest reader never fails with anything but a skinkit error ----------------------------------------------

_PATHS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["../../x", "/etc/passwd", "C:\\x", "C:x", "\x00", ".", "./", "", "report.md", "artifacts", "manifest.json",
                     "artifacts/a.onnx", "artifacts/./a.onnx", "link", "link/x", "loop", "a" * 300]),
    st.lists(st.sampled_from(["..", ".", "", "a", "artifacts", "a.onnx", "x\\y", "link", "loop"]), max_size=5).map("/".join),
)
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=10)
_SHA256 = st.sampled_from([hashlib.sha256(b"onnx").hexdigest(), hashlib.sha256(b"# report\n").hexdigest()]) | st.text(max_size=64)
_ENTRY = st.fixed_dictionaries({}, optional={"path": _PATHS | _JSON, "sha256": _SHA256 | _JSON,
                                             "bundle": _PATHS | _JSON, "manifest_sha256": _JSON, "name": _JSON})
_MANIFEST = st.fixed_dictionaries({}, optional={
    "schema_version": _JSON, "kind": st.just("pipeline"),
    **{k: st.lists(_ENTRY, max_size=3) | _JSON for k in ("artifacts", "components", "fused", "app_code")},
    "files": st.dictionaries(_PATHS, _SHA256 | _JSON, max_size=3) | _JSON,
})


@pytest.fixture(scope="module")
def small_bundles(tmp_path_factory):
    """Two small bundle folders: a plain one, and one with a link out of it and a link loop in it."""
    roots = []
    for name in ("plain", "odd"):
        root = tmp_path_factory.mktemp(name)
        (root / "artifacts").mkdir()
        (root / "artifacts" / "a.onnx").write_bytes(b"onnx")
        (root / "report.md").write_text("# report\n")
        roots.append(root)
    (root / "link").symlink_to(root.parent, target_is_directory=True)
    os.symlink("loop", root / "loop")
    return roots


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifest=_MANIFEST | st.dictionaries(st.text(max_size=8), _JSON, max_size=3))  # read_manifest refuses a non-object
def test_any_manifest_is_checked_or_refused_with_a_skinkit_error(small_bundles, manifest):
    for root in small_bundles:
        for check in (check_integrity, check_pipeline_integrity):
            try:
                rows = check(root, manifest)
            except SkinkitError:
                continue
            assert all(r["matches"] for r in rows)


def test_the_property_reaches_success_too(small_bundles):
    plain, odd = small_bundles
    manifest = {"artifacts": [{"path": "artifacts/./a.onnx", "sha256": hashlib.sha256(b"onnx").hexdigest()}],
                "files": {"report.md": hashlib.sha256(b"# report\n").hexdigest()}}
    assert check_integrity(plain, manifest) == [{"path": "artifacts/a.onnx", "sha256": hashlib.sha256(b"onnx").hexdigest(),
                                                 "matches": True}]
    assert "link is a symbolic link" in _refused_with(odd, manifest) and "loop is a symbolic link" in _refused_with(odd, manifest)


def _refused_with(root, manifest) -> str:
    with pytest.raises(IntegrityError) as e:
        check_integrity(root, manifest)
    return e.value.cause


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.binary(max_size=60), _MANIFEST.map(json.dumps), _JSON.map(json.dumps), st.just("[" * 100_000)))
def test_any_manifest_file_is_read_or_refused_with_a_skinkit_error(tmp_path_factory, text):
    root = tmp_path_factory.mktemp("read", numbered=True)
    (root / "manifest.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    try:
        manifest = read_manifest(root)
    except SkinkitError:
        return
    assert isinstance(manifest, dict)
    try:
        check_integrity(root, manifest)
    except SkinkitError:
        pass


# -- found in review ----------------------------------------------------------------------------------------------

def test_a_folder_named_like_the_signature_file_is_not_a_hiding_place(bundle):
    (bundle / SIGNATURE_FILE).mkdir()
    (bundle / SIGNATURE_FILE / "payload.sh").write_text("echo hi\n")
    assert _refused(bundle) == f"bundle integrity check failed: {SIGNATURE_FILE}/payload.sh is not listed in the manifest"


def test_an_old_manifest_can_be_neither_signed_nor_checked_against_a_key(bundle, keys):
    private, public = keys[:2]
    _rewrite(bundle, lambda m: _old(m, "1.2"))
    for proc in (run_cli("sign", str(bundle), "--key", str(private)),
                 run_cli("verify", str(bundle), "--public-key", str(public))):
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert ("(schema 1.2) does not list every file of the bundle, so a signature over it would not cover them — "
                "fix: re-export the bundle with this skinkit, then sign it") in proc.stderr


def test_a_recipe_path_pointing_inside_the_bundle_is_refused(bundle):
    (bundle / "evil.py").write_text("raise SystemExit('ran code from the bundle')\n")
    sha = hashlib.sha256((bundle / "evil.py").read_bytes()).hexdigest()
    _rewrite(bundle, lambda m: (m["recipe"].update(path="report.md"), m["files"].update({"evil.py": sha})))
    proc = run_cli("verify", str(bundle), "--n", "4")
    assert proc.returncode == 1 and "ran code from the bundle" not in proc.stderr
    assert ("skinkit: error: the manifest names a recipe inside the bundle ('report.md'); an export never puts its "
            "recipe there, so the manifest was edited") in proc.stderr
