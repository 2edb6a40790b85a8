"""Benchmarks: graph cost, device-profile estimates against their published anchors, phone runners, `skinkit bench`."""

import json
import os
import stat

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from toolkit.benchmark import devices, phones
from toolkit.benchmark.cost import artifact_cost
from toolkit.errors import BadInputError
from toolkit.load import load_model

ISSUE_DEVICES = {"apple_a16_ane", "apple_a16_gpu", "apple_a17pro_ane", "apple_a17pro_gpu", "snapdragon_8gen2_npu",
                 "snapdragon_8gen2_gpu", "snapdragon_8gen3_npu", "snapdragon_8gen3_gpu", "tensor_g3_gpu", "tensor_g3_cpu",
                 "midrange_android_cpu"}


def _torch_macs(model, shape):
    total = 0

    def hook(m, i, o):
        nonlocal total
        if isinstance(m, torch.nn.Conv2d):
            total += o.numel() * m.weight[0].numel()
        elif isinstance(m, torch.nn.Linear):
            total += o.numel() * m.in_features

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(shape))
    for h in hooks:
        h.remove()
    return total


def test_cost_read_from_every_format_matches_pytorch(default_bundle):
    out, proc = default_bundle
    assert proc.returncode == 0, proc.stderr[-2000:]
    arts = out / "acne_test" / "artifacts"
    want = _torch_macs(load_model("acne_mobilenetv2").module.eval(), (1, 3, 224, 224))
    costs = {p.name: artifact_cost(p) for p in sorted(arts.iterdir())}
    assert {c.macs for c in costs.values()} == {want} == {95_856_960}
    fp32, fp16 = costs["acne_mobilenetv2_fp32.tflite"], costs["acne_mobilenetv2_fp16.tflite"]
    assert fp32.params == fp16.params == costs["acne_mobilenetv2_fp16.mlpackage"].params - 416  # Core ML keeps a few more constants
    assert 0.49 < fp16.weight_bytes / fp32.weight_bytes < 0.52  # fp16 storage
    assert "DELEGATE" not in fp32.op_sequence and fp32.op_sequence.count("CONV_2D") == 35


def test_every_issue_device_has_a_profile_and_estimates_are_labelled():
    profiles = {p.name: p for p in devices.load_profiles()}
    assert set(profiles) >= ISSUE_DEVICES
    for p in profiles.values():
        assert p.derivation and p.throughput_tmacs and p.overhead_ms
        assert (p.fit is not None) == ("not fitted" not in p.derivation.split(";")[0]), p.name


def test_fitted_profiles_reproduce_their_published_figures_within_the_stated_error():
    anchors = devices.load_anchors()
    profiles = {p.name: p for p in devices.load_profiles()}
    assert len(anchors.anchors) == 15
    for a in anchors.anchors:
        p = profiles[a.profile]
        est = devices.class_latency_ms(p, a.compute, devices.anchor_amounts(anchors, a), devices.anchor_weight_bytes(anchors, a))
        assert abs(est["ms"] - a.ms) / a.ms <= p.fit.max_rel_error + 1e-3, (a, est)
    for name in {a.profile for a in anchors.anchors}:
        model, report, _ = devices.fit(anchors, profiles[name])
        assert report == profiles[name].fit, "stored fit differs from a refit: run benchmarks/fit_devices.py --write"
        for d, k in model.ms_per_unit.items():
            assert profiles[name].overhead_ms[d] == pytest.approx(k["overhead"], abs=1e-4)
            assert profiles[name].throughput_tmacs[d] == pytest.approx(1 / k["conv"], rel=1e-3)
    # out of sample, not in sample: each figure predicted by the model fitted without it
    assert profiles["snapdragon_8gen3_npu"].fit.loo_median_abs_error <= 0.25


def test_derived_profiles_follow_their_fitted_sibling():
    p = {q.name: q for q in devices.load_profiles()}
    assert p["apple_a16_ane"].throughput_tmacs["fp16"] == pytest.approx(p["apple_a17pro_ane"].throughput_tmacs["fp16"] * 0.4857, rel=1e-3)
    assert p["snapdragon_8gen2_npu"].overhead_ms == p["snapdragon_8gen3_npu"].overhead_ms


def test_estimate_formula_dtype_choice_and_partitions():
    p = {q.name: q for q in devices.load_profiles()}
    npu = p["snapdragon_8gen3_npu"]
    est = devices.latency_ms(npu, "int8", 4.09e9, 1e6)
    assert est["ms"] == pytest.approx(npu.overhead_ms["int8"] + 4.09 / npu.throughput_tmacs["int8"], abs=1e-3)
    assert est["bound"] == "compute"
    assert devices.compute_dtype(npu, "tflite", "int8") == ("int8", "")
    assert devices.compute_dtype(npu, "tflite", "fp16") == ("fp16", "")
    assert devices.compute_dtype(npu, "coreml", "fp16")[0] is None
    dtype, note = devices.compute_dtype(p["snapdragon_8gen3_gpu"], "tflite", "int8")
    assert dtype == "fp16" and "no int8 path" in note
    dtype, why = devices.compute_dtype(p["apple_a17pro_ane"], "coreml", "fp32")
    assert dtype is None and "float16" in why
    assert devices.partitions(("CONV_2D", "CUSTOM_X", "CUSTOM_Y", "ADD", "CUSTOM_X"), "tflite_gpu") == (2, ["CUSTOM_X", "CUSTOM_Y"])
    assert devices.partitions(("conv", "relu"), "coreml_ane") == (0, [])


def test_unknown_profile_is_named():
    with pytest.raises(BadInputError, match="unknown device profile 'pixel_99'"):
        devices.load_profiles(["pixel_99"])


SAMPLE = """STARTING!
Log parameter values verbosely: [0]
Graph: [/data/local/tmp/skinkit/m.tflite]
Loaded model /data/local/tmp/skinkit/m.tflite
The input model file size (MB): 1.11
Initialized session in 41.2ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=94 first=8312 curr=5201 min=5102 max=8312 avg=5322.4 std=402

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=190 first=5234 curr=5190 min=5011 max=6021 avg=5262.7 std=120

Inference timings in us: Init: 41203, First inference: 8312, Warmup (avg): 5322.4, Inference (avg): 5262.7
Memory footprint delta from the start of the tool (MB): init=6.2 overall=9.8
"""


def test_benchmark_model_output_is_parsed():
    r = phones.parse_benchmark_model(SAMPLE)
    assert r == {"init_ms": 41.203, "first_ms": 8.312, "mean_ms": 5.2627, "min_ms": 5.011, "max_ms": 6.021,
                 "std_ms": 0.12, "runs": 190, "source": "benchmark_model", "memory_overall_mb": 9.8}
    with pytest.raises(RuntimeError, match="printed no timings"):
        phones.parse_benchmark_model("ERROR: Could not open model")


def _fake_adb(tmp_path, listing: str):
    adb = tmp_path / "adb"
    adb.write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    return str(adb)


def test_android_absence_and_presence_are_said_plainly(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb anywhere
    assert phones.android_devices() == {"available": False, "devices": [],
                                        "reason": "adb is not on PATH (install Android platform-tools to benchmark on a phone)"}
    none = _fake_adb(tmp_path, "List of devices attached\\n\\n")
    assert phones.android_devices(none)["reason"] == "no Android device attached (`adb devices` lists none)"
    locked = _fake_adb(tmp_path, "List of devices attached\\nR58M\\tunauthorized\\n")
    assert "R58M attached but not authorized" in phones.android_devices(locked)["reason"]
    ok = _fake_adb(tmp_path, "List of devices attached\\nR58M\\tdevice\\nemulator-5554\\tdevice\\n")
    assert phones.android_devices(ok) == {"available": True, "devices": ["R58M", "emulator-5554"], "reason": ""}


@pytest.mark.skipif(os.uname().sysname == "Darwin", reason="the non-macOS message")
def test_ios_needs_a_mac():
    assert phones.ios_devices()["reason"] == "iPhones are reached through a macOS host with Xcode; this machine is not macOS"


def test_bench_cli_on_the_default_bundle(default_bundle):
    out, proc = default_bundle
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = run_cli("bench", str(out / "acne_test"), "--threads", "1", "--repeats", "3", "--warmup", "1",
                "--device", "snapdragon_8gen3_npu", "--device", "apple_a17pro_ane", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    arts = {a["artifact"]: a for a in res["artifacts"]}
    tfl = arts["artifacts/acne_mobilenetv2_fp32.tflite"]["host"]["1"]
    assert tfl["p50_ms"] > 0 and tfl["ratio_to_torch_fp32"] == pytest.approx(tfl["p50_ms"] / res["host"]["reference"]["1"]["p50_ms"], rel=1e-2)
    # a lower bound, when its peak was measured on an idle machine (a busy one understates the peak, and says so)
    assert "ratio_to_onnxruntime" in tfl and tfl["ratio_to_roofline"] >= (1.0 if "noisy" not in res["host"]["roofline"] else 0.0)
    assert tfl["p10_ms"] <= tfl["p50_ms"] <= tfl["p90_ms"] and tfl["cv"] >= 0
    assert any(a.startswith("(baseline)") and a.endswith("_ort_int8.onnx") for a in arts)
    est = {e["profile"]: e for e in arts["artifacts/acne_mobilenetv2_fp16.mlpackage"]["estimates"]}
    assert est["apple_a17pro_ane"]["estimated"] is True and est["apple_a17pro_ane"]["ms"] > 0
    assert est["snapdragon_8gen3_npu"]["ms"] is None and "runs tflite artifacts" in est["snapdragon_8gen3_npu"]["reason"]
    assert "macOS" in arts["artifacts/acne_mobilenetv2_fp16.mlpackage"]["host"]["1"]["skipped"] or os.uname().sysname == "Darwin"
    assert res["phones"]["android"]["available"] in (True, False) and res["phones"]["android"]["reason"] is not None
    # the artifact to ship per device, among the bundle's own (the ORT int8 baseline is not one): host fastest measured
    rec = {d["device"]: d for d in res["recommended"]["devices"]}
    assert list(rec) == ["host coreml (1 thr)", "host onnx (1 thr)", "host tflite (1 thr)", "snapdragon_8gen3_npu", "apple_a17pro_ane"]
    tflite = sorted((arts[f"artifacts/acne_mobilenetv2_{p}.tflite"]["host"]["1"]["p50_ms"], f"artifacts/acne_mobilenetv2_{p}.tflite")
                    for p in ("fp32", "fp16"))
    host = rec["host tflite (1 thr)"]
    assert (host["recommended"]["ms"], host["recommended"]["artifact"]) == tflite[0] and host["runner_up"]["ms"] == tflite[1][0]
    assert rec["apple_a17pro_ane"]["recommended"]["artifact"] == "artifacts/acne_mobilenetv2_fp16.mlpackage"
    assert rec["apple_a17pro_ane"]["recommended"]["basis"] == "estimated from profile apple_a17pro_ane (fitted)"
    assert not any("(baseline)" in str(d) for d in res["recommended"]["devices"] + res["recommended"]["flags"])
    bad = run_cli("bench", str(out / "acne_test"), "--threads", "two")
    assert bad.returncode == 1 and "--threads 'two' is not a comma-separated list of integers" in bad.stderr


def test_host_timings_give_their_spread_and_say_when_they_cannot_be_trusted():
    from toolkit.benchmark.host import latency_summary
    from toolkit.benchmark.render import render_bench

    steady = latency_summary(np.array([10.0, 10.0, 10.0, 10.0]), load=0.5)
    assert steady == {"p10_ms": 10.0, "p50_ms": 10.0, "p90_ms": 10.0, "mean_ms": 10.0, "cv": 0.0, "load_per_cpu": 0.5}
    spread = latency_summary(np.array([10.0, 10.0, 20.0, 20.0]), load=0.5)  # std 5, mean 15
    assert (spread["p10_ms"], spread["p50_ms"], spread["p90_ms"], spread["cv"]) == (10.0, 15.0, 20.0, 0.333)
    assert spread["noisy"] == ("runs vary by 33% (coefficient of variation > 15%): compare ratios measured side by side, "
                               "or re-run on an idle machine")
    busy = latency_summary(np.array([10.0, 10.0]), load=1.7)
    assert busy["noisy"].startswith("the machine is busy (load 1.70 per CPU > 1.0)")
    result = {"bundle": "b", "model": "m", "threads": [1], "seconds": 1.0, "failed_targets": [],
              "phones": {"android": {"available": False, "reason": "no adb"}, "ios": {"available": False, "reason": "no mac"}},
              "host": {"machine": "cpu", "roofline": {"threads": 1, "fp32_gmacs": 1.0, "bandwidth_gb_s": 1.0},
                       "reference": {"1": {**steady, "repeats": 4}}},
              "artifacts": [{"artifact": "a.tflite", "size_bytes": 1e6, "cost": {"macs": 1e6}, "estimates": [],
                             "host": {"1": {**spread, "ratio_to_torch_fp32": 1.5}}}]}
    text = render_bench(result)
    assert "warning: 1 host timing(s) are too noisy to trust as absolute figures:" in text
    assert "  a.tflite at 1 threads: p10–p90 10.0–20.0 ms around p50 15.0; runs vary by 33%" in text


def test_a_slow_runtime_stops_at_the_time_budget_after_a_few_runs_and_says_so():
    import time

    from toolkit.benchmark.host import MIN_REPEATS, measure_latency

    calls = []

    def slow(x):
        calls.append(x)
        time.sleep(0.04)

    m = measure_latency(slow, np.zeros(1), warmup=3, repeats=20, max_seconds=0.1)
    assert m["warmup"] == 1 and m["repeats"] == MIN_REPEATS == 3 and len(calls) == 4  # one warm-up: 0.04 s > 0.1 / 5
    assert m["time_budget"] == ("1 of 3 warm-up and 3 of 20 timed runs: the 0.1 s budget (benchmark.max_seconds) "
                                "was spent")
    assert 35 < m["p50_ms"] < 200
    fast = measure_latency(lambda x: None, np.zeros(1), warmup=3, repeats=20, max_seconds=0.05)
    assert (fast["warmup"], fast["repeats"]) == (3, 20) and "time_budget" not in fast
    unbounded = measure_latency(slow, np.zeros(1), warmup=1, repeats=8, max_seconds=None)
    assert unbounded["repeats"] == 8 and "time_budget" not in unbounded
