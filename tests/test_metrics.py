import numpy as np
import pytest

from toolkit.tasks import get_task, measures
from toolkit.verify import metrics


def test_macro_f1_and_accuracy_exact():
    target = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp1 fp0 fn1 -> 2/3
    assert measures.macro_f1(pred, target, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert measures.accuracy(pred, target) == pytest.approx(4 / 6)


def test_iou_dice_with_absent_class():
    target = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 1], [1, 1]])
    iou = measures.iou_per_class(pred, target, 3)
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(2 / 3) and np.isnan(iou[2])
    assert measures.miou(pred, target, 3) == pytest.approx((0.5 + 2 / 3) / 2)
    assert measures.dice_per_class(pred, target, 3)[1] == pytest.approx(0.8)


def test_psnr_exact():
    a = np.zeros((1, 4, 4, 3))
    b = np.full((1, 4, 4, 3), 0.1)
    assert measures.psnr(b, a) == pytest.approx(20.0)


def test_numerics():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    out = ref + np.array([0.0, 0.1, -0.1, 0.0])
    n = metrics.numerics(ref, out)
    assert n["max_abs_error"] == pytest.approx(0.1)
    assert n["mean_abs_error"] == pytest.approx(0.05)
    assert n["mean_signed_error"] == pytest.approx(0.0, abs=1e-12)
    assert n["sqnr_db"] == pytest.approx(10 * np.log10(30 / 0.02))
    assert metrics.numerics(ref, ref)["sqnr_db"] == float("inf")
    with pytest.raises(ValueError, match="differs"):
        metrics.numerics(ref, ref[:3])


def test_agreement():
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    out = np.array([[0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    assert get_task("classification").agreement(ref, out) == pytest.approx(2 / 3)
    assert get_task("regression").agreement(ref, out) is None
