"""Structured channel pruning that removes channels, so the exported graph is smaller and faster.

Torch-Pruning (``torch_pruning``) traces the network and groups every layer a channel touches — the
convolution that makes it, the BatchNorm that scales it, the convolutions that read it, both sides of a
residual add, every input of a concatenation — and removes whole groups, ranked by their weights' L1 norm.
The layer that makes the network's output, layers feeding a PixelShuffle, and modules given ratio 0 (``exclude``,
``overrides``: ``toolkit.compress.select``) keep their channels.
Pruning alone costs accuracy; ``distill`` recovers it without labels: the pruned network learns to
reproduce the float network's outputs on unlabeled images (mean squared error).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from toolkit.backends.weights import is_weighted, weighted_layers
from toolkit.compress.select import layer_ratios
from toolkit.errors import BadInputError


@dataclass(frozen=True)
class ChannelPruner:
    ratio: float  # fraction of each prunable layer's channels removed
    exclude: tuple[str, ...] = ()
    overrides: dict[str, float] = field(default_factory=dict)  # module type / name → ratio (toolkit.compress.select)
    round_to: int = 8  # channel counts stay multiples of this (vector units like them)

    def compress(self, model, example):
        """A copy of ``model`` with channels removed, and a per-module report. ``example``: a network input.
        ``model`` is left as it was."""
        import torch
        import torch_pruning as tp

        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")
        pruned = copy.deepcopy(model).eval()
        with torch.no_grad():
            before = [tuple(v.shape) for v in _values(pruned(example))]
        ratios = layer_ratios(pruned, self.ratio, self.overrides, self.exclude)
        modules = dict(pruned.named_modules())
        output_layer = next(reversed(ratios))
        shuffled = feeds_pixel_shuffle(pruned, example)
        keep = {n for n, r in ratios.items() if r == 0} | {output_layer} | set(shuffled)
        own = {modules[n]: r for n, r in ratios.items() if n not in keep and r != self.ratio}
        try:
            pruner = tp.pruner.MagnitudePruner(pruned, example, importance=tp.importance.MagnitudeImportance(p=1),
                                               pruning_ratio=self.ratio, pruning_ratio_dict=own or None,
                                               ignored_layers=[modules[n] for n in sorted(keep)], round_to=self.round_to)
            pruner.step()
            with torch.no_grad():
                shapes = [tuple(v.shape) for v in _values(pruned(example))]
        except Exception as exc:  # the dependency tracer's own errors
            raise BadInputError(f"channel pruning cannot trace this network: {type(exc).__name__}: {str(exc)[:200]}",
                                fix="list the modules it cannot follow (e.g. attention projections) in "
                                    "compress.pruning.exclude or set them to 0 in overrides, or use method: magnitude") from None
        if shapes != before:  # only the last layer is kept whole: another head's output lost channels
            raise BadInputError(f"channel pruning changed the network's output shapes from {before} to {shapes}",
                                fix="keep the layer that produces each output whole: list it in compress.pruning.exclude")
        return pruned, self.report(model, pruned, example, kept={output_layer: "the output layer", **{n: "feeds a PixelShuffle" for n in shuffled}})

    def report(self, original, pruned, example, kept: dict[str, str] | None = None) -> dict:
        """Channels per changed module, MACs and parameters before and after."""
        import torch_pruning as tp

        macs0, params0 = tp.utils.count_ops_and_params(original, example)
        macs1, params1 = tp.utils.count_ops_and_params(pruned, example)
        before = {n: _channels(m) for n, m in weighted_layers(original)}
        after = {n: _channels(m) for n, m in weighted_layers(pruned)}
        return {
            "method": "channels (L1, dependency groups: Torch-Pruning)", "ratio": self.ratio, "excluded": list(self.exclude),
            "overrides": dict(self.overrides), "kept_automatically": kept or {},
            "macs": {"before": int(macs0), "after": int(macs1), "ratio": round(macs1 / macs0, 4)},
            "params": {"before": int(params0), "after": int(params1), "ratio": round(params1 / params0, 4)},
            "modules": {n: {"out_channels": [before[n], after.get(n)]} for n in before if before[n] != after.get(n)},
        }


def feeds_pixel_shuffle(model, example) -> list[str]:
    """The weighted layers whose output channels a PixelShuffle regroups into space: removing one of them
    would scramble the upsampled image, and the dependency tracer does not follow the regrouping. Found by
    running ``example`` and taking, for each PixelShuffle call, the last weighted layer called before it."""
    import torch

    calls: list[tuple[str, object]] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: calls.append((n, mod))) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    found = []
    for i, (_, mod) in enumerate(calls):
        if isinstance(mod, (torch.nn.PixelShuffle, torch.nn.PixelUnshuffle)):
            before = [n for n, m in calls[:i] if is_weighted(m)]
            if before and before[-1] not in found:
                found.append(before[-1])
    return found


def _channels(m) -> int:
    import torch.nn as nn

    if isinstance(m, nn.Linear):
        return m.out_features
    return m.out_channels


def _values(y) -> list:
    """The tensors a network returned (one, a tuple or list, or a dict by key order), in order."""
    if isinstance(y, dict):
        return [y[k] for k in sorted(y)]
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _flat(y):
    """Every output of a network side by side, one row per image: what distillation matches."""
    import torch

    return torch.cat([v.reshape(len(v), -1) for v in _values(y)], dim=1)


def distill(student, teacher, images, *, epochs: int, lr: float, batch_size: int = 16, seed: int = 0, threads: int | None = None) -> dict:
    """Train ``student`` to reproduce ``teacher``'s outputs on ``images`` (network inputs, no labels). Returns
    the mean squared error before and after, measured on the same images in eval mode."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    teacher = teacher.eval()
    with torch.no_grad():
        targets = torch.cat([_flat(teacher(images[i:i + batch_size])) for i in range(0, len(images), batch_size)])

    def mse() -> float:
        student.eval()
        with torch.no_grad():
            out = torch.cat([_flat(student(images[i:i + batch_size])) for i in range(0, len(images), batch_size)])
        return float(torch.mean((out - targets) ** 2))

    start = mse()
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * ((len(images) + batch_size - 1) // batch_size)))
    for _ in range(epochs):
        student.train()
        order = torch.randperm(len(images))
        for i in range(0, len(images), batch_size):
            idx = order[i:i + batch_size]
            loss = torch.mean((_flat(student(images[idx])) - targets[idx]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    student.eval()
    return {"images": int(len(images)), "epochs": epochs, "lr": lr, "mse_before": round(start, 6), "mse_after": round(mse(), 6)}
