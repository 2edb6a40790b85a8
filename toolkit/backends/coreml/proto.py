"""Core ML's protobuf messages without importing coremltools.

``import coremltools`` imports torch, TensorFlow and torchao (10–30 s), and ``coremltools.utils.load_spec``
rewrites the package's Manifest.json (so callers copy the package first). Reading what a package declares
(``skinkit inspect``) needs neither: the generated ``*_pb2`` modules coremltools ships are plain protobuf code,
loaded here from its ``proto`` folder under a package of our own, and the spec is parsed from the file the
package's manifest names. The message classes are the ones coremltools' own import yields (protobuf keeps one
class per message type), so either import order works.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

_ALIAS = "_skinkit_coremltools_proto"


def coremltools():
    """``import coremltools`` without its TensorFlow frontend, which skinkit does not use: coremltools imports TensorFlow
    whenever it is installed (4 s and 700 MB in a process that converts to Core ML only; an export whose TFLite
    targets convert in a second process never needs it here). Where TensorFlow is already loaded, nothing changes."""
    if "coremltools" not in sys.modules and "tensorflow" not in sys.modules:
        sys.modules["tensorflow"] = None  # coremltools' probe gets an ImportError
        try:
            import coremltools as ct  # noqa: F401
        finally:
            sys.modules.pop("tensorflow", None)
    return sys.modules["coremltools"]


def module(name: str):
    """coremltools' generated protobuf module ``name`` (``Model_pb2``, ``MIL_pb2``, ``FeatureTypes_pb2``)."""
    loaded = sys.modules.get(f"coremltools.proto.{name}")
    if loaded is not None:
        return loaded
    if _ALIAS not in sys.modules:
        found = importlib.util.find_spec("coremltools")
        if found is None or not found.submodule_search_locations:
            raise ModuleNotFoundError("coremltools is not installed")
        package = types.ModuleType(_ALIAS)
        package.__path__ = [str(Path(found.submodule_search_locations[0]) / "proto")]
        package.__package__ = _ALIAS
        sys.modules[_ALIAS] = package
    return importlib.import_module(f"{_ALIAS}.{name}")


def spec_file(path: Path) -> Path:
    """The model specification inside an ``.mlpackage`` (the manifest's root model), or an ``.mlmodel`` itself."""
    path = Path(path)
    if path.is_file():
        return path
    manifest = json.loads((path / "Manifest.json").read_text(encoding="utf-8"))
    entry = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
    return path / "Data" / entry["path"]


def read_spec(path: Path):
    """The package's ``CoreML.Specification.Model``, parsed from the file; the package is not written to."""
    model = module("Model_pb2").Model()
    model.ParseFromString(spec_file(path).read_bytes())
    return model
