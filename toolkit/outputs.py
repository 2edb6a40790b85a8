"""Named outputs: a model's results travel as a dict keyed by output name, from the network through every
artifact's signature, runner, metric and manifest.

A network may return one tensor, a tuple or list of tensors (named in the spec's order), or a dict of
tensors (named by its keys). One tensor of shape ``(N, k)`` for a spec with ``k`` scalar outputs (a
regression head) is split into its ``k`` named columns, each ``(N, 1)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from toolkit.errors import BadInputError

if TYPE_CHECKING:
    import numpy as np
    import torch

Outputs = dict[str, "np.ndarray"]  # output name -> batch-first array, keys in the spec's order


def name_outputs(result: object, names: Sequence[str]) -> dict[str, "torch.Tensor"]:
    """The network's return value as ``{name: tensor}`` in ``names`` order; one line naming the cause and
    the fix when its structure does not match the declared outputs."""
    import torch

    names = tuple(names)
    if _tensor_like(result):
        if len(names) == 1:
            return {names[0]: result}
        # While torch.fx traces, shapes are unknown: the split was checked on real tensors before.
        if isinstance(result, torch.fx.Proxy) or (result.dim() == 2 and result.shape[1] == len(names)):
            return {n: result[:, j:j + 1] for j, n in enumerate(names)}
        raise BadInputError(f"the model returns one tensor of shape {list(result.shape)} but declares {len(names)} outputs "
                            f"({', '.join(names)})", fix="return one tensor per declared output (a tuple or a dict), "
                                                        "or declare a single output")
    if isinstance(result, Mapping):
        got = tuple(result)
        if set(got) != set(names):
            raise BadInputError(f"the model returns a dict with keys {', '.join(map(str, got)) or '(none)'} but declares "
                                f"outputs {', '.join(names)}", fix="declare the outputs under the dict's keys")
        items = [(n, result[n]) for n in names]
    elif isinstance(result, (tuple, list)):
        if result and len(result) != len(names) and all(isinstance(r, Mapping) for r in result):
            keys = ", ".join(map(str, result[0])) or "no keys"
            raise BadInputError(f"the model returns a list of {len(result)} dict(s) ({keys}), one per image, as torchvision's "
                                "detection models do in eval mode: each holds as many detections as the picture has, a size "
                                "no on-device format can hold",
                                fix="wrap the model so that it returns fixed-size tensors: the top K detections (torch.topk), "
                                    "padding with score 0, and a count of the valid ones (as skin_regions_maskrcnn does)")
        if len(result) != len(names):
            raise BadInputError(f"the model returns {len(result)} values but declares {len(names)} outputs ({', '.join(names)})",
                                fix="declare one output per returned value, in order, in the recipe's model.outputs")
        items = list(zip(names, result))
    else:
        raise BadInputError(f"the model returns a {type(result).__name__}, not tensors",
                            fix="return a tensor, a tuple or list of tensors, or a dict of tensors")
    bad = [n for n, v in items if not _tensor_like(v)]
    if bad:
        raise BadInputError(f"output {bad[0]!r} of the model is a {type(dict(items)[bad[0]]).__name__}, not a tensor",
                            fix="return tensors only (nested lists, dicts of lists and None are not exportable)")
    return dict(items)


def _tensor_like(value: object) -> bool:
    """A tensor, or what stands for one while torch.fx traces a network (quantizers trace the wrapped model)."""
    import torch
    import torch.fx

    return isinstance(value, (torch.Tensor, torch.fx.Proxy))
