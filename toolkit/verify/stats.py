"""Task metric sets with percentile-bootstrap 95 % confidence intervals.

Every metric is computed from per-image statistics (each task's ``per_image``, ``toolkit.tasks``), so a bootstrap replicate is a
weighted sum: a replicate draws images with replacement, which is a vector of counts ``w`` (N,),
and its statistic sums are ``w @ stats``. All replicates are one matrix product (``Bootstrap``),
and a subgroup is the same computation on its own rows. The float model and the artifact are
resampled with the same counts, so the CI of a *drop* is a paired interval.

Metrics by task (defined in ``toolkit/tasks/<task>.py``; names as they appear in reports and in ``tolerances.<precision>.margins``):

- classification: ``accuracy``, ``macro_f1``, ``recall.<class>``, ``agreement`` (top-1 with float),
  ``calibration_error`` (ECE, 15 equal-width confidence bins); plus a confusion matrix.
- regression, per output ``<o>``: ``mae.<o>``, ``rmse.<o>``, ``pearson.<o>``, ``icc.<o>`` against ground
  truth, the same as ``mae_vs_float.<o>`` … against the float model, and Bland–Altman ``ba_bias.<o>``,
  ``ba_loa_low.<o>``, ``ba_loa_high.<o>`` (artifact minus float); ``mae`` averages the outputs' MAE.
- segmentation: ``dice.<class>``, ``iou.<class>``, ``miou``, ``dice_mean``, ``pixel_accuracy``,
  ``area_error.<class>`` (mean absolute error of the class's image fraction, in percentage points),
  ``agreement`` (per-pixel argmax with float).
- super-resolution: ``psnr``, ``ssim`` against the high-resolution truth, ``psnr_vs_float``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.tasks import TASKS, get_task


def direction(name: str) -> int:
    """+1 if higher is better, -1 if lower is better, 0 if the metric has no better side (each task
    declares its lower-is-better and undirected metric families; all others are higher-is-better)."""
    leaf = name.split(".")[0].removesuffix("_vs_float")
    if any(leaf in t.undirected for t in TASKS.values()):
        return 0
    return -1 if any(leaf in t.lower_is_better for t in TASKS.values()) else 1


@dataclass(frozen=True)
class Bootstrap:
    """Resampling counts: row 0 is the sample itself (all ones), rows 1… are the replicates."""

    weights: np.ndarray  # (1 + B) x N

    @classmethod
    def draw(cls, n: int, *, replicates: int = 1000, seed: int = 0) -> "Bootstrap":
        rng = np.random.default_rng(seed)
        reps = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates) if n else np.zeros((replicates, 0))
        return cls(np.vstack([np.ones((1, n)), reps]).astype(np.float64))

    def subset(self, rows: np.ndarray, *, seed: int) -> "Bootstrap":
        """A bootstrap of the selected images alone (a subgroup resampled within itself)."""
        return Bootstrap.draw(int(np.sum(rows)), replicates=len(self.weights) - 1, seed=seed)


def summarize(values: np.ndarray) -> dict:
    """Point estimate (row 0) and the 2.5/97.5 percentiles of the replicates."""
    point = float(values[0])
    reps = values[1:]
    reps = reps[np.isfinite(reps)]
    ci = [float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))] if len(reps) else [float("nan")] * 2
    return {"value": point, "ci95": ci}


def compare(task: str, out: np.ndarray, ref: np.ndarray, targets: np.ndarray, boot: Bootstrap, *,
            labels: tuple[str, ...] = (), output_names: tuple[str, ...] = (), probabilities: bool = False) -> dict:
    """The artifact's and the float model's metrics, and the artifact's drop, each with a 95 % CI.

    ``drop`` is signed so that positive is worse (float minus artifact for higher-is-better metrics);
    metrics that compare the artifact with float itself (agreement, ``_vs_float``, Bland–Altman) have
    no float counterpart and no drop.
    """
    t = get_task(task)
    art_stats = t.per_image(out, targets, ref, labels=labels, probabilities=probabilities)
    float_stats = t.per_image(ref, targets, ref, labels=labels, probabilities=probabilities)
    kw = {"labels": labels, "output_names": output_names}
    art = t.aggregate(_sums(art_stats, boot.weights), **kw)
    flt = t.aggregate(_sums(float_stats, boot.weights), **kw)
    rows: dict[str, dict] = {}
    for name, values in art.items():
        row = {"artifact": summarize(values)}
        self_comparison = name == "agreement" or "_vs_float" in name or direction(name) == 0
        if not self_comparison:
            row["float"] = summarize(flt[name])
            with np.errstate(invalid="ignore"):
                row["drop"] = summarize(direction(name) * (flt[name] - values))
        rows[name] = row
    return {"metrics": rows, **t.extras(art_stats, float_stats, labels=labels)}


def _sums(stats: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each statistic summed over the images of every resample (rows of ``weights``, R x N): R x k."""
    return {k: weights @ v for k, v in stats.items()}
