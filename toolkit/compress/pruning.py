"""Unstructured magnitude pruning of conv and linear weights, global or per layer."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from toolkit.compress.select import layer_ratios


@dataclass(frozen=True)
class MagnitudePruner:
    """Zero the smallest weights. ``scope: global`` ranks all layers at the global ratio together (one
    threshold); layers given their own ratio by ``overrides`` (``toolkit.compress.select``) and every layer
    under ``per_layer`` are thresholded alone."""

    sparsity: float
    scope: str = "global"  # or "per_layer"
    exclude: tuple[str, ...] = ()
    overrides: dict[str, float] = field(default_factory=dict)

    def _ratios(self, model) -> dict[str, float]:
        return layer_ratios(model, self.sparsity, self.overrides, self.exclude)

    def compress(self, model):
        """A pruned copy of ``model`` and a per-module report; ``model`` is left as it was."""
        import torch

        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {self.sparsity}")
        pruned = copy.deepcopy(model)
        ratios = self._ratios(pruned)
        modules = dict(pruned.named_modules())
        targets = [(n, modules[n], r) for n, r in ratios.items() if r > 0]
        if not targets:
            raise ValueError("no conv or linear layers left to prune after the exclusions and overrides")
        shared = [(n, m) for n, m, r in targets if self.scope == "global" and r == self.sparsity]
        with torch.no_grad():
            if shared:
                # One threshold in fp32 over all these weights at once (a float16 percentile is unreliable).
                mags = torch.cat([m.weight.detach().abs().flatten().float() for _, m in shared])
                threshold = torch.kthvalue(mags, max(1, int(self.sparsity * mags.numel()))).values
                for _, m in shared:
                    m.weight.mul_((m.weight.abs() > threshold).to(m.weight.dtype))
            alone = {n for n, _ in shared}
            for n, m, r in targets:
                if n not in alone:
                    w = m.weight.detach().abs().flatten().float()
                    m.weight.mul_((m.weight.abs() > torch.kthvalue(w, max(1, int(r * w.numel()))).values).to(m.weight.dtype))
        return pruned, self.report(pruned)

    def report(self, model) -> dict:
        """Achieved sparsity per pruned module and overall."""
        modules = dict(model.named_modules())
        rows = {}
        zeros = total = 0
        for name, target in self._ratios(model).items():
            if target == 0:
                continue
            w = modules[name].weight
            z, n = int((w == 0).sum()), w.numel()
            rows[name] = {"target": target, "sparsity": round(z / n, 4), "weights": n}
            zeros, total = zeros + z, total + n
        return {"method": f"magnitude ({self.scope})", "target_sparsity": self.sparsity,
                "achieved_sparsity": round(zeros / max(total, 1), 4), "excluded": list(self.exclude),
                "overrides": dict(self.overrides), "modules": rows}
