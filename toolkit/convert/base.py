"""The convert stage's records and helpers: the ``Artifact`` record, artifact naming, converting one
recipe target through its backend, and describing a backend's failure."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.backends import get_backend
from toolkit.backends.precisions import PRECISIONS
from toolkit.errors import BadInputError, ConversionError
from toolkit.tasks import get_task


def check_supported(fmt: str, precision: str) -> None:
    """Raise naming the supported precisions (and why this one is not) for an unsupported pair."""
    backend = get_backend(fmt)
    if precision not in backend.precisions:
        why = backend.why_unsupported(precision) if precision in PRECISIONS else f"unknown precision (known: {', '.join(PRECISIONS)})"
        raise ConversionError(f"{fmt} does not support precision {precision!r}: {why}",
                              fix=f"use one of: {', '.join(backend.precisions)}")


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


def file_sha256(path: Path, *, legacy: bool = False) -> str:
    """sha256 of a file; for a directory (``.mlpackage``, ``.aimodel``), of every file's relative path, byte length and
    bytes in sorted order (``sha256_method`` "tree-v2"): the lengths keep one file's bytes from standing in for the
    next file's name. ``legacy``: the hash of manifests before schema 1.3 / pipeline-1.1 ("tree": no lengths)."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            if not legacy:
                h.update(f.stat().st_size.to_bytes(8, "big"))
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


def artifact_filename(stem: str, fmt: str, variant: str) -> str:
    """``<stem>_<variant><suffix>``, e.g. ``acne_mobilenetv2_int8_mixed.tflite``: how a target's file is named."""
    return f"{stem}_{variant}{get_backend(fmt).suffix}"


def artifact_key(entry: dict, stem: str) -> str:
    """The recipe target key a manifest's artifact entry was built for, from its file name (the inverse of
    ``artifact_filename``: ``<stem>_<variant><suffix>`` → ``<format>_<variant>``)."""
    name = Path(entry["path"]).name
    return f"{entry['format']}_{name[len(stem) + 1:len(name) - len(get_backend(entry['format']).suffix)]}"


def convert_target(module, sample, spec, *, fmt: str, precision: str, out_dir: Path, stem: str, options: dict,
                   variant: str | None = None) -> Artifact:
    """Convert ``module`` (a DeviceContract-wrapped network, eval mode) to one target through its backend: a copy
    with the rewrites the backend's converter needs where they apply (``toolkit.backends.rewrites``; recorded in
    the details), ``module`` itself otherwise."""
    from toolkit.backends.rewrites import rewritten

    check_supported(fmt, precision)
    backend = get_backend(fmt)
    path = out_dir / artifact_filename(stem, fmt, variant or precision)
    options = {"class_scores": get_task(spec.task).class_scores, **options}
    t0 = time.perf_counter()
    network, rewrites = rewritten(module, sample, backend.rewrites)
    details = backend.convert(network, sample, spec, precision=precision, path=path, options=options)
    if rewrites:
        details["rewrites"] = [r.as_dict() for r in rewrites]
    return Artifact(format=fmt, precision=precision, path=path, seconds=time.perf_counter() - t0, details=details)


def _op_names(message: str) -> list[str]:
    """Op names a backend's error mentions: 'aten.i0.default', "op 'special_i0'", 'aten::xyz'."""
    import re

    found = re.findall(r"aten(?:\.|::)(\w+?)(?:\.default|\.Tensor|\.Scalar|\b)", message)
    found += re.findall(r"op '(\w+)'", message)
    return list(dict.fromkeys(found))


def _normalize_op(name: str) -> str:
    name = name.split(".")[1] if name.startswith("aten.") else name
    return name.removeprefix("special_").removeprefix("linalg_").rstrip("_")


def locate_op(module, sample, op_names: list[str]) -> list[str]:
    """The PyTorch module paths (with class) whose forward calls one of ``op_names``, found by
    exporting the module and reading each node's module stack. Empty if export itself fails."""
    import torch

    wanted = {_normalize_op(n) for n in op_names}
    try:
        ep = torch.export.export(module.eval(), (sample,))
    except Exception:
        return []
    where = []
    for node in ep.graph.nodes:
        if node.op != "call_function" or _normalize_op(str(node.target)) not in wanted:
            continue
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        path, cls = stack[-1] if stack else ("", type(module).__name__)
        where.append(f"{path or '(top level)'} ({cls.rsplit('.', 1)[-1]}) calls {node.target}")
    return list(dict.fromkeys(where))


def check_static_outputs(module, sample, spec_name: str) -> None:
    """Refuse, in one line naming the op and the module, a network whose outputs' sizes depend on the picture
    (post-processing that keeps a data-dependent number of detections: boolean indexing, ``nonzero``, NMS
    that returns the kept indices). No on-device format has such outputs, so this is checked once, before any
    target converts. A network ``torch.export`` cannot export at all is left to the backends' own errors."""
    import torch
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    try:
        ep = torch.export.export(module.eval(), (sample,))
    except Exception:
        return
    outputs = [n for n in ep.graph.nodes if n.op == "output"][0].args[0]
    dynamic = [n for n in outputs if isinstance(getattr(n, "meta", {}).get("val"), torch.Tensor)
               and free_unbacked_symbols(n.meta["val"].shape)]
    if not dynamic:
        return
    for node in ep.graph.nodes:  # the first op whose result has a data-dependent size
        val = node.meta.get("val")
        if node.op != "call_function" or not isinstance(val, torch.Tensor) or not free_unbacked_symbols(val.shape):
            continue
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        path, cls = stack[-1] if stack else ("", type(module).__name__)
        path = path.removeprefix("model.").removeprefix("inner.") if path not in ("model", "inner") else ""
        trace = [line.strip() for line in (node.meta.get("stack_trace") or "").strip().splitlines()]
        at = ""
        if len(trace) >= 2 and trace[-2].startswith("File "):
            file, line = trace[-2].split('"')[1], trace[-2].split("line ")[-1].split(",")[0]
            at = f" at {Path(file).name}:{line} `{trace[-1]}`"
        shape = "[" + ", ".join(str(d) for d in val.shape) + "]"
        raise BadInputError(
            f"{spec_name} makes a tensor whose size depends on the picture ({shape}): {node.target} in "
            f"{path or '(top level)'} ({cls.rsplit('.', 1)[-1]}){at}; no on-device format has data-dependent sizes",
            fix="make the post-processing static: keep a fixed number of detections (torch.topk), give padding score 0 and "
                "return a count of the valid ones (as skin_regions_maskrcnn does), or return the raw head outputs and do "
                "that step in the app")


def _site_module(module, site) -> tuple[str, str]:
    """The dotted path (and class) in ``module`` of the module a converter failed in. The converter may have
    seen ``module`` inside its own wrappers (named outputs, a softmax), so the longest tail of its scope that
    names a submodule of the same class is taken."""
    parts = site.scope
    if module is not None:
        for k in range(len(parts) + 1):
            path = ".".join(parts[k:])
            try:
                sub = module.get_submodule(path)
            except AttributeError:
                continue
            if site.module_type is None or type(sub).__name__ == site.module_type:
                return path or "(top level)", type(sub).__name__
    return ".".join(parts) or "(top level)", site.module_type or "?"


def describe_failure(exc: BaseException, fmt: str, spec_name: str, *, module=None, sample=None) -> ConversionError:
    """Turn a backend's exception into one error naming the model, the target, the failing op and
    the PyTorch module that calls it where they can be found, and a suggested fix. The op and module come
    from the backend (the node its converter was converting when it raised) or from the message (an op
    it names, found in the module by exporting it)."""
    msg = str(exc).strip().splitlines()
    first = next((m for m in msg if m.strip()), type(exc).__name__)
    joined = " ".join(msg)
    lowered = joined.lower()
    site = get_backend(fmt).failure_site(exc)
    named = _op_names(joined)
    ops = named or ([site.op] if site is not None else [])
    if site is not None:
        path, cls = _site_module(module, site)
        where = [f"{path} ({cls}) calls {site.op}"]
    else:
        where = locate_op(module, sample, ops) if ops and module is not None and sample is not None else []
    modules = list(dict.fromkeys(w.split(" calls ")[0] for w in where))
    in_module = f" in {modules[0]}" if modules else ""
    drop = f"or drop the {fmt} target from the recipe"
    unsupported = bool(named) or any(k in lowered for k in ("not supported", "unsupported", "not implemented", "lowering not found"))
    if "dynamic" in lowered or "symbolic" in lowered or "guard" in lowered:
        hint = "export with a static input shape: remove shape-dependent Python branches in forward()"
    elif "data-dependent" in lowered or "control flow" in lowered:
        hint = "replace data-dependent Python control flow (if on tensor values) with torch.where"
    elif unsupported:
        hint = f"replace {', '.join(ops) or 'the unsupported op'} with supported primitives{in_module}, {drop}"
    elif ops:  # the converter has the op, but not as this module uses it (shape, rank, parameters)
        hint = f"{fmt} cannot convert {ops[0]} as used{in_module} (see the cause): express it there with other ops, {drop}"
    else:
        hint = f"the backend log has the converter's own messages on what it could not convert; simplify that part, {drop}"
    cause = f"{fmt} conversion of {spec_name} failed: {type(exc).__name__}: {first[:300]}"
    if ops:
        cause += f" [{'unsupported op' if unsupported else 'op'}: {', '.join(ops)}" + (f"; in {'; '.join(where)}]" if where else "]")
    return ConversionError(cause, fix=hint, op=", ".join(ops) or None, module="; ".join(modules) or None)
