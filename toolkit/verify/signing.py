"""Signed bundles: an Ed25519 signature over the exact bytes of ``manifest.json``.

The manifest holds the sha256 of every file in the bundle (its artifacts, and since schema 1.3 every other file), so
a signature that holds over the manifest, with an integrity check that holds over the files, covers the whole bundle:
a changed artifact fails its sha256, a manifest changed to match it fails the signature.

``signature.json`` sits beside the manifest (which therefore cannot list it): the algorithm, the signing key's
fingerprint (sha256 of its raw public bytes), and the signature in base64. Keys are PEM files: PKCS#8 private
(unencrypted, written 0600: keep it secret) and SubjectPublicKeyInfo public (ship it to whoever verifies)."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import tempfile
from pathlib import Path

from toolkit.errors import BadInputError

SIGNATURE_FILE = "signature.json"
ALGORITHM = "ed25519"
PRIVATE_KEY, PUBLIC_KEY = "private.pem", "public.pem"


class SignatureError(BadInputError):
    """A bundle's signature is missing, made by another key, or does not match its manifest."""


def generate_keys(out: Path, *, force: bool = False) -> tuple[Path, Path, str]:
    """A new Ed25519 key pair in ``out``: private.pem (owner-only) and public.pem; and the key's fingerprint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = out / PRIVATE_KEY, out / PUBLIC_KEY
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing and not force:
        raise BadInputError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}",
                            fix="choose another --out, or pass --force to replace the keys (bundles signed with the old "
                                "key then no longer verify with the new public key)")
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out} is a file, not a folder", fix="pass a folder to --out")
    out.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    _write(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()), mode=0o600)
    _write(public, key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
           mode=0o644)
    return private, public, fingerprint(key.public_key())


def sign_manifest(bundle: Path, key_path: Path, manifest: bytes | None = None) -> dict:
    """Write ``signature.json`` into ``bundle``, signing its manifest.json's bytes (``manifest``: as read, and
    checked, by the caller) with the private key in ``key_path``; returns what was written."""
    key = load_private_key(key_path)
    manifest = _manifest_bytes(bundle) if manifest is None else manifest
    signature = {"algorithm": ALGORITHM, "signed_file": "manifest.json",
                 "manifest_sha256": hashlib.sha256(manifest).hexdigest(), "public_key_fingerprint": fingerprint(key.public_key()),
                 "signature": base64.b64encode(key.sign(manifest)).decode("ascii"),
                 "signed_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    _write(bundle / SIGNATURE_FILE, (json.dumps(signature, indent=2) + "\n").encode(), mode=0o644)
    return signature


def check_signature(bundle: Path, public_key_path: Path, manifest: bytes | None = None) -> dict:
    """The bundle's signature against the public key in ``public_key_path``: its algorithm and the key's fingerprint;
    raises ``SignatureError`` naming the file if it is missing, made by another key, or the manifest changed since."""
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(public_key_path)
    path = bundle / SIGNATURE_FILE
    if not path.is_file():
        raise SignatureError(f"{path} is missing: the bundle is not signed",
                             fix="sign it with `skinkit sign BUNDLE --key PRIVATE.pem`, or verify without --public-key")
    try:
        doc = json.loads(path.read_text())
        algorithm, signed_by, raw = doc["algorithm"], doc["public_key_fingerprint"], base64.b64decode(doc["signature"], validate=True)
    except (OSError, ValueError, RecursionError, KeyError, TypeError) as exc:
        raise SignatureError(f"{path} is not a skinkit signature ({type(exc).__name__}: {exc})",
                             fix="sign the bundle again with `skinkit sign BUNDLE --key PRIVATE.pem`") from None
    if algorithm != ALGORITHM:
        raise SignatureError(f"{path} uses {algorithm!r}; skinkit verifies {ALGORITHM} signatures",
                             fix="sign the bundle again with `skinkit sign BUNDLE --key PRIVATE.pem`")
    want = fingerprint(key)
    if signed_by != want:
        raise SignatureError(f"{path} was made by another key ({str(signed_by)[:23]}…; --public-key {public_key_path} is "
                             f"{want[:23]}…)", fix="verify with the public key of whoever signed the bundle")
    try:
        key.verify(raw, _manifest_bytes(bundle) if manifest is None else manifest)
    except InvalidSignature:
        raise SignatureError(f"{bundle / 'manifest.json'} does not match {path}: the manifest changed after it was signed",
                             fix="get the bundle again from whoever signed it, or re-export and sign it again") from None
    return {"algorithm": ALGORITHM, "public_key_fingerprint": want}


def fingerprint(public_key) -> str:
    """``sha256:<hex>`` of the key's raw 32 bytes: what signature.json names its signer by."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def load_private_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key, kind = _load(path, want="private")
    if kind == "public":
        raise BadInputError(f"{path} holds a public key; signing needs the private key",
                            fix=f"pass the {PRIVATE_KEY} that `skinkit keygen` wrote beside it")
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInputError(f"{path} is not an Ed25519 key ({_kind(key)}); skinkit signs with Ed25519",
                            fix="make a key pair with `skinkit keygen --out DIR`")
    return key


def load_public_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key, kind = _load(path, want="public")
    if kind == "private":
        raise BadInputError(f"{path} holds a private key; verify with the public one (never ship the private key)",
                            fix=f"pass the {PUBLIC_KEY} that `skinkit keygen` wrote beside it")
    if not isinstance(key, Ed25519PublicKey):
        raise BadInputError(f"{path} is not an Ed25519 key ({_kind(key)}); skinkit bundles are signed with Ed25519",
                            fix="pass the Ed25519 public.pem of whoever signed the bundle")
    return key


def _load(path: Path, *, want: str):
    """The key in the PEM file ``path`` and whether it is private or public (tried in the order ``want`` says)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    made_by = "`skinkit keygen --out DIR`"
    if not path.is_file():
        raise BadInputError(f"{path}: no such key file", fix=f"pass the {want} key PEM that {made_by} wrote")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path} cannot be read: {exc.strerror}", fix="check the key file's permissions") from None
    loaders = {"private": lambda: serialization.load_pem_private_key(data, password=None),
               "public": lambda: serialization.load_pem_public_key(data)}
    for kind in (want, *(k for k in loaders if k != want)):
        try:
            return loaders[kind](), kind
        except TypeError:  # a private key protected by a passphrase
            raise BadInputError(f"{path} is encrypted with a passphrase, which skinkit does not ask for",
                                fix=f"use an unencrypted key, as {made_by} writes") from None
        except (ValueError, UnsupportedAlgorithm):
            continue
    raise BadInputError(f"{path} is not a PEM key", fix=f"pass the {want} key PEM that {made_by} wrote")


def _kind(key) -> str:
    return type(key).__name__.removeprefix("_").replace("PrivateKey", "").replace("PublicKey", "") or "unknown"


def _manifest_bytes(bundle: Path) -> bytes:
    path = bundle / "manifest.json"
    if not path.is_file():
        raise BadInputError(f"{bundle} is not a skinkit bundle (no manifest.json)",
                            fix="pass the folder `skinkit export` wrote, e.g. bundles/acne_mobilenetv2")
    return path.read_bytes()


def _write(path: Path, data: bytes, *, mode: int) -> None:
    """``data`` into ``path`` whole or not at all, with permissions ``mode`` from the start (a private key is never
    readable by others, not even while it is written)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    except OSError as exc:
        raise BadInputError(f"cannot write {path}: {exc.strerror or exc}",
                            fix=f"make {path.parent} writable, or choose another folder") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BadInputError(f"cannot write {path}: {exc.strerror or exc}",
                            fix=f"make {path.parent} writable, or choose another folder") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
