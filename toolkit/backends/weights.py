"""Matching an artifact's weight tensors to PyTorch layers: shared by the culprit finder and by backends that
must find a layer's ops again after conversion renamed them (TFLite mixed precision)."""

from __future__ import annotations

import copy
import itertools

import numpy as np

from toolkit.backends.base import ArtifactWeight

MIN_MATCH_COSINE = 0.5  # unrelated tensors of one shape score about 1/sqrt(size)


def is_weighted(module) -> bool:
    """A conv, transposed conv or linear layer (or a subclass of one): what compressors act on and what
    an artifact's weight tensors are matched against."""
    from torch import nn

    return isinstance(module, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d))


def weighted_layers(model) -> list[tuple[str, object]]:
    """(name, module) of every conv and linear layer, in registration order."""
    return [(n, m) for n, m in model.named_modules() if is_weighted(m)]


def matchable_layers(model) -> dict[str, object]:
    """Layer path -> conv / linear module whose weight an artifact's tensors are matched against."""
    return {name: m for name, m in weighted_layers(model) if m.weight.dim() >= 2}


def fold_batchnorm(model):
    """The network with BatchNorm folded into the preceding convolutions (module paths kept)."""
    import torch.fx
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy.deepcopy(model).eval())
    except (torch.fx.proxy.TraceError, TypeError, NotImplementedError, RuntimeError):
        return copy.deepcopy(model).eval()  # not fx-traceable: match against unfolded weights


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def _aligned(torch_w: np.ndarray, art: np.ndarray) -> np.ndarray | None:
    """``art`` in ``torch_w``'s axis order, choosing the transpose most similar to it (None: no shape fits)."""
    if art.size != torch_w.size or art.ndim != torch_w.ndim:
        return None
    best, best_cos = None, -2.0
    for perm in itertools.permutations(range(art.ndim)):
        cand = np.transpose(art, perm)
        if cand.shape == torch_w.shape:
            c = cosine(torch_w, cand)
            if c > best_cos:
                best, best_cos = cand, c
    return best


def match_weights(layers: dict[str, object], weights: list[ArtifactWeight]) -> dict[str, tuple[ArtifactWeight, np.ndarray, float]]:
    """Layer path -> (artifact tensor, its value in the layer's axis order, cosine), one-to-one, most similar first."""
    scored = []
    for name, layer in layers.items():
        tw = layer.weight.detach().numpy()
        for j, aw in enumerate(weights):
            aligned = _aligned(tw, aw.array)
            if aligned is not None:
                scored.append((cosine(tw, aligned), name, j, aligned))
    scored.sort(key=lambda t: -t[0])
    matched: dict[str, tuple[ArtifactWeight, np.ndarray, float]] = {}
    used: set[int] = set()
    for cos, name, j, aligned in scored:
        if name in matched or j in used or cos < MIN_MATCH_COSINE:
            continue
        matched[name] = (weights[j], aligned, cos)
        used.add(j)
    return matched
