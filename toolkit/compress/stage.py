"""Stage 2, compress: optional pruning on a copy of the loaded network, then the device contract baked
around it (what every artifact is converted from and verified against)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from toolkit.load.loader import LoadedModel

if TYPE_CHECKING:
    import torch

    from toolkit.context import Context
    from toolkit.load.contract import DeviceContract
    from toolkit.recipe import PruningConfig
    from toolkit.registry import ModelSpec


@dataclass(frozen=True)
class Compressed:
    loaded: LoadedModel  # the original network stays untouched in here
    model: torch.nn.Module  # the compressed network (the loaded one when the recipe compresses nothing)
    wrapped: DeviceContract  # the device contract around ``model``
    report: dict | None  # what compression changed, per module; None when nothing was compressed

    @property
    def spec(self) -> ModelSpec:
        return self.loaded.spec


def run(context: Context, loaded: LoadedModel) -> Compressed:
    from toolkit.compress import MagnitudePruner
    from toolkit.load.contract import DeviceContract
    from toolkit.load.stage import input_contract

    model, report = loaded.module, None
    p = context.recipe.compress.pruning
    if p is not None and p.method == "magnitude":
        model, report = MagnitudePruner(p.sparsity, p.scope, p.exclude, dict(p.overrides)).compress(model)
    elif p is not None:
        model, report = _prune_channels(context, loaded, p)
    wrapped = DeviceContract(model, loaded.spec, input_contract(context.recipe)).eval()
    return Compressed(loaded=loaded, model=model, wrapped=wrapped, report=report)


def uncompressed(context: Context, loaded: LoadedModel) -> Compressed:
    """The device contract around the loaded network as it is, compression not run: what ``skinkit export
    --dry-run`` checks the data and the metric names with (pruning with distillation takes minutes)."""
    from toolkit.load.contract import DeviceContract
    from toolkit.load.stage import input_contract

    wrapped = DeviceContract(loaded.module, loaded.spec, input_contract(context.recipe)).eval()
    return Compressed(loaded=loaded, model=loaded.module, wrapped=wrapped, report=None)


def _prune_channels(context: Context, loaded: LoadedModel, p: PruningConfig):
    """Remove channels, then (optionally) distil from the float model on unlabeled images."""
    import torch

    from toolkit._io import captured
    from toolkit.compress.channels import ChannelPruner, distill
    from toolkit.load.contract import to_network_input
    from toolkit.tasks.data import task_data

    spec = loaded.spec
    with captured(context.log_path):
        model, report = ChannelPruner(p.sparsity, p.exclude, dict(p.overrides)).compress(loaded.module, torch.zeros(1, 3, *spec.input_size))
    if p.distill is not None:
        d = p.distill
        images = to_network_input(task_data(spec, d.n, split="train", seed=d.seed, labelled=False).inputs, spec)
        report["distillation"] = distill(model, loaded.module, images, epochs=d.epochs, lr=d.lr, seed=d.seed)
    return model, report
