"""A content-addressed cache of conversions: the same network, contract, target, calibration images and converter
versions give the same artifact, so it is converted once and copied thereafter — by a re-export that changed only
its tolerances or its evaluation data, or by every worker of a batch (``toolkit.scale``) that shares the cache. The
same store keeps artifacts' outputs on evaluation images (``toolkit.verify.outputs``: ``get_outputs``/``put_outputs``).

The key is the sha256 of everything a conversion reads: the network (every parameter and buffer, its module tree and
the source of each module class), the input sample's shape, the model spec, the target (format, precision, variant,
backend options, layers kept float), the calibration images' bytes, the metadata written into the artifact, and the
versions of skinkit and of every converter. An entry is ``<root>/<key[:2]>/<key>/`` holding the artifact and
``entry.json`` (written last: an entry without it is unfinished and ignored). The root is a folder, or any URL fsspec
reaches (``s3://…``, ``gcs://…``, ``file://…``); two writers of one key both convert, the first to publish wins.

Where: ``SKINKIT_CACHE`` (a folder or URL; ``off`` turns caching off), else ``$XDG_CACHE_HOME/skinkit/conversions``
(``~/.cache/skinkit/conversions``). Failures are never cached."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.convert.base import Artifact

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import torch

    from toolkit.context import Context
    from toolkit.data.records import TaskData

# The packages whose versions decide what an artifact holds (and, for the runtimes among them, what it outputs).
CONVERTERS = ("torch", "coremltools", "coreai-torch", "coreai-core", "coreai-opt", "litert-torch", "ai-edge-quantizer",
              "ai-edge-litert", "tensorflow", "onnx", "onnxscript", "onnxruntime", "numpy")
ENTRY = "entry.json"
OUTPUTS = "outputs.npz"  # an artifact's outputs on a set of images (toolkit.verify.outputs)
OFF = ("off", "0", "none", "false", "")


def resolve_root(cache: str | os.PathLike | bool | None = None) -> str | None:
    """Where conversions are cached: ``cache`` (a folder or URL; False or ``off``: nowhere), or for None / True the
    environment's (``SKINKIT_CACHE``; ``off`` for none), else the user's cache folder."""
    if cache is None or cache is True:
        cache = os.environ.get("SKINKIT_CACHE")
        if cache is None:
            base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            return str(Path(base) / "skinkit" / "conversions")
    if cache is False or str(cache).strip().lower() in OFF:
        return None
    return str(cache)


class ConversionCache:
    """Artifacts by conversion key under ``root`` (a folder or an fsspec URL)."""

    def __init__(self, root: str | os.PathLike):
        root = str(root)
        self.remote = "://" in root and not root.startswith("file://")
        self.root = root.rstrip("/") if self.remote else str(Path(root.removeprefix("file://")).expanduser())
        if self.remote:
            import fsspec

            self.fs, self.base = fsspec.core.url_to_fs(self.root)
        else:
            self.fs, self.base = None, self.root

    def __repr__(self) -> str:
        return f"ConversionCache({self.root!r})"

    def _entry(self, key: str) -> str:
        return f"{self.base}/{key[:2]}/{key}"

    def has(self, key: str) -> bool:
        """Whether a complete entry of ``key`` is there."""
        entry = f"{self._entry(key)}/{ENTRY}"
        try:
            return Path(entry).is_file() if self.fs is None else bool(self.fs.exists(entry))
        except Exception:  # noqa: BLE001 — unreachable: as good as absent
            return False

    def get_record(self, key: str) -> dict | None:
        """The ``entry.json`` record kept under ``key`` (``put_record``, ``put_outputs``); None on a miss. A local
        entry read counts as recently used."""
        entry = f"{self._entry(key)}/{ENTRY}"
        try:
            if self.fs is None:
                record = json.loads(Path(entry).read_text())
                os.utime(entry)
                return record
            with self.fs.open(entry, "r") as fh:
                return json.load(fh)
        except Exception:  # noqa: BLE001 — unreadable or absent
            return None

    def put_record(self, key: str, record: dict) -> bool:
        """Keep a small JSON record (what reading an artifact found: its cost) under ``key``; False when not kept."""
        return self._publish(key, {}, json.dumps(record))

    def get(self, key: str, out_dir: Path, filename: str, *, recorded_seconds: bool = False) -> Artifact | None:
        """The cached artifact of ``key`` copied to ``out_dir/filename`` with its recorded details; None on a miss (or an
        entry that cannot be read, which is then converted again). Its ``seconds`` are 0 (nothing converted now), or
        with ``recorded_seconds`` what its conversion took (a second process converted it for this export)."""
        entry = self._entry(key)
        try:
            if self.fs is None:
                record = json.loads(Path(entry, ENTRY).read_text())
                src = Path(entry, "artifact", record["filename"])
                dest = out_dir / filename
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)
                os.utime(Path(entry, ENTRY))  # recently used
            else:
                with self.fs.open(f"{entry}/{ENTRY}", "r") as fh:
                    record = json.load(fh)
                dest = out_dir / filename
                self.fs.get(f"{entry}/artifact/{record['filename']}", str(dest), recursive=record["is_dir"])
        except Exception:  # noqa: BLE001 — unreadable, half-written or unreachable: converted again
            _remove(out_dir / filename)
            return None
        seconds = float(record.get("seconds") or 0.0) if recorded_seconds else 0.0
        return Artifact(format=record["format"], precision=record["precision"], path=dest, seconds=seconds, details=record["details"])

    def put(self, key: str, artifact: Artifact) -> bool:
        """Publish ``artifact`` under ``key``; False when its details are not JSON (then it is not cached) or another
        writer published the key first."""
        try:
            record = json.dumps({"format": artifact.format, "precision": artifact.precision, "filename": artifact.filename,
                                 "is_dir": artifact.path.is_dir(), "details": artifact.details, "seconds": artifact.seconds},
                                allow_nan=True)
        except (TypeError, ValueError):
            return False
        entry = self._entry(key)
        if self.fs is not None:
            return self._put_remote(entry, artifact, record)

        def fill(tmp: Path) -> None:
            dest = tmp / "artifact" / artifact.filename
            dest.parent.mkdir()
            (shutil.copytree if artifact.path.is_dir() else shutil.copy2)(artifact.path, dest)

        return self._publish_local(key, fill, ("artifact",), record)

    def _put_remote(self, entry: str, artifact: Artifact, record: str) -> bool:
        try:
            if self.fs.exists(f"{entry}/{ENTRY}"):
                return False
            self.fs.put(str(artifact.path), f"{entry}/artifact/{artifact.filename}", recursive=artifact.path.is_dir())
            with self.fs.open(f"{entry}/{ENTRY}", "w") as fh:  # last: the entry is complete only with it
                fh.write(record)
        except Exception:  # noqa: BLE001 — a store that refuses (credentials, network): the export goes on without it
            return False
        return True

    def get_outputs(self, key: str) -> tuple[dict, dict] | None:
        """An artifact's outputs kept under ``key`` (``toolkit.verify.outputs``) and their record; None on a miss."""
        import io

        import numpy as np

        record = self.get_record(key)
        if record is None:
            return None
        entry = self._entry(key)
        try:
            if self.fs is None:
                data = Path(entry, OUTPUTS).read_bytes()
            else:
                with self.fs.open(f"{entry}/{OUTPUTS}", "rb") as fh:
                    data = fh.read()
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                outputs = {name: npz[name] for name in record["outputs"]}
        except Exception:  # noqa: BLE001 — unreadable, half-written or unreachable: the artifact runs again
            return None
        return outputs, record

    def put_outputs(self, key: str, outputs: dict, record: dict) -> bool:
        """Keep an artifact's outputs (by name, in order) under ``key``; False when not kept."""
        import io

        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, **outputs)
        text = json.dumps({**record, "kind": record.get("kind", "outputs"), "outputs": list(outputs)})
        return self._publish(key, {OUTPUTS: buf.getvalue()}, text)

    def _publish(self, key: str, files: dict[str, bytes], record: str) -> bool:
        """An entry of ``files`` and its ``entry.json`` (written last; locally, renamed into place whole)."""
        entry = self._entry(key)
        if self.fs is not None:
            try:
                for name, data in files.items():
                    with self.fs.open(f"{entry}/{name}", "wb") as fh:
                        fh.write(data)
                with self.fs.open(f"{entry}/{ENTRY}", "w") as fh:
                    fh.write(record)
            except Exception:  # noqa: BLE001 — the export goes on without it
                return False
            return True

        def fill(tmp: Path) -> None:
            for name, data in files.items():
                (tmp / name).write_bytes(data)

        return self._publish_local(key, fill, tuple(files), record)

    def _publish_local(self, key: str, fill: Callable[[Path], None], names: tuple[str, ...], record: str) -> bool:
        """Fill a temporary folder beside the entry, write ``entry.json`` last and rename it into place (atomic; the
        first writer of a key wins). An entry missing one of ``names`` or its ``entry.json`` (a file lost, a writer
        killed) is replaced. False when nothing was published (also: a cache folder this user cannot write)."""
        entry = self._entry(key)
        parent = Path(entry).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=parent))
        except OSError:
            return False
        try:
            fill(tmp)
            (tmp / ENTRY).write_text(record)
            if Path(entry).exists() and not all(Path(entry, name).exists() for name in (*names, ENTRY)):
                _remove(Path(entry))
            os.rename(tmp, entry)
            return True
        except OSError:
            return False
        finally:
            _remove(tmp)

    def entries(self) -> list[dict]:
        """Every complete entry (key, kind — conversion, outputs, cost, synthetic data —, format, precision, filename,
        bytes), most recently used first: local caches only."""
        if self.fs is not None:
            return []
        rows = []
        for marker in Path(self.base).glob(f"??/*/{ENTRY}"):
            try:  # another process may be trimming the same cache
                record = json.loads(marker.read_text())
                size = sum(f.stat().st_size for f in marker.parent.rglob("*") if f.is_file())
                used = marker.stat().st_mtime
            except (OSError, ValueError):
                continue
            rows.append({"key": marker.parent.name, "kind": record.get("kind", "conversion"), "format": record.get("format"),
                         "precision": record.get("precision"), "filename": record.get("filename"), "bytes": size, "used": used})
        return sorted(rows, key=lambda r: -r["used"])

    def trim(self, max_bytes: int) -> int:
        """Remove the least recently used entries until the cache holds at most ``max_bytes``; the bytes removed."""
        total, removed = 0, 0
        for row in self.entries():
            total += row["bytes"]
            if total > max_bytes:
                _remove(Path(self._entry(row["key"])))
                removed += row["bytes"]
        return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def conversion_key(module: torch.nn.Module, sample: torch.Tensor, spec, *, fmt: str, precision: str, variant: str,
                   options: dict, calibration: np.ndarray | None, network: bytes | None = None) -> str:
    """The sha256 of everything converting ``module`` to this target reads (the module docstring lists it);
    ``network``: ``network_digest(module)``, when already computed."""
    h = hashlib.sha256()

    def part(tag: str, data: bytes | str) -> None:
        data = data.encode() if isinstance(data, str) else data
        h.update(tag.encode() + b"\0" + len(data).to_bytes(8, "big") + data)

    part("skinkit", skinkit_version())
    part("converters", json.dumps(converter_versions(), sort_keys=True))
    part("network", network if network is not None else network_digest(module))
    part("sample", f"{tuple(sample.shape)} {sample.dtype}")
    part("spec", json.dumps(dataclasses.asdict(spec), sort_keys=True, default=_stable))
    part("target", json.dumps({"format": fmt, "precision": precision, "variant": variant}, sort_keys=True))
    rest = {k: v for k, v in options.items() if k != "calibration"}
    part("options", json.dumps(rest, sort_keys=True, default=_stable))
    if calibration is not None:
        import numpy as np

        c = np.ascontiguousarray(calibration)
        part("calibration", f"{c.shape} {c.dtype}")
        part("calibration-bytes", hashlib.sha256(c.tobytes()).digest())
    return h.hexdigest()


def network_digest(module: torch.nn.Module) -> bytes:
    """sha256 of a network's parameters and buffers (names, dtypes, shapes, bytes), its module tree and the source of
    every module class in it: two networks with one digest compute the same function."""
    import inspect


    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\0".encode())
        h.update(_tensor_bytes(t))
    h.update(repr(module).encode())
    for cls in sorted({type(m) for m in module.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            source = f"{cls.__module__}.{cls.__qualname__}"
        h.update(source.encode())
    return h.digest()


def _stable(obj) -> str:
    """A value JSON cannot hold, as text that is the same in every process (no memory addresses)."""
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"
    if isinstance(obj, (set, frozenset)):  # (JSON writes tuples itself)
        return repr(sorted(map(str, obj)))
    if hasattr(obj, "tolist"):
        return repr(obj.tolist())
    text = repr(obj)
    if " at 0x" in text:
        raise TypeError(f"{type(obj).__name__} has no stable form for a conversion key")
    return text


def _tensor_bytes(t) -> bytes:
    import io

    import torch

    try:
        return t.reshape(-1).view(torch.uint8).numpy().tobytes()
    except (RuntimeError, TypeError):  # a quantized or otherwise unviewable tensor: its serialised form
        buf = io.BytesIO()
        torch.save(t, buf)
        return buf.getvalue()


@functools.cache
def converter_versions() -> dict[str, str | None]:
    out = {}
    for name in CONVERTERS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.cache
def skinkit_version() -> str:
    """skinkit's version and, for a source checkout, a digest of its backends' code (conversion changes between
    commits of one version)."""
    from toolkit import __version__

    return f"{__version__} {_code_digest('backends/**/*.py', 'convert/*.py', 'load/contract.py')[:16]}"


def _code_digest(*patterns: str) -> str:
    """sha256 of skinkit's source files matching ``patterns`` (paths and bytes, in order)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted({f for pattern in patterns for f in root.glob(pattern)}):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def section_images(context: Context, spec, section, *, split: str, labelled: bool) -> TaskData:
    """``context.images`` of a recipe section (evaluation, calibration); synthetic images are kept in the context's
    cache by what makes them — the model spec, split, seed, count, whether labelled, and the generator's code — so a
    re-export does not draw the same images again (200 MobileNetV2 images: 3 s). Data whose targets are not one plain
    array is not kept."""
    import numpy as np

    from toolkit.data.records import TaskData

    def make() -> TaskData:
        return context.images(spec, section, split=split, labelled=labelled)

    if section.source != "synthetic" or not context.cache:
        return make()
    cache = ConversionCache(context.cache)
    identity = {"kind": "synthetic data", "spec": dataclasses.asdict(spec), "split": split, "seed": section.seed,
                "n": section.n, "labelled": labelled, "generator": _generator_digest()}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=_stable).encode()).hexdigest()
    hit = cache.get_outputs(key)
    if hit is not None:
        arrays, record = hit
        return TaskData(inputs=arrays["inputs"], targets=arrays["targets"], groups=tuple(record["groups"]), ita=arrays["ita"],
                        skin_masks=arrays.get("skin_masks"))
    data = make()
    if isinstance(data.targets, np.ndarray) and data.targets.dtype != object:
        arrays = {"inputs": data.inputs, "targets": data.targets, "ita": data.ita}
        if data.skin_masks is not None:
            arrays["skin_masks"] = data.skin_masks
        cache.put_outputs(key, arrays, {"kind": "synthetic data", "groups": list(data.groups)})
    return data


@functools.cache
def _generator_digest() -> str:
    """A digest of the synthetic generator's code and the tasks that shape its samples."""
    return _code_digest("data/*.py", "tasks/*.py")
