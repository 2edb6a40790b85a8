"""Tolerances that scale: elementwise error is judged relative to each output's range, so a model whose
outputs are 200 times the reference models' is judged as fairly; an explicit ``max_abs`` stays absolute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import toolkit
from toolkit.load import load_model
from toolkit.registry import DECISION_TOLERANCES, Tolerance, get_spec
from toolkit.verify import metrics
from toolkit.verify.gate import numeric_criteria, resolve_tolerance

LABELS = ("clear", "mild", "moderate", "severe")
REL = "max abs error / output range vs float"


class Scaled(nn.Module):
    """A trained reference classifier whose logits are multiplied by 200 (they span about ±1700)."""

    def __init__(self, inner: nn.Module, factor: float = 200.0):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x):
        return self.inner(x) * self.factor


def _export(tmp, name: str, targets: list[str], recipe: dict | None = None):
    module = Scaled(load_model("acne_mobilenetv2").module).eval()
    return toolkit.export(module, torch.rand(1, 3, 224, 224), targets=targets, data="synthetic", labels=LABELS,
                          normalization="imagenet", out=tmp, name=name, n=16, check=False,
                          recipe={"benchmark": {"enabled": False}, "evaluation": {"bootstrap": 100}, **(recipe or {})})


def _criterion(artifact: dict, name: str) -> dict:
    (c,) = [c for c in artifact["verification"]["criteria"] if c["name"] == name]
    return c


def test_numerics_record_the_reference_range_and_the_relative_error():
    # setup: a reference spanning -2 .. 6 (range 8) and an output off by 0.4 at one value
    ref = np.array([[-2.0, 0.0], [6.0, 1.0]], np.float32)
    out = ref + np.array([[0.0, 0.4], [0.0, 0.0]], np.float32)
    # execute
    n = metrics.numerics(ref, out)
    # assert
    assert n["reference_range"] == 8.0
    assert n["max_abs_error"] == pytest.approx(0.4)
    assert n["max_rel_error"] == pytest.approx(0.05)
    assert n["sqnr_db"] == pytest.approx(10 * np.log10(41 / 0.16), rel=1e-6)


def test_a_constant_reference_is_measured_against_its_magnitude():
    # setup / execute: range 0; magnitude 4; all zeros
    const = metrics.numerics(np.full(3, 4.0), np.array([4.0, 4.0, 4.2]))
    zeros = metrics.numerics(np.zeros(3), np.array([0.0, 0.0, 0.1]))
    # assert
    assert (const["reference_range"], const["max_rel_error"]) == (0.0, pytest.approx(0.05))
    assert (zeros["reference_range"], zeros["max_rel_error"]) == (0.0, pytest.approx(0.1))


def test_an_all_zero_reference_has_no_signal_and_no_warning():
    # setup / execute: numpy would warn on log10(0)
    with np.errstate(all="raise"):
        n = metrics.numerics(np.zeros(3), np.array([0.0, 0.0, 0.1]))
    # assert
    assert n["sqnr_db"] == float("-inf") and metrics.numerics(np.zeros(3), np.zeros(3))["sqnr_db"] == float("inf")


def test_integer_outputs_are_judged_in_quantization_steps():
    # setup: class indices 0..3 (range 3), one of them off by one step; a user's tier with a relative bound
    from toolkit.recipe import ToleranceOverride

    spec = get_spec("acne_mobilenetv2")
    ref = np.array([[0, 3], [1, 2]], np.int64)
    tol = resolve_tolerance(spec, "fp32", ToleranceOverride(max_rel=0.5), None)
    # execute
    n = metrics.numerics(ref, ref + np.array([[0, 0], [1, 0]]))
    (rel, cos) = numeric_criteria(spec, {"logits": n}, tol, "fp32")
    # assert: one step off, not a third of the range; the criterion says which
    assert (n["quantization_step"], n["max_rel_error"], n["reference_range"]) == (1.0, 1.0, 3.0)
    assert rel["name"] == "max abs error in quantization steps vs float" and rel["value"] == 1.0 and not rel["passed"]


def test_relative_bound_scales_where_the_absolute_one_did_not():
    # setup: float logits spanning ±10 and ±2000 (×200), each off by the same relative 1e-5 of their range
    spec = get_spec("acne_mobilenetv2")
    rng = np.random.default_rng(0)
    ref = rng.uniform(-10, 10, (16, 4)).astype(np.float64)
    ref[0, 0], ref[0, 1] = -10.0, 10.0
    tol = spec.tolerance("fp32")
    verdicts = {}
    for factor in (1.0, 200.0):
        r = ref * factor
        out = r.copy()
        out[3, 2] += 2e-4 * factor  # 1e-5 of the range
        # execute
        (rel, cos) = numeric_criteria(spec, {"logits": metrics.numerics(r, out)}, tol, "fp32")
        verdicts[factor] = rel
    # assert: both pass the relative bound with the same value; the absolute error differs 200-fold
    for rel in verdicts.values():
        assert rel["name"] == REL and rel["bound"] == 5e-5 and rel["passed"]
        assert rel["value"] == pytest.approx(1e-5, rel=1e-6)
    assert verdicts[200.0]["max_abs_error"] == pytest.approx(0.04, rel=1e-6) and verdicts[200.0]["reference_range"] == 4000.0


def test_an_explicit_max_abs_stays_absolute_beside_the_relative_default():
    # setup: the fp32 default with a recipe's max_abs on top
    from toolkit.recipe import ToleranceOverride

    spec = get_spec("acne_mobilenetv2")
    tol = resolve_tolerance(spec, "fp32", ToleranceOverride(max_abs=1e-3), None)
    ref = np.linspace(-2000, 2000, 64).reshape(16, 4)
    out = ref + 0.04
    # execute
    criteria = numeric_criteria(spec, {"logits": metrics.numerics(ref, out)}, tol, "fp32")
    # assert: the relative bound holds, the absolute one refuses
    assert tol == Tolerance(max_abs=1e-3, max_rel=5e-5, min_cosine=0.99999, min_agreement=0.995, max_metric_drop=0.005)
    by_name = {c["name"]: c for c in criteria}
    assert by_name[REL]["passed"] and by_name[REL]["value"] == pytest.approx(1e-5)
    assert not by_name["max abs error vs float"]["passed"] and by_name["max abs error vs float"]["bound"] == 1e-3


def test_sqnr_bound_is_judged_in_decibels():
    # setup: an override asking for 60 dB on a reference off by 1e-2 of its RMS everywhere (40 dB)
    from toolkit.recipe import ToleranceOverride

    spec = get_spec("acne_mobilenetv2")
    tol = resolve_tolerance(spec, "fp16", ToleranceOverride(min_sqnr_db=60), None)
    ref = np.ones((4, 4))
    # execute
    criteria = numeric_criteria(spec, {"logits": metrics.numerics(ref, ref * 1.01)}, tol, "fp16")
    # assert
    (sqnr,) = [c for c in criteria if c["name"] == "SQNR vs float (dB)"]
    assert sqnr["value"] == pytest.approx(40.0) and sqnr["op"] == ">=" and not sqnr["passed"]


def test_reference_tiers_are_relative():
    # setup / execute / assert: the decision tiers bound relative error, no absolute one
    assert {t: (v.max_rel, v.max_abs) for t, v in DECISION_TOLERANCES.items()} == {
        "fp32": (5e-5, None), "fp16": (0.015, None), "int8": (None, None), "lowbit": (None, None)}


@pytest.fixture(scope="module")
def scaled_export(tmp_path_factory):
    """The trained MobileNetV2 with its logits ×200, handed over as a user's own module: fp32 ONNX and TFLite."""
    tmp = tmp_path_factory.mktemp("scaled")
    return _export(tmp, "scaled", ["onnx", "tflite"])


def test_scaled_model_passes_fp32_onnx_and_tflite_under_the_defaults(scaled_export):
    # setup / execute: the module fixture's export
    result = scaled_export
    # assert: both pass; each artifact's absolute error is past the former 1e-3 bound, its relative one far inside 5e-5
    assert result.passed and [a.path.suffix for a in result.artifacts] == [".onnx", ".tflite"]
    for artifact in result.manifest["artifacts"]:
        num = artifact["verification"]["numerics_by_output"]["logits"]
        rel = _criterion(artifact, REL)
        assert rel["passed"] and rel["bound"] == 5e-5 and rel["value"] == num["max_rel_error"] < 5e-6
        assert num["reference_range"] > 1000 and num["max_abs_error"] > 1e-3
        assert rel["value"] == pytest.approx(num["max_abs_error"] / num["reference_range"])
        assert not any(c["name"].startswith("max abs error vs float") for c in artifact["verification"]["criteria"])


def test_an_explicit_absolute_max_abs_still_fails_the_scaled_model(tmp_path):
    # setup / execute: the same export, fp32 ONNX, with the former absolute bound set in the recipe
    result = _export(tmp_path, "scaled_abs", ["onnx"], {"tolerances": {"fp32": {"max_abs": 1e-3}}})
    # assert: the absolute criterion fails, the relative one holds
    (artifact,) = result.manifest["artifacts"]
    assert result.passed is False and artifact["verification"]["passed"] is False
    absolute = _criterion(artifact, "max abs error vs float")
    assert not absolute["passed"] and absolute["bound"] == 1e-3 and absolute["value"] > 1e-3
    assert _criterion(artifact, REL)["passed"]
