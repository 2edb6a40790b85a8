"""Atomic, exclusive bundle writes: everything is built in a hidden staging folder beside the destination and
renamed into place at the end, so a failed or interrupted export leaves no partial bundle.

One export at a time per bundle: an ``flock`` on ``<out>/.<name>.lock`` is held from the start to the commit, and
a second export into the same bundle is refused at once, naming the holder. Hidden folders carry their owner's
PID (``.<name>.partial-<pid>-*`` while building, ``.<name>.old-<pid>-*`` while replacing); whatever a killed
export left is swept by the next export of that bundle."""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from toolkit._io import output_error
from toolkit.errors import BadInputError


@contextmanager
def staged_bundle(out_dir: Path, name: str, *, force: bool) -> Iterator[Path]:
    """The staging folder of ``out_dir/name``, with the bundle's lock held throughout; an earlier export's
    leftovers are swept first, and the staging folder, unless committed, is removed on the way out."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out_dir, exc) from None
    with bundle_lock(out_dir, name):
        sweep(out_dir, name)
        staging = staging_dir(out_dir, name, force=force)
        try:
            yield staging
        finally:
            discard(staging)


@contextmanager
def bundle_lock(out_dir: Path, name: str) -> Iterator[None]:
    """Hold ``out_dir/.<name>.lock`` exclusively; refused at once when another process holds it."""
    lock = out_dir / f".{name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise output_error(out_dir, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BadInputError(f"another export is writing {out_dir / name} (pid {holder} holds {lock})",
                                fix="wait for it to finish, or export into another --out") from None
        except OSError as exc:  # a file system without locks (ENOLCK on some network mounts)
            os.close(fd)
            raise output_error(out_dir, exc) from None
        try:  # the holder before us may have removed the file on release: then lock the new one
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        except OSError as exc:
            os.close(fd)
            raise output_error(out_dir, exc) from None
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with suppress(OSError):  # removed while held, so a later export never locks a file nobody can see
            lock.unlink()
        os.close(fd)


def sweep(out_dir: Path, name: str) -> None:
    """Remove the staging and replaced folders of ``name`` left by exports that died (``kill -9``, power loss).
    Called with the lock held: no live export of ``name`` can own them. A replaced bundle whose replacement
    never landed is put back instead."""
    pattern = re.compile(rf"\.{re.escape(name)}\.(partial|old)-(\d+)(?:-\w+)?")
    final = out_dir / name
    for p in sorted(out_dir.iterdir()):
        m = pattern.fullmatch(p.name)
        if m is None or _alive(int(m[2])):
            continue
        if m[1] == "old" and not final.exists():
            with suppress(OSError):
                os.replace(p, final)
            continue
        shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():  # we hold the lock: a folder of ours from before it is a leftover
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process its parent has not reaped yet still answers
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def staging_dir(out_dir: Path, name: str, *, force: bool) -> Path:
    final = out_dir / name
    if (final.exists() or final.is_symlink()) and not force:
        raise BadInputError(f"bundle already exists: {final}", fix="choose another --out, remove it, or pass --force to replace it")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}.partial-{os.getpid()}-", dir=out_dir))
    except OSError as exc:
        raise output_error(out_dir, exc) from None


def commit_bundle(staging: Path, final: Path, *, force: bool) -> None:
    """Move ``staging`` to ``final``; an existing ``final`` is replaced only with ``force``, and only once the new
    one is complete. The staging folder gets the permissions the umask gives a new folder (not mkdtemp's 0700)."""
    if (final.exists() or final.is_symlink()) and not force:  # appeared while this export ran
        raise BadInputError(f"bundle already exists: {final} (written while this export ran)",
                            fix="choose another --out, remove it, or pass --force to replace it")
    old = None
    try:
        os.chmod(staging, 0o777 & ~_umask())
        if final.exists() or final.is_symlink():
            old = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
            os.replace(final, old)
        os.replace(staging, final)
    except OSError as exc:
        if old is not None and not final.exists():
            with suppress(OSError):
                os.replace(old, final)
        raise output_error(final.parent, exc) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
