"""Regression: one scalar per named output (each (N, 1), or one (N, k) head split into k named columns);
MAE, RMSE, Pearson, ICC against truth and against float, Bland–Altman against float.

ICC is ICC(A,1), two-way, absolute agreement, single measurement (McGraw & Wong 1996).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import DataError
from toolkit.registry import Tolerance
from toolkit.tasks import measures
from toolkit.tasks.base import Task


class Regression(Task):
    name = "regression"
    headline = "mae"
    higher_is_better = False
    lower_is_better = ("mae", "rmse")
    undirected = ("ba_bias", "ba_loa_low", "ba_loa_high")
    # A user's regression outputs have units skinkit cannot know: by default they are gated on numerics
    # against float; a budget on MAE (``tolerances.<tier>.max_metric_drop``) is the recipe's, in its units.
    default_tolerances = {"fp32": Tolerance(min_cosine=0.99999), "fp16": Tolerance(min_cosine=0.9999),
                          "int8": Tolerance(min_cosine=0.995), "lowbit": Tolerance(min_cosine=0.99)}

    def reads(self, spec) -> tuple[str, ...]:
        return tuple(o.name for o in spec.outputs)

    def read(self, outputs, spec) -> np.ndarray:
        """Every output's columns side by side, in the spec's order: (N, k)."""
        cols = [outputs[o.name] for o in spec.outputs]
        return np.concatenate([c.reshape(len(c), -1) for c in cols], axis=1)

    # The scalars the synthetic generator annotates, by the output name a regression model gives them.
    SYNTHETIC = ("hydration", "tewl")

    def check_outputs(self, spec, outputs) -> None:
        from toolkit.errors import BadInputError

        wide = {n: list(v.shape[1:]) for n, v in outputs.items() if v.reshape(len(v), -1).shape[1] != 1}
        if wide:
            name, shape = next(iter(wide.items()))
            raise BadInputError(f"the regression task reads one scalar per output, but {name!r} has shape {shape} per image",
                                fix="return one value per image for each declared output")

    def synthetic_problem(self, spec) -> str | None:
        unknown = [o.name for o in spec.outputs if o.name not in self.SYNTHETIC]
        return f"the synthetic data annotates {', '.join(self.SYNTHETIC)}, not {', '.join(unknown)}" if unknown else None

    def synthetic_target(self, sample, spec) -> np.ndarray:
        problem = self.synthetic_problem(spec)
        if problem:
            raise DataError(problem, fix="name the outputs after those, or evaluate on a folder whose labels.csv has a column per output "
                                         "(evaluation: {source: folder, folder: ...})")
        return np.array([getattr(sample, o.name) for o in spec.outputs], np.float32)

    def stack_targets(self, targets: list) -> np.ndarray:
        return np.stack(targets).astype(np.float32)

    def targets_from(self, ref: np.ndarray) -> np.ndarray:
        return ref.astype(np.float32)

    def folder_columns(self, spec) -> list[str]:
        return [o.name for o in spec.outputs]

    def folder_target(self, row: dict, *, spec, folder: Path, where: str) -> list[float]:
        try:
            return [float(row[o.name]) for o in spec.outputs]
        except (KeyError, ValueError, TypeError):
            cols = ",".join(o.name for o in spec.outputs)
            raise DataError(f"{where}: needs numeric columns {cols}", fix=f"add columns {cols}") from None

    def folder_write(self, data, i: int, *, spec, folder: Path, name: str):
        return data.inputs[i], [f"{v:.4f}" for v in data.targets[i]]

    def loss(self, spec, model):
        import torch.nn.functional as F

        # Train in standardized units: the model's own in-graph output scale.
        scale = model.out_scale.detach()
        return lambda out, y: F.smooth_l1_loss(out / scale, y / scale)

    def targets_tensor(self, targets: np.ndarray):
        import torch

        return torch.from_numpy(targets.astype(np.float32))

    def quick_metrics(self, out, targets, *, num_classes=0, output_names=()) -> dict[str, float]:
        per = np.mean(np.abs(out.astype(np.float64) - targets), axis=0)
        names = output_names or tuple(str(i) for i in range(len(per)))
        return {"mae": float(per.mean()), **{f"mae_{n}": float(v) for n, v in zip(names, per)}}

    def per_image(self, out, targets, ref, *, labels=(), probabilities=False) -> dict[str, np.ndarray]:
        n = len(out)
        o, t, f = (v.astype(np.float64).reshape(n, -1) for v in (out, targets, ref))
        return {"one": np.ones((n, 1)),
                **{f"{k}_{m}": v for k, (x, y) in (("gt", (o, t)), ("fl", (o, f)))
                   for m, v in (("x", x), ("y", y), ("xx", x * x), ("yy", y * y), ("xy", x * y), ("ad", np.abs(x - y)))}}

    def aggregate(self, sums, *, labels=(), output_names=()) -> dict[str, np.ndarray]:
        div, s = measures.ratio, sums
        n = s["one"][:, 0][:, None]
        out: dict[str, np.ndarray] = {}
        for key, suffix in (("gt", ""), ("fl", "_vs_float")):
            mx, my = s[f"{key}_x"] / n, s[f"{key}_y"] / n
            vx, vy = s[f"{key}_xx"] / n - mx**2, s[f"{key}_yy"] / n - my**2
            cxy = s[f"{key}_xy"] / n - mx * my
            d_mean = mx - my
            d_var = np.maximum(vx + vy - 2 * cxy, 0.0)
            mae = s[f"{key}_ad"] / n
            rmse = np.sqrt(np.maximum(d_var + d_mean**2, 0.0))
            pearson = div(cxy, np.sqrt(np.maximum(vx * vy, 0.0)))
            # ICC(A,1) for k = 2 raters from the pairs' moments (mean squares of the two-way ANOVA).
            g = (mx + my) / 2
            ssr = 2 * n * (vx + vy + 2 * cxy) / 4  # k Σ (subject mean - g)², k = 2
            ssc = n * ((mx - g) ** 2 + (my - g) ** 2)
            sst = n * (vx + (mx - g) ** 2 + vy + (my - g) ** 2)
            msr, msc, mse = ssr / (n - 1), ssc, (sst - ssr - ssc) / (n - 1)
            icc = div(msr - mse, msr + mse + 2.0 / n * (msc - mse))
            for j, name in enumerate(output_names):
                out[f"mae{suffix}.{name}"] = mae[:, j]
                out[f"rmse{suffix}.{name}"] = rmse[:, j]
                out[f"pearson{suffix}.{name}"] = pearson[:, j]
                out[f"icc{suffix}.{name}"] = icc[:, j]
                if key == "fl":
                    sd = np.sqrt(d_var[:, j] * n[:, 0] / np.maximum(n[:, 0] - 1, 1))
                    out[f"ba_bias.{name}"] = d_mean[:, j]
                    out[f"ba_loa_low.{name}"] = d_mean[:, j] - 1.96 * sd
                    out[f"ba_loa_high.{name}"] = d_mean[:, j] + 1.96 * sd
            if key == "gt":
                out["mae"] = mae.mean(axis=1)
        return out
