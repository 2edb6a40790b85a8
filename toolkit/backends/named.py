"""A network whose outputs are named as its spec declares, for converters that take a plain module."""

from __future__ import annotations

from collections.abc import Sequence


def named_module(module, names: Sequence[str], *, as_dict: bool = False):
    """``module`` returning its declared outputs: one tensor for one output (the module itself is returned,
    so a single-output graph is what it always was), otherwise a tuple in ``names`` order, or a dict by name
    where ``as_dict`` (signatures that name their outputs)."""
    import torch

    from toolkit.outputs import name_outputs

    names = tuple(names)
    if len(names) == 1 and not as_dict:
        return module

    class Named(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            outs = name_outputs(self.inner(image), names)
            return outs if as_dict else tuple(outs.values())

    return Named(module).eval()
