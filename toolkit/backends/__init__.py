"""The on-device formats, one package each behind :class:`toolkit.backends.base.Backend`.

Adding a format: a package ``toolkit/backends/<format>/`` whose ``BACKEND`` implements every hook, and its
line below. The recipe's target schema, ``skinkit matrix``, conversion, verification, culprit finding,
cost and ``skinkit inspect`` all read this registry.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.backends import coreai, coreml, onnx, tflite
from toolkit.backends.base import Backend, OpSupport
from toolkit.errors import BadInputError, ConversionError

BACKENDS: dict[str, Backend] = {b.name: b for b in (onnx.BACKEND, tflite.BACKEND, coreml.BACKEND, coreai.BACKEND)}


def get_backend(name: str) -> Backend:
    """The registered backend of a format; an unknown name is an error listing the known ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConversionError(f"unknown format {name!r}", fix=f"use one of: {', '.join(BACKENDS)}") from None


def backend_for_path(path: str | Path) -> Backend:
    """The backend whose artifacts look like ``path`` (by suffix)."""
    path = Path(path)
    for backend in BACKENDS.values():
        if backend.detects(path):
            return backend
    suffixes = ", ".join(b.suffix for b in BACKENDS.values())
    raise BadInputError(f"{path}: not an artifact skinkit knows ({suffixes})", fix="pass a file from a bundle's artifacts/ folder")


def op_support(table: str) -> OpSupport:
    """A device op table by the name device profiles use (``tflite_gpu``, ``coreml_ane``)."""
    tables = {name: t for b in BACKENDS.values() for name, t in b.op_support.items()}
    if table not in tables:
        raise BadInputError(f"unknown op-support table {table!r}", fix=f"use one of: {', '.join(tables)}, or 'all'")
    return tables[table]


__all__ = ["BACKENDS", "Backend", "backend_for_path", "get_backend", "op_support"]
