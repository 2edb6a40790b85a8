"""Task metric sets with percentile-bootstrap 95 % confidence intervals.

Every metric is computed from per-image statistics (``per_image``), so a bootstrap replicate is a
weighted sum: a replicate draws images with replacement, which is a vector of counts ``w`` (N,),
and its statistic sums are ``w @ stats``. All replicates are one matrix product (``Bootstrap``),
and a subgroup is the same computation on its own rows. The float model and the artifact are
resampled with the same counts, so the CI of a *drop* is a paired interval.

Metrics by task (names as they appear in reports and in ``tolerances.<precision>.margins``):

- classification: ``accuracy``, ``macro_f1``, ``recall.<class>``, ``agreement`` (top-1 with float),
  ``calibration_error`` (ECE, 15 equal-width confidence bins); plus a confusion matrix.
- regression, per output ``<o>``: ``mae.<o>``, ``rmse.<o>``, ``pearson.<o>``, ``icc.<o>`` against ground
  truth, the same as ``mae_vs_float.<o>`` … against the float model, and Bland–Altman ``ba_bias.<o>``,
  ``ba_loa_low.<o>``, ``ba_loa_high.<o>`` (artifact minus float); ``mae`` averages the outputs' MAE.
- segmentation: ``dice.<class>``, ``iou.<class>``, ``miou``, ``dice_mean``, ``pixel_accuracy``,
  ``area_error.<class>`` (mean absolute error of the class's image fraction, in percentage points),
  ``agreement`` (per-pixel argmax with float).
- super-resolution: ``psnr``, ``ssim`` against the high-resolution truth, ``psnr_vs_float``.

ICC is ICC(A,1), two-way, absolute agreement, single measurement (McGraw & Wong 1996).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

ECE_BINS = 15
# Metrics where lower is better; all others (but Bland–Altman, which has no direction) are higher-is-better.
_LOWER = ("mae", "rmse", "area_error", "calibration_error")
_UNDIRECTED = ("ba_bias", "ba_loa_low", "ba_loa_high")


def direction(name: str) -> int:
    """+1 if higher is better, -1 if lower is better, 0 if the metric has no better side."""
    leaf = name.split(".")[0].removesuffix("_vs_float")
    if leaf in _UNDIRECTED:
        return 0
    return -1 if leaf in _LOWER else 1


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


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _onehot(index: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((len(index), size))
    out[np.arange(len(index)), index] = 1.0
    return out


def _div(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two H x W x C images in [0, 1]: Gaussian window (σ 1.5, 11 × 11), mean over channels."""
    c1, c2 = 0.01**2, 0.03**2
    a, b = a.astype(np.float64), b.astype(np.float64)
    blur = lambda v: cv2.GaussianBlur(v, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def per_image(task: str, out: np.ndarray, targets: np.ndarray, ref: np.ndarray, *, num_classes: int = 0,
              probabilities: bool = False) -> dict[str, np.ndarray]:
    """Per-image statistics (N x k arrays) from which every metric of the task is a ratio of sums.

    ``out`` and ``ref`` are the artifact's and the float model's raw outputs (dense outputs NCHW);
    ``probabilities``: classification outputs are already probabilities (a Core ML classifier).
    """
    n = len(out)
    if task == "classification":
        c = num_classes
        pred, fpred = out.argmax(-1), ref.argmax(-1)
        prob = out if probabilities else _softmax(out.astype(np.float64))
        conf = prob.max(-1)
        correct = (pred == targets).astype(np.float64)
        bins = np.minimum((conf * ECE_BINS).astype(np.int64), ECE_BINS - 1)
        onehot_bin = _onehot(bins, ECE_BINS)
        return {"pairs": _onehot(targets.astype(np.int64) * c + pred, c * c), "agree": (pred == fpred)[:, None] * 1.0,
                "bin_n": onehot_bin, "bin_conf": onehot_bin * conf[:, None], "bin_correct": onehot_bin * correct[:, None]}
    if task == "regression":
        o, t, f = (v.astype(np.float64).reshape(n, -1) for v in (out, targets, ref))
        return {"one": np.ones((n, 1)),
                **{f"{k}_{m}": v for k, (x, y) in (("gt", (o, t)), ("fl", (o, f)))
                   for m, v in (("x", x), ("y", y), ("xx", x * x), ("yy", y * y), ("xy", x * y), ("ad", np.abs(x - y)))}}
    if task == "segmentation":
        c = out.shape[1]
        pred, fpred = out.argmax(1).reshape(n, -1), ref.argmax(1).reshape(n, -1)
        t = targets.reshape(n, -1).astype(np.int64)
        px = t.shape[1]
        idx = np.arange(n)[:, None] * c * c + t * c + pred
        cms = np.bincount(idx.ravel(), minlength=n * c * c).reshape(n, c * c).astype(np.float64)
        cm3 = cms.reshape(n, c, c)
        area_err = np.abs(cm3.sum(1) - cm3.sum(2)) / px * 100.0  # predicted minus true pixels per class
        return {"cm": cms, "area_err": area_err, "agree": np.mean(pred == fpred, axis=1)[:, None], "one": np.ones((n, 1))}
    if task == "super_resolution":
        sr = np.clip(np.transpose(out, (0, 2, 3, 1)).astype(np.float64), 0.0, 1.0)
        fl = np.clip(np.transpose(ref, (0, 2, 3, 1)).astype(np.float64), 0.0, 1.0)
        hr = targets.astype(np.float64) / 255.0

        def _psnr(a, b):
            mse = np.maximum(np.mean((a - b).reshape(n, -1) ** 2, axis=1), 1e-12)
            return 10.0 * np.log10(1.0 / mse)

        return {"psnr": _psnr(sr, hr)[:, None], "psnr_f": _psnr(sr, fl)[:, None],
                "ssim": np.array([[ssim(sr[i], hr[i])] for i in range(n)]), "one": np.ones((n, 1))}
    raise ValueError(f"unknown task {task!r}")


def _regression(s: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, np.ndarray]:
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
        pearson = _div(cxy, np.sqrt(np.maximum(vx * vy, 0.0)))
        # ICC(A,1) for k = 2 raters from the pairs' moments (mean squares of the two-way ANOVA).
        g = (mx + my) / 2
        ssr = 2 * n * (vx + vy + 2 * cxy) / 4  # k Σ (subject mean - g)², k = 2
        ssc = n * ((mx - g) ** 2 + (my - g) ** 2)
        sst = n * (vx + (mx - g) ** 2 + vy + (my - g) ** 2)
        msr, msc, mse = ssr / (n - 1), ssc, (sst - ssr - ssc) / (n - 1)
        icc = _div(msr - mse, msr + mse + 2.0 / n * (msc - mse))
        for j, name in enumerate(names):
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


def aggregate(task: str, stats: dict[str, np.ndarray], weights: np.ndarray, *, labels: tuple[str, ...] = (),
              output_names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every metric of the task for each row of ``weights`` ((R x N) resampling counts): name -> (R,)."""
    s = {k: weights @ v for k, v in stats.items()}
    if task == "classification":
        c = len(labels)
        cm = s["pairs"].reshape(-1, c, c)
        tp = np.einsum("rii->ri", cm)
        total = cm.sum((1, 2))
        rows, cols = cm.sum(2), cm.sum(1)
        denom = rows + cols
        f1 = _div(2 * tp, denom)
        out = {"accuracy": _div(tp.sum(1), total), "macro_f1": np.nanmean(np.where(denom > 0, f1, np.nan), axis=1),
               "agreement": _div(s["agree"][:, 0], total),
               "calibration_error": _div(np.abs(s["bin_correct"] - s["bin_conf"]).sum(1), total)}
        recall = _div(tp, rows)
        out.update({f"recall.{name}": recall[:, i] for i, name in enumerate(labels)})
        return out
    if task == "regression":
        return _regression(s, output_names)
    if task == "segmentation":
        n = s["one"][:, 0]
        c = int(round(np.sqrt(stats["cm"].shape[1])))
        cm = s["cm"].reshape(-1, c, c)
        tp = np.einsum("rii->ri", cm)
        denom = cm.sum(1) + cm.sum(2)
        iou, dice = _div(tp, denom - tp), _div(2 * tp, denom)
        names = labels or tuple(str(i) for i in range(c))
        with np.errstate(invalid="ignore"):
            out = {"miou": np.nanmean(iou, axis=1), "dice_mean": np.nanmean(dice, axis=1),
                   "pixel_accuracy": _div(tp.sum(1), cm.sum((1, 2))), "agreement": _div(s["agree"][:, 0], n)}
        for i, name in enumerate(names):
            out[f"dice.{name}"], out[f"iou.{name}"] = dice[:, i], iou[:, i]
            out[f"area_error.{name}"] = _div(s["area_err"][:, i], n)
        return out
    if task == "super_resolution":
        n = s["one"][:, 0]
        return {"psnr": _div(s["psnr"][:, 0], n), "ssim": _div(s["ssim"][:, 0], n), "psnr_vs_float": _div(s["psnr_f"][:, 0], n)}
    raise ValueError(f"unknown task {task!r}")


def confusion_matrix(stats: dict[str, np.ndarray], num_classes: int) -> list[list[int]]:
    """Rows: ground truth; columns: prediction."""
    return stats["pairs"].sum(0).reshape(num_classes, num_classes).astype(int).tolist()


def compare(task: str, out: np.ndarray, ref: np.ndarray, targets: np.ndarray, boot: Bootstrap, *,
            labels: tuple[str, ...] = (), output_names: tuple[str, ...] = (), probabilities: bool = False) -> dict:
    """The artifact's and the float model's metrics, and the artifact's drop, each with a 95 % CI.

    ``drop`` is signed so that positive is worse (float minus artifact for higher-is-better metrics);
    metrics that compare the artifact with float itself (agreement, ``_vs_float``, Bland–Altman) have
    no float counterpart and no drop.
    """
    num_classes = len(labels) if task == "classification" else 0
    art_stats = per_image(task, out, targets, ref, num_classes=num_classes, probabilities=probabilities)
    float_stats = per_image(task, ref, targets, ref, num_classes=num_classes, probabilities=probabilities)
    kw = {"labels": labels, "output_names": output_names}
    art = aggregate(task, art_stats, boot.weights, **kw)
    flt = aggregate(task, float_stats, boot.weights, **kw)
    rows: dict[str, dict] = {}
    for name, values in art.items():
        row = {"artifact": summarize(values)}
        self_comparison = name == "agreement" or "_vs_float" in name or direction(name) == 0
        if not self_comparison:
            row["float"] = summarize(flt[name])
            with np.errstate(invalid="ignore"):
                row["drop"] = summarize(direction(name) * (flt[name] - values))
        rows[name] = row
    result = {"metrics": rows}
    if task == "classification":
        result["confusion"] = {"artifact": confusion_matrix(art_stats, num_classes),
                               "float": confusion_matrix(float_stats, num_classes)}
    return result
