"""torchvision for a user's model: import it with skinkit's plain-torch operators when its C++ extension does
not load, and say in one line how to install it when it is missing.

The only torchvision pinned to torch 2.13.0 is a CUDA build (0.28.0+cu130): its ``_C`` library needs CUDA's, so
on the CPU torch ``import torchvision`` fails. ``prepare`` imports it with ``torch.ops.load_library`` wrapped for
that one import: when torchvision's ``_C`` does not load, ``toolkit.load.vision_ops`` defines the operators
instead and torchvision goes on as if its extension had loaded (its own meta, autograd and autocast
registrations included). A torchvision whose extension loads is left as it is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import zipfile
from pathlib import Path

from toolkit.errors import BadInputError

INSTALL = "pip install --no-deps torchvision==0.28.0"
INSTALL_FIX = (f"{INSTALL} (skinkit replaces its CUDA-only C++ ops with plain-torch nms/roi_align/roi_pool); never a plain "
               "`pip install torchvision`, which replaces the CPU torch 2.13.0 with a CUDA build")
REPLACED = "C++ ops replaced by skinkit's plain-torch nms/roi_align/roi_pool"

_state: dict = {}  # "error": why torchvision did not import, even with the fallback


def _purge() -> None:
    """Forget a torchvision import that failed earlier in this process (its submodules stay in sys.modules)."""
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


@contextlib.contextmanager
def _fallback_for_extension(package: Path):
    """While it is active, a failure to load torchvision's ``_C`` library registers the plain-torch operators
    instead of raising, so torchvision's ``_has_ops()`` is true."""
    import torch

    from toolkit.load import vision_ops

    original = torch.ops.load_library

    def load_library(path):
        try:
            return original(path)
        except OSError:
            lib = Path(path).resolve()
            if lib.parent != package or lib.name.split(".")[0] != "_C" or not vision_ops.register(fakes=False):
                raise

    torch.ops.load_library = load_library
    try:
        yield
    finally:
        del torch.ops.load_library  # the instance attribute; the method is back


def prepare() -> str | None:
    """Make ``import torchvision`` work in this process if torchvision is installed; what provenance records
    (its version, and whether its C++ ops were replaced), or None when it is not installed or does not import."""
    if sys.modules.get("torchvision") is None:
        spec = importlib.util.find_spec("torchvision")
        if spec is None or spec.origin is None or "error" in _state:
            return None
        _purge()
        with _fallback_for_extension(Path(spec.origin).resolve().parent):
            try:
                import torchvision  # noqa: F401
            except Exception as exc:  # reported when the user's file imports it (import_error)
                _purge()
                _state["error"] = f"{type(exc).__name__}: {exc}"
                return None
        from toolkit.load import vision_ops

        if vision_ops.registered():
            vision_ops.register_fakes(["nms", "qnms"])  # torchvision's declare >= 2 kept boxes
    return provenance().get("torchvision")


def _mentions_torchvision(path: Path) -> bool:
    """Whether a torch.export archive's graphs call ``torchvision::`` operators."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(b"torch.ops.torchvision." in archive.read(name) for name in archive.namelist()
                       if name.endswith(".json") and "/models/" in f"/{name}")
    except (zipfile.BadZipFile, OSError):
        return False  # torch.export.load reports what is wrong with the file


def prepare_for_program(path: Path) -> str | None:
    """Before loading a .pt2 program: if it calls ``torchvision::`` operators, torchvision's (``prepare``) or,
    without torchvision, skinkit's plain-torch ones (with fake kernels); what provenance records, or None."""
    if not _mentions_torchvision(path):
        return None
    if prepare() is None and importlib.util.find_spec("torchvision") is None:
        from toolkit.load import vision_ops

        vision_ops.register(fakes=True)
    return provenance().get("torchvision")


def provenance() -> dict:
    """``{"torchvision": ...}``: the version imported in this process and whether its C++ ops were replaced;
    ``{}`` when neither torchvision nor skinkit's operators are in use."""
    ops = sys.modules.get("toolkit.load.vision_ops")
    replaced = ops is not None and ops.registered()
    tv = sys.modules.get("torchvision")
    if tv is not None:
        version = getattr(tv, "__version__", "unknown version")
        return {"torchvision": f"{version}, {REPLACED}" if replaced else version}
    return {"torchvision": "not installed; torchvision:: ops run on skinkit's plain-torch kernels"} if replaced else {}


def import_error(path: Path, exc: BaseException) -> BadInputError | None:
    """The one-line error for a user's file whose import failed because of torchvision, or None."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "torchvision" \
            and importlib.util.find_spec("torchvision") is None:
        return BadInputError(f"{path} imports torchvision, which is not installed", fix=INSTALL_FIX)
    if "error" in _state and _state["error"] == f"{type(exc).__name__}: {exc}":  # the user's file met the same failure
        return BadInputError(f"importing {path} failed: torchvision does not import ({_state['error'][:300]})",
                             fix=f"reinstall it with {INSTALL}, the build pinned to torch 2.13.0")
    return None
