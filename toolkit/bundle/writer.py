"""Atomic bundle writes: everything is built in a hidden staging folder beside the destination and
renamed into place at the end, so a failed or interrupted export leaves no partial bundle."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from toolkit.errors import BadInputError


def staging_dir(out_dir: Path, name: str, *, force: bool) -> Path:
    final = out_dir / name
    if final.exists() and not force:
        raise BadInputError(f"bundle already exists: {final}", fix="choose another --out, remove it, or pass --force to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out_dir))


def commit_bundle(staging: Path, final: Path) -> None:
    """Move ``staging`` to ``final``; an existing ``final`` is replaced only once the new one is complete."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
