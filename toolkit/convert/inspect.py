"""``skinkit inspect ARTIFACT``: what is inside an exported file, read from the file alone.

I/O, op histogram, weight dtypes, size and TRANSPOSE count for every format, plus what the format's
backend adds (for TFLite, which ops the GPU delegate can take; for Core ML, which ops can run on the
Neural Engine: static checks against documented op lists, labelled as such).
"""

from __future__ import annotations

from pathlib import Path

from toolkit.backends import backend_for_path
from toolkit.convert.base import file_sha256, tree_size
from toolkit.errors import BadInputError


def inspect_artifact(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"artifact not found: {path}", fix="pass a .tflite, .onnx or .mlpackage path")
    backend = backend_for_path(path)
    out: dict = {"path": str(path), "format": backend.name, "size_bytes": tree_size(path), "sha256": file_sha256(path)}
    try:
        out.update(backend.inspect(path))
    except BadInputError:
        raise
    except Exception as exc:  # a truncated or foreign file
        raise BadInputError(f"{path}: cannot be read as {backend.name}: {type(exc).__name__}: {exc}",
                            fix="re-export it; the file may be truncated or not what its suffix says") from None
    return out


def render(d: dict) -> str:
    """A human-readable summary of :func:`inspect_artifact`'s result."""
    lines = [f"{d['path']}  ({d['format']}, {d['size_bytes'] / 1e6:.2f} MB, sha256 {d['sha256'][:12]}…)"]
    for kind in ("inputs", "outputs"):
        for t in d.get(kind, []):
            q = t.get("quantization")
            extra = f", scale {q['scale']:.4g} zero point {q['zero_point']}" if q else ""
            lines.append(f"  {kind[:-1]:6s} {t['name']}: {t.get('dtype', t.get('type', ''))} {t.get('shape', '')}{extra}")
    ops = d.get("op_histogram", {})
    lines.append(f"  ops    {sum(ops.values())} ({len(ops)} types): " + ", ".join(f"{k}×{v}" for k, v in ops.items()))
    lines.append(f"  transposes {d.get('transpose_count', 0)}")
    dtypes = d.get("tensor_dtypes") or d.get("weight_dtypes") or {}
    lines.append("  weights " + ", ".join(f"{k}×{v}" for k, v in dtypes.items()))
    if d.get("compressed_weight_ops"):
        lines.append("  compressed " + ", ".join(f"{k}×{v}" for k, v in d["compressed_weight_ops"].items()))
    if d.get("signatures"):
        lines.append("  signatures " + ", ".join(f"{k}({', '.join(v['inputs'])}) -> {', '.join(v['outputs'])}" for k, v in d["signatures"].items()))
    if "gpu_delegate" in d:
        g = d["gpu_delegate"]
        lines.append(f"  GPU delegate ({g['check']}): " + ("all ops" if g["fully_delegable"] else f"off GPU: {g['ops_off_gpu']}"))
    if "compute_units" in d:
        c = d["compute_units"]
        off = f"; off: {c['ops_off_neural_engine']}" if c.get("ops_off_neural_engine") and c["neural_engine"] == "partial" else ""
        lines.append(f"  Neural Engine ({c['check']}): {c['neural_engine']}{off}")
    if "metadata" in d:
        m = d["metadata"]
        lines.append(f"  metadata: {m.get('model')} {m.get('version')} ({m.get('precision')}), labels {m.get('labels')}")
    return "\n".join(lines)
