"""Unstructured magnitude pruning of conv and linear weights, global or per layer."""

from __future__ import annotations

import copy
from dataclasses import dataclass


@dataclass(frozen=True)
class MagnitudePruner:
    sparsity: float
    scope: str = "global"  # or "per_layer"
    exclude: tuple[str, ...] = ()

    def _targets(self, model):
        from torch import nn

        return [(name, m) for name, m in model.named_modules()
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d))
                and not any(name == p or name.startswith(p + ".") for p in self.exclude)]

    def compress(self, model):
        """A pruned copy of ``model`` and a per-module report."""
        import torch

        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {self.sparsity}")
        pruned = copy.deepcopy(model)
        targets = self._targets(pruned)
        if not targets:
            raise ValueError("no conv or linear layers left to prune after the exclusions")
        with torch.no_grad():
            if self.scope == "global":
                # Threshold in fp32 over all weights at once (a float16 percentile is unreliable).
                mags = torch.cat([m.weight.detach().abs().flatten().float() for _, m in targets])
                k = max(1, int(self.sparsity * mags.numel()))
                threshold = torch.kthvalue(mags, k).values
                for _, m in targets:
                    m.weight.mul_((m.weight.abs() > threshold).to(m.weight.dtype))
            else:
                for _, m in targets:
                    w = m.weight.detach().abs().flatten().float()
                    k = max(1, int(self.sparsity * w.numel()))
                    m.weight.mul_((m.weight.abs() > torch.kthvalue(w, k).values).to(m.weight.dtype))
        return pruned, self.report(pruned)

    def report(self, model) -> dict:
        modules = {}
        zeros = total = 0
        for name, m in self._targets(model):
            z, n = int((m.weight == 0).sum()), m.weight.numel()
            modules[name] = {"sparsity": round(z / n, 4), "weights": n}
            zeros, total = zeros + z, total + n
        return {"method": f"magnitude ({self.scope})", "target_sparsity": self.sparsity,
                "achieved_sparsity": round(zeros / max(total, 1), 4), "excluded": list(self.exclude), "modules": modules}
