"""The converter interface and the table of supported targets."""

from __future__ import annotations

import hashlib
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import ConversionError

# format -> (module implementing it, file suffix, precisions it produces). One table, nothing else to sync.
SUPPORTED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "onnx": ("toolkit.convert.onnx", ".onnx", ("fp32",)),
    "tflite": ("toolkit.convert.tflite", ".tflite", ("fp32", "fp16")),
    "coreml": ("toolkit.convert.coreml", ".mlpackage", ("fp32", "fp16")),
}
CONVERTERS = tuple(SUPPORTED)


@dataclass
class Artifact:
    format: str
    precision: str
    path: Path  # a file, or a directory for .mlpackage
    seconds: float
    details: dict = field(default_factory=dict)  # structural facts read back from the artifact

    @property
    def filename(self) -> str:
        return self.path.name


def file_sha256(path: Path) -> str:
    """sha256 of a file; for a directory (``.mlpackage``), of every file's relative path and bytes in sorted order."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def convert_target(module, sample, spec, *, fmt: str, precision: str, out_dir: Path, stem: str, options: dict) -> Artifact:
    """Convert ``module`` (a DeviceContract-wrapped network, eval mode) to one target."""
    if fmt not in SUPPORTED:
        raise ConversionError(f"unknown format {fmt!r}", fix=f"use one of: {', '.join(SUPPORTED)}")
    mod_name, suffix, precisions = SUPPORTED[fmt]
    if precision not in precisions:
        raise ConversionError(f"{fmt} does not support precision {precision!r}", fix=f"use one of: {', '.join(precisions)}")
    backend = importlib.import_module(mod_name)
    path = out_dir / f"{stem}_{precision}{suffix}"
    t0 = time.perf_counter()
    details = backend.convert(module, sample, spec, precision=precision, path=path, options=options)
    return Artifact(format=fmt, precision=precision, path=path, seconds=time.perf_counter() - t0, details=details)


def describe_failure(exc: BaseException, fmt: str, spec_name: str) -> ConversionError:
    """Turn a backend's exception into one error naming the model, target, the failing op where the
    message carries one, and a suggested fix."""
    msg = str(exc).strip().splitlines()
    first = next((m for m in msg if m.strip()), type(exc).__name__)
    hint = "simplify the module (static shapes, no data-dependent control flow) or drop this target from the recipe"
    lowered = " ".join(msg).lower()
    if "dynamic" in lowered or "symbolic" in lowered or "guard" in lowered:
        hint = "export with a static input shape: remove shape-dependent Python branches in forward()"
    elif "not supported" in lowered or "unsupported" in lowered or "no converter" in lowered or "not implemented" in lowered:
        hint = "replace the unsupported op with supported primitives, or drop this target from the recipe"
    return ConversionError(f"{fmt} conversion of {spec_name} failed: {type(exc).__name__}: {first[:400]}", fix=hint)
