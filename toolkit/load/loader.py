"""Resolve a recipe's model reference to an eval-mode module, its spec and its provenance."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from toolkit.errors import BadInputError, CheckpointError
from toolkit.load import checkpoint as ckpt
from toolkit.load import torchvision_support
from toolkit.registry import ModelSpec, get_spec

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "models" / "weights"


@dataclass(frozen=True)
class LoadedModel:
    module: "object"  # torch.nn.Module in eval mode, taking normalized NCHW input
    spec: ModelSpec
    provenance: dict = field(default_factory=dict)


def shipped_checkpoint(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def _import_factory(ref: str, base: Path):
    file_part, _, attr = ref.rpartition(":")
    path = (base / file_part).resolve() if not Path(file_part).is_absolute() else Path(file_part)
    if not path.is_file():
        raise BadInputError(f"model factory file not found: {path}", fix="write model.name as 'path/to/file.py:factory', relative to the recipe")
    mod_name = f"skinkit_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    torchvision_support.prepare()  # torchvision, if installed, imports with plain-torch ops where its C++ ones do not load
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise torchvision_support.import_error(path, exc) or BadInputError(f"importing {path} failed: {type(exc).__name__}: {exc}",
                                                                           fix="make the file importable on its own") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise BadInputError(f"{path} has no callable {attr!r}", fix="name a function or class in that file that builds the model")
    return factory


def build_module(factory, ref: str):
    """``factory()``, checked: whatever it raises, or anything other than a ``torch.nn.Module`` it returns, is one
    line naming the factory (``ref``) and the cause."""
    import torch

    try:
        with torch.device("cpu"):
            module = factory()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise BadInputError(f"the model factory {ref} raised {type(exc).__name__}: {first}".rstrip(": "),
                            fix="make the factory build the model with no arguments") from None
    if not isinstance(module, torch.nn.Module):
        raise BadInputError(f"the model factory {ref} returned {type(module).__name__}, not a torch.nn.Module",
                            fix="return the network itself (an nn.Module), not its class, weights or outputs")
    return module


def load_model(name: str, *, checkpoint: Path | None = None, spec_from: str | None = None, base_dir: Path = Path("."),
               spec: ModelSpec | None = None) -> LoadedModel:
    """Load a registered model (shipped weights unless ``checkpoint``) or a user's ``file.py:factory``
    / ``.pt2`` program, whose contract is ``spec`` (``toolkit.load.describe.user_spec``) or borrowed from
    the registered ``spec_from``."""

    if name.endswith(".pt2") or ":" in name:
        if spec is None and spec_from is None:
            raise BadInputError(f"model {name!r} is not registered, so its input contract is unknown",
                                fix="describe it in the recipe (model: task, input_size, normalization, labels) "
                                    "or borrow a registered model's contract with model.spec_from")
        base_spec = spec or get_spec(spec_from)
        described = {"spec_from": spec_from} if spec_from else {"described_by": "recipe"}
        if name.endswith(".pt2"):
            path = (base_dir / name).resolve()
            module = ckpt.load_exported(path)
            spec = replace(base_spec, name=path.stem, factory=lambda: module)
            return LoadedModel(module, spec, {"source": "torch.export program", "checkpoint": str(path),
                                              "checkpoint_sha256": ckpt.sha256(path), **described,
                                              **torchvision_support.provenance()})
        factory = _import_factory(name, base_dir)
        if checkpoint is None:
            raise CheckpointError(f"model {name!r} has no checkpoint", fix="set model.checkpoint to its trained weights (.safetensors or .pt)")
        spec = replace(base_spec, name=Path(name.rpartition(":")[0]).stem, factory=factory)
        source = "user factory"
        extra = {**described, **torchvision_support.provenance()}
    else:
        spec = get_spec(name)
        factory = spec.factory
        source = "skinkit reference model"
        extra = {}
        if checkpoint is None:
            checkpoint = shipped_checkpoint(name)
            if not checkpoint.exists():
                raise CheckpointError(f"no trained weights shipped for {name} at {checkpoint}", fix=f"run `skinkit train {name}` to create them")

    path = checkpoint if checkpoint.is_absolute() else (base_dir / checkpoint).resolve()
    state = ckpt.read_state_dict(path)
    module = build_module(factory, name)
    ckpt.load_into(module, state, path)
    module.eval()
    return LoadedModel(module, spec, {"source": source, "checkpoint": str(path), "checkpoint_sha256": ckpt.sha256(path),
                                      "checkpoint_format": path.suffix.lstrip("."), **extra})
