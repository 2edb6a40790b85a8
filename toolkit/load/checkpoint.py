"""Load weights safely: safetensors, or a torch state_dict read with ``weights_only=True``, or a
``torch.export`` program (.pt2). Mismatches are reported key by key."""

from __future__ import annotations

import hashlib
from pathlib import Path

from toolkit.errors import CheckpointError

STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
EXPORTED_SUFFIXES = (".pt2",)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _require_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}", fix="check the path in the recipe's model.checkpoint "
                                                                              "(relative paths are resolved against the recipe's folder)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a file: {path}", fix="point model.checkpoint at a .safetensors, .pt/.pth or .pt2 file")


def read_state_dict(path: Path) -> dict:
    """A flat ``{name: tensor}`` mapping from a safetensors or torch file."""
    import torch

    _require_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"corrupt safetensors checkpoint {path}: {exc}", fix="re-save the weights (safetensors.torch.save_file) "
                                                                                           "or retrain with `skinkit train`") from None
    if path.suffix not in STATE_DICT_SUFFIXES:
        raise CheckpointError(f"unsupported checkpoint type {path.suffix!r}: {path}", fix=f"use one of {', '.join(STATE_DICT_SUFFIXES + EXPORTED_SUFFIXES)}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for bad files
        refused = "weights_only" in str(exc) or "Unsupported global" in str(exc)
        kind = "contains objects other than tensors (weights_only refuses to unpickle them)" if refused else f"cannot be read ({type(exc).__name__})"
        raise CheckpointError(f"checkpoint {path} {kind}", fix="save only the state_dict: torch.save(model.state_dict(), path), or use safetensors") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict of tensors",
                              fix="save only the state_dict: torch.save(model.state_dict(), path)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_into(model, state: dict, path: Path) -> None:
    """Load ``state`` strictly; on mismatch, one error naming missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)})" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''} ({len(missing)} in all)")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected[:8])}{' …' if len(unexpected) > 8 else ''} ({len(unexpected)} in all)")
        if shapes:
            parts.append(f"shape mismatches: {'; '.join(shapes[:5])}")
        raise CheckpointError(f"checkpoint {path} does not match the model — {'; '.join(parts)}",
                              fix="use the checkpoint trained for this architecture and width, or the matching factory")
    model.load_state_dict(state, strict=True)


def load_exported(path: Path):
    """A ``torch.export`` program (.pt2) as an eval-mode module."""
    import torch

    from toolkit.load import torchvision_support

    _require_file(path)
    torchvision_support.prepare_for_program(path)  # its torchvision:: ops, if any, must exist before it loads
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        raise CheckpointError(f"cannot load exported program {path}: {type(exc).__name__}: {str(exc)[:200]}",
                              fix="re-export with torch.export.export(model, args) and torch.export.save(ep, path)") from None
    return ep.module()
