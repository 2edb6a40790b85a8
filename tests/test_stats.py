"""Task metric sets and their bootstrap confidence intervals, against hand-computed values."""

import numpy as np
import pytest

from toolkit.tasks import measures
from toolkit.verify import stats


def _boot(n, reps=400):
    return stats.Bootstrap.draw(n, replicates=reps, seed=0)


def test_bootstrap_row_zero_is_the_sample_and_replicates_resample_it():
    b = _boot(50)
    assert b.weights.shape == (401, 50)
    assert np.all(b.weights[0] == 1)
    assert np.all(b.weights[1:].sum(1) == 50)  # each replicate draws N images with replacement
    assert np.array_equal(b.weights, stats.Bootstrap.draw(50, replicates=400, seed=0).weights), "deterministic"


def test_classification_metrics_exact_and_ci_brackets_them():
    rng = np.random.default_rng(1)
    n = 300
    t = rng.integers(0, 3, n)
    ref = rng.normal(size=(n, 3))
    ref[np.arange(n), t] += 1.5
    out = ref + rng.normal(0, 0.4, (n, 3))
    r = stats.compare("classification", out, ref, t, _boot(n), labels=("a", "b", "c"))
    m = r["metrics"]
    pred = out.argmax(1)
    assert m["accuracy"]["artifact"]["value"] == pytest.approx(measures.accuracy(pred, t))
    assert m["macro_f1"]["artifact"]["value"] == pytest.approx(measures.macro_f1(pred, t, 3))
    assert m["agreement"]["artifact"]["value"] == pytest.approx(np.mean(pred == ref.argmax(1)))
    for i, c in enumerate("abc"):
        assert m[f"recall.{c}"]["artifact"]["value"] == pytest.approx(np.mean(pred[t == i] == i))
    drop = m["accuracy"]["drop"]
    assert drop["value"] == pytest.approx(measures.accuracy(ref.argmax(1), t) - measures.accuracy(pred, t))
    for row in (m["accuracy"]["artifact"], drop):
        lo, hi = row["ci95"]
        assert lo <= row["value"] <= hi and hi - lo > 0
    # Standard error of a proportion: the CI is about ±1.96·sqrt(p(1-p)/n).
    p = m["accuracy"]["artifact"]["value"]
    half = (m["accuracy"]["artifact"]["ci95"][1] - m["accuracy"]["artifact"]["ci95"][0]) / 2
    assert half == pytest.approx(1.96 * np.sqrt(p * (1 - p) / n), rel=0.25)
    cm = np.array(r["confusion"]["artifact"])
    assert cm.sum() == n and np.array_equal(np.diag(cm), [np.sum((t == i) & (pred == i)) for i in range(3)])


def test_expected_calibration_error_exact():
    # Two bins used: confidence 0.9 (4 images, 3 right) and 0.6 (2 images, 2 right).
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    target = np.array([0, 0, 0, 1, 0, 0])
    r = stats.compare("classification", probs, probs, target, _boot(6), labels=("x", "y"), probabilities=True)
    want = (4 / 6) * abs(0.75 - 0.9) + (2 / 6) * abs(1.0 - 0.6)
    assert r["metrics"]["calibration_error"]["artifact"]["value"] == pytest.approx(want)


def _icc_a1(x, y):
    d = np.stack([x, y], 1)
    n, k = d.shape
    g = d.mean()
    ssr = k * ((d.mean(1) - g) ** 2).sum()
    ssc = n * ((d.mean(0) - g) ** 2).sum()
    sse = ((d - g) ** 2).sum() - ssr - ssc
    msr, msc, mse = ssr / (n - 1), ssc / (k - 1), sse / ((n - 1) * (k - 1))
    return (msr - mse) / (msr + (k - 1) * mse + k / n * (msc - mse))


def test_regression_metrics_exact():
    rng = np.random.default_rng(2)
    n = 120
    truth = rng.normal(50, 10, (n, 2))
    ref = truth + rng.normal(0, 3, (n, 2))
    out = ref + rng.normal(0.7, 1.0, (n, 2))
    m = stats.compare("regression", out, ref, truth, _boot(n), output_names=("hydration", "tewl"))["metrics"]
    for j, name in enumerate(("hydration", "tewl")):
        o, t, f = out[:, j], truth[:, j], ref[:, j]
        assert m[f"mae.{name}"]["artifact"]["value"] == pytest.approx(np.mean(np.abs(o - t)))
        assert m[f"rmse.{name}"]["artifact"]["value"] == pytest.approx(np.sqrt(np.mean((o - t) ** 2)))
        assert m[f"pearson.{name}"]["artifact"]["value"] == pytest.approx(np.corrcoef(o, t)[0, 1])
        assert m[f"icc.{name}"]["artifact"]["value"] == pytest.approx(_icc_a1(o, t))
        assert m[f"icc_vs_float.{name}"]["artifact"]["value"] == pytest.approx(_icc_a1(o, f))
        d = o - f
        assert m[f"ba_bias.{name}"]["artifact"]["value"] == pytest.approx(d.mean())
        assert m[f"ba_loa_high.{name}"]["artifact"]["value"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
        assert m[f"mae.{name}"]["drop"]["value"] == pytest.approx(np.mean(np.abs(o - t)) - np.mean(np.abs(f - t)))
        assert "drop" not in m[f"ba_bias.{name}"] and "drop" not in m[f"mae_vs_float.{name}"]
    assert m["mae"]["artifact"]["value"] == pytest.approx(np.mean(np.abs(out - truth)))


def test_segmentation_metrics_exact():
    target = np.zeros((2, 4, 4), np.int64)
    target[0, :2] = 1  # image 0: top half class 1
    pred = target.copy()
    pred[0, 2, :] = 1  # one extra row predicted class 1
    logits = np.eye(2)[pred].transpose(0, 3, 1, 2).astype(np.float32)
    ref = np.eye(2)[target].transpose(0, 3, 1, 2).astype(np.float32)
    m = stats.compare("segmentation", logits, ref, target, _boot(2), labels=("bg", "lesion"))["metrics"]
    assert m["iou.lesion"]["artifact"]["value"] == pytest.approx(measures.iou_per_class(pred, target, 2)[1]) == pytest.approx(8 / 12)
    assert m["dice.lesion"]["artifact"]["value"] == pytest.approx(16 / 20)
    assert m["miou"]["artifact"]["value"] == pytest.approx(measures.miou(pred, target, 2))
    # image 0 has 4 of 16 pixels too many of class 1 (25 points), image 1 none: mean 12.5.
    assert m["area_error.lesion"]["artifact"]["value"] == pytest.approx(12.5)
    assert m["area_error.lesion"]["float"]["value"] == 0.0
    assert m["agreement"]["artifact"]["value"] == pytest.approx((12 / 16 + 1) / 2)


def test_super_resolution_psnr_and_ssim():
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    exact = np.transpose(hr / 255.0, (0, 3, 1, 2))
    noisy = exact + rng.normal(0, 0.05, exact.shape)
    m = stats.compare("super_resolution", noisy, exact, hr, _boot(3))["metrics"]
    assert m["ssim"]["float"]["value"] == pytest.approx(1.0)
    assert 0.0 < m["ssim"]["artifact"]["value"] < 0.99
    clipped = np.clip(np.transpose(noisy, (0, 2, 3, 1)), 0, 1)
    want = np.mean([measures.psnr(clipped[i:i + 1], hr[i:i + 1] / 255.0) for i in range(3)])
    assert m["psnr"]["artifact"]["value"] == pytest.approx(want)
    assert measures.ssim(clipped[0], clipped[0]) == pytest.approx(1.0)


def test_directions():
    assert stats.direction("macro_f1") == 1 and stats.direction("recall.severe") == 1
    assert stats.direction("mae.tewl") == -1 and stats.direction("area_error.pore") == -1
    assert stats.direction("calibration_error") == -1 and stats.direction("ba_bias.tewl") == 0
