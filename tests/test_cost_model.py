"""The per-op-class device cost model: fitting, leave-one-out, under-determined profiles, the shipped profiles."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.backends.base import OP_CLASSES, Cost
from toolkit.benchmark import devices
from toolkit.benchmark.devices import Anchor, AnchorFile


def _anchors(profile: str, figures: list[tuple[str, dict, float]]) -> AnchorFile:
    models = {f"m{i}": {"gmacs": sum(b.get(c, 0.0) for c in devices.MAC_CLASSES), "params_m": 1.0, **b}
              for i, (_, b, _) in enumerate(figures)}
    return AnchorFile(models=models, anchors=tuple(Anchor(profile=profile, model=f"m{i}", compute=d, ms=ms, source="synthetic")
                                                   for i, (d, _, ms) in enumerate(figures)))


def _profile(name: str = "snapdragon_8gen3_npu"):
    return devices.load_profiles([name])[0]


def test_a_fit_on_synthetic_figures_recovers_the_class_throughputs():
    # setup: 14 figures, two dtypes, made by known per-class terms (ms per GMAC / per MB) and overheads
    truth = {"fp16": {"overhead": 0.5, "conv": 0.2, "depthwise": 0.6, "matmul": 0.3, "elementwise": 0.02, "memory": 0.1},
             "int8": {"overhead": 0.25, "conv": 0.05, "depthwise": 0.4, "matmul": 0.08, "elementwise": 0.02, "memory": 0.1}}
    rng = np.random.default_rng(0)
    figures = []
    for i in range(14):
        dtype = ("fp16", "int8")[i % 2]
        b = {c: float(rng.uniform(0.1, 5.0)) for c in OP_CLASSES}
        a = devices.amounts(b, dtype)
        figures.append((dtype, b, truth[dtype]["overhead"] + sum(truth[dtype][c] * a[c] for c in OP_CLASSES)))
    # execute
    model, report, per = devices.fit(_anchors("snapdragon_8gen3_npu", figures), _profile())
    # assert: the full model is determined, every coefficient comes back, and leave-one-out is exact
    assert report.level == "per class" and report.parameters == 10 and not report.under_determined
    for dtype, want in truth.items():
        assert model.ms_per_unit[dtype] == pytest.approx(want, rel=1e-4)
    assert report.loo_max_abs_error < 1e-4 and report.max_rel_error < 1e-4


def test_leave_one_out_on_a_hand_checkable_case():
    # setup: three fp16 figures, 1 / 2 / 3 GMACs at 3 / 4 / 6 ms: two parameters (overhead, MAC term) per refit
    figures = [("fp16", {"conv": g}, ms) for g, ms in ((1.0, 3.0), (2.0, 4.0), (3.0, 6.0))]
    # execute
    _, report, per = devices.fit(_anchors("snapdragon_8gen3_npu", figures), _profile())
    # assert: without the first, 2 GMACs → 4, 3 → 6 gives t = 2g, so 2 ms (−33 %); without the second t = 1.5 + 1.5g → 4.5
    # (+12.5 %); without the third t = 2 + g → 5 (−16.7 %)
    assert report.level == "MACs and overhead" and report.parameters == 2
    assert [r["loo"] for r in per] == pytest.approx([2.0, 4.5, 5.0], abs=1e-4)
    assert report.loo_median_abs_error == pytest.approx(1 / 6, abs=1e-4)
    assert report.loo_max_abs_error == pytest.approx(1 / 3, abs=1e-4) and report.loo_worst == "m0 fp16"


def test_a_profile_with_too_few_figures_is_flagged_under_determined():
    # setup: the CPU profile has one published figure
    p = _profile("midrange_android_cpu")
    cost = Cost("tflite", 300_000_000, 3_500_000, 14_000_000, 1_000_000, (), {"conv": 280_000_000, "depthwise": 20_000_000})
    # execute
    est = devices.estimate(p, cost, "fp32")
    model, report, _ = devices.fit(devices.load_anchors(), p)
    # assert
    assert report.under_determined and report.level == "MACs only" and report.parameters == 1
    assert report.loo_median_abs_error is None and p.fit.under_determined
    assert est["under_determined"] is True and "under-determined" in est["basis"] and "no leave-one-out" in est["basis"]
    assert est["basis"].startswith("fitted") and est["cost_model"] == "MACs only"


def test_every_shipped_profile_loads_and_its_recorded_fit_matches_a_refit():
    anchors = devices.load_anchors()
    profiles = {p.name: p for p in devices.load_profiles()}
    fitted = {a.profile for a in anchors.anchors}
    for name in fitted:
        model, report, _ = devices.fit(anchors, profiles[name])
        assert report == profiles[name].fit, f"{name}: stored fit differs from a refit: run benchmarks/fit_devices.py --write"
        assert model == profiles[name].cost_model
    assert profiles["snapdragon_8gen3_npu"].fit.loo_median_abs_error <= 0.25
    for p in profiles.values():  # derived ones inherit a scaled cost model; hand-set ones keep the roofline
        assert (p.cost_model is not None) == (p.fit is not None or (p.derived_from is not None and p.derived_from.profile in fitted))


def test_estimate_sums_the_class_terms_and_keeps_its_keys():
    p = _profile()
    cost = Cost("tflite", 2_000_000_000, 1, 1_000_000, 1_000_000, ("CONV_2D",),
                {"conv": 1_500_000_000, "depthwise": 500_000_000, "matmul": 0, "elementwise": 4_000_000, "memory": 2_000_000})
    est = devices.estimate(p, cost, "int8")
    k = p.cost_model.ms_per_unit["int8"]
    want = k["overhead"] + 1.5 * k["conv"] + 0.5 * k["depthwise"] + 4 * k["elementwise"] + 2 * k["memory"]
    assert est["ms"] == pytest.approx(want, abs=1e-3)
    assert {"profile", "device", "unit", "estimated", "basis", "compute_dtype", "ms", "compute_ms", "memory_ms", "bound",
            "overhead_ms", "partitions", "ops_off_unit", "fit_max_rel_error"} <= set(est)
    assert devices.estimate(p, Cost("tflite", 10**9, 1, 1, 1, ()), "int8")["note"].startswith("op classes not read")


def test_the_onnx_reader_splits_macs_by_class(tmp_path):
    import torch
    from torch import nn

    from toolkit.backends.onnx.graph import cost

    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                      nn.Upsample(scale_factor=2), nn.Flatten(), nn.Linear(8 * 16 * 16, 4)).eval()
    torch.onnx.export(m, (torch.zeros(1, 3, 8, 8),), str(tmp_path / "m.onnx"), dynamo=False, opset_version=18)
    c = cost(tmp_path / "m.onnx")
    assert c.op_classes == {"conv": 64 * 8 * 27, "depthwise": 64 * 8 * 9, "matmul": 4 * 2048, "elementwise": 0, "memory": 2048}
