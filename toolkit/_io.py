"""Process-level output plumbing. Backends (TensorFlow, litert-torch, coremltools) print to the
process's stdout/stderr from C++; we send their output to a log file so that ``--json`` keeps stdout
clean and the user sees skinkit's own progress only."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

import yaml

from toolkit.errors import BadInputError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def terminal():
    """A text stream on the original stderr, unaffected by ``captured()``."""
    return os.fdopen(os.dup(2), "w", buffering=1)


@contextlib.contextmanager
def captured(log_path: Path):
    """Redirect fd 1 and 2 (and Python's sys.stdout/err) to ``log_path`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextlib.contextmanager
def captured_quietly():
    """``captured()`` into a throwaway log: backends' chatter is dropped, our own errors still raise."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix="skinkit-", suffix=".log")
    os.close(fd)
    try:
        with captured(Path(name)):
            yield
    finally:
        os.unlink(name)


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary sibling, then rename: a report or manifest is whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def yaml_load(text: str) -> object:
    """``yaml.safe_load``, but a key given twice in one mapping is refused (``yaml.safe_load`` keeps the last
    and drops the first without a word), and a scalar that looks like a date but is none (``2024-13-01``) is a
    YAML error with its line rather than a ValueError. Both raise ``yaml.YAMLError`` subclasses."""
    return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 — a SafeLoader subclass


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names a key twice; ``line`` and ``first_line`` are 1-based."""

    def __init__(self, key: object, line: int, first_line: int):
        super().__init__(f"duplicate key {key!r} at line {line} (first at line {first_line})")
        self.key, self.line, self.first_line = key, line, first_line


@functools.cache
def _unique_key_loader():
    from yaml.constructor import ConstructorError

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base' keys may be overridden on purpose
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:  # unhashable: the base constructor refuses it with its line
                        continue
                    if first is not key_node:
                        raise DuplicateKeyError(key, key_node.start_mark.line + 1, first.start_mark.line + 1)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_timestamp(self, node):
            try:
                return super().construct_yaml_timestamp(node)
            except (ValueError, OverflowError) as exc:
                raise ConstructorError(None, None, f"{node.value!r} is not a date ({exc})", node.start_mark) from None

    UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", UniqueKeyLoader.construct_yaml_timestamp)
    return UniqueKeyLoader
def output_error(path: Path, exc: OSError, *, option: str = "--out") -> BadInputError:
    """An ``OSError`` met writing the output ``path`` the user named (``option``) as one ``BadInputError``: what
    stands in the way, naming the path, and the fix."""
    import errno

    path = Path(path)
    # os.path's tests answer False where a parent cannot be searched; pathlib's raise PermissionError (Python 3.11)
    blocker = next((p for p in (path, *path.parents) if os.path.exists(p) and not os.path.isdir(p)), None)
    if blocker is not None and blocker == path and exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return BadInputError(f"{option} {path} is a file, not a folder", fix=f"remove it, or pass {option} a folder")
    if blocker is not None and blocker != path:
        return BadInputError(f"{option} {path} cannot be written: {blocker} is a file, not a folder",
                             fix=f"pass {option} a path that is not under a file")
    where = exc.filename or path
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BadInputError(f"{option} {path} is not writable ({exc.strerror}: {where})",
                             fix=f"make it writable (chmod u+w; chattr -i if immutable), or pass {option} a folder you can write to")
    if exc.errno == errno.EROFS:
        return BadInputError(f"{option} {path} is on a read-only file system", fix=f"pass {option} a folder on a writable disk")
    if exc.errno == errno.ENOSPC:
        return BadInputError(f"no space left on the disk of {option} {path}", fix=f"free some space, or pass {option} a folder on another disk")
    return BadInputError(f"cannot write {option} {path}: {exc.strerror or exc} ({where})", fix=f"pass {option} a folder you can write to")


def writable_folder(folder: Path, *, option: str = "--out", named: Path | None = None) -> Path:
    """``folder`` created if need be and tried with a throwaway file, so that an output the user named (``named``, a
    file in it; default the folder) that cannot be written fails at once as one ``BadInputError`` (``output_error``)
    rather than after the work."""
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".skinkit-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        exc.filename = str(folder)  # not the probe's name
        raise output_error(named or folder, exc, option=option) from None
    return folder


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
