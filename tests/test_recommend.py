"""The recommended artifact per device: the fastest that passed its gate, and the flags for an artifact slower than a
more precise sibling. Hand-made rows with exact expectations, then one real export (the session's default bundle)."""

import json
import sys
from types import SimpleNamespace

from toolkit.benchmark.devices import load_profiles
from toolkit.benchmark.recommend import RULE, SLOWER_BY, Candidate, Device, Figure, Pick, SlowerThanSibling, host_key, precision_rank, recommend, recommend_rows
from toolkit.benchmark.render import render_recommended

HOST = Device("host tflite (2 thr)", "host", "tflite", "this host: XNNPACK, 2 threads")
NPU = Device("npu", "profile", "tflite", "a phone NPU")


def _measured(ms, noisy=""):
    return Figure(ms, "measured on host (p50, 2 threads)", True, noisy=noisy)


def _estimated(ms, profile="npu"):
    return Figure(ms, f"estimated from profile {profile} (fitted)", False)


def _art(name, precision, passed=True, size=1000, fmt="tflite", **figures):
    return Candidate(f"artifacts/{name}", fmt, precision, passed, size, {HOST.key if k == "host" else k: f for k, f in figures.items()})


def test_precision_order_follows_the_tiers_of_precisions():
    # setup / execute / assert: the tiers of toolkit.backends.precisions, most precise first
    ranks = {p: precision_rank(p) for p in ("fp32", "fp16", "sparse", "int8_weights", "dynamic_int8", "int8", "int16x8",
                                            "palettize8", "palettize4", "int4_block", "no_such")}
    assert ranks == {"fp32": 0, "fp16": 1, "sparse": 1, "int8_weights": 2, "dynamic_int8": 2, "int8": 2, "int16x8": 2,
                     "palettize8": 2, "palettize4": 3, "int4_block": 3, "no_such": 4}


def test_the_fastest_passing_artifact_is_recommended_with_its_runner_up_and_int8_slower_than_fp32_is_flagged():
    # the hydration_vit case: int8 TFLite 5× slower than fp32 on the host
    arts = [_art("m_fp32.tflite", "fp32", host=_measured(3.7)), _art("m_fp16.tflite", "fp16", size=500, host=_measured(3.9)),
            _art("m_int8.tflite", "int8", size=250, host=_measured(18.9))]

    r = recommend(arts, [HOST])

    (d,) = r.devices
    assert d.recommended == Pick(artifact="artifacts/m_fp32.tflite", precision="fp32", ms=3.7,
                                 basis="measured on host (p50, 2 threads)", measured=True)
    assert d.runner_up.artifact == "artifacts/m_fp16.tflite" and d.reason is None
    assert r.flags == [SlowerThanSibling(
        device=HOST.key, artifact="artifacts/m_int8.tflite", precision="int8", ms=18.9, sibling="artifacts/m_fp32.tflite",
        sibling_precision="fp32", sibling_ms=3.7, ratio=5.11, measured=True,
        message="artifacts/m_int8.tflite (int8) is 5.11× slower than the more precise artifacts/m_fp32.tflite (fp32) "
                "on host tflite (2 thr): 18.9 vs 3.7 ms, measured")]  # fp16 is 1.05× fp32: within run-to-run spread
    assert r.rule == RULE


def test_a_failing_artifact_is_never_recommended_even_when_fastest():
    arts = [_art("m_fp32.tflite", "fp32", host=_measured(4.0)), _art("m_int8.tflite", "int8", passed=False, host=_measured(1.0))]

    (d,) = recommend(arts, [HOST]).devices

    assert d.recommended.artifact == "artifacts/m_fp32.tflite" and d.runner_up is None


def test_measured_figures_rank_alone_where_any_passing_artifact_was_measured():
    arts = [_art("m_fp32.tflite", "fp32", host=_measured(5.0)), _art("m_int8.tflite", "int8", host=_estimated(1.0))]

    (d,) = recommend(arts, [HOST]).devices

    assert (d.recommended.artifact, d.recommended.basis, d.recommended.measured) == (
        "artifacts/m_fp32.tflite", "measured on host (p50, 2 threads)", True)
    assert d.runner_up is None  # an estimate is not ranked against a measurement
    # with nothing measured, the estimates rank
    (e,) = recommend([_art("m_int8.tflite", "int8", npu=_estimated(0.3)), _art("m_fp32.tflite", "fp32", npu=_estimated(0.6))],
                     [NPU]).devices
    assert (e.recommended.artifact, e.recommended.basis, e.runner_up.artifact) == (
        "artifacts/m_int8.tflite", "estimated from profile npu (fitted)", "artifacts/m_fp32.tflite")


def test_ties_go_to_the_more_precise_then_the_smaller_then_the_name_whatever_the_input_order():
    arts = [_art("b_int8.tflite", "int8", size=100, host=_measured(2.0)), _art("a_fp16.tflite", "fp16", size=900, host=_measured(2.0)),
            _art("c_fp16.tflite", "fp16", size=500, host=_measured(2.0)), _art("d_fp16.tflite", "fp16", size=500, host=_measured(2.0))]

    picks = {(d.recommended.artifact, d.runner_up.artifact) for d in
             (recommend(order, [HOST]).devices[0] for order in (arts, arts[::-1], arts[1:] + arts[:1]))}

    assert picks == {("artifacts/c_fp16.tflite", "artifacts/d_fp16.tflite")}


def test_no_recommendation_says_why():
    arts = [_art("m_fp32.tflite", "fp32", passed=False, host=_measured(3.0)),
            _art("m_fp16.tflite", "fp16", host=Figure(None, "", True, reason="the runtime refused it")),
            _art("m_fp16.mlpackage", "fp16", fmt="coreml")]
    ane = Device("ane", "profile", "coreml", "a phone ANE")
    npu_none = Device("npu", "profile", "onnx", "a phone that runs onnx")

    host, coreml, onnx = recommend(arts, [HOST, ane, npu_none]).devices

    assert host.recommended is None and host.reason == (
        "no passing artifact runs there: artifacts/m_fp32.tflite failed its gate; artifacts/m_fp16.tflite: the runtime refused it")
    assert coreml.recommended is None and coreml.reason == "no passing artifact runs there: artifacts/m_fp16.mlpackage: no figure"
    assert onnx.reason == "it runs onnx artifacts and the bundle has none"


def test_flags_compare_like_with_like_and_name_the_fastest_more_precise_sibling():
    arts = [_art("m_fp32.tflite", "fp32", host=_measured(4.0), npu=_estimated(0.5)),
            _art("m_fp16.tflite", "fp16", host=_measured(3.0), npu=_estimated(0.4)),
            _art("m_int8.tflite", "int8", passed=False, host=_measured(6.0), npu=_estimated(0.2)),
            _art("m_int4.tflite", "int4_block", host=_estimated(1.0), npu=_estimated(0.45))]

    flags = recommend(arts, [HOST, NPU]).flags

    # int8 against fp16 (the fastest more precise one), a failing artifact included: the flag is about speed;
    # int4's host estimate is not compared with the measurements; on the NPU int4 is named against int8, not fp16
    assert [(f.device, f.artifact, f.sibling, f.ratio, f.measured) for f in flags] == [
        (HOST.key, "artifacts/m_int8.tflite", "artifacts/m_fp16.tflite", 2.0, True),
        ("npu", "artifacts/m_int4.tflite", "artifacts/m_int8.tflite", 2.25, False)]


def test_rows_as_bench_writes_them():
    rows = [{"artifact": "artifacts/m_fp32.tflite", "format": "tflite", "precision": "fp32", "passed": True, "size_bytes": 4000,
             "host": {"1": {"p50_ms": 7.0, "runtime": "XNNPACK"}, "2": {"p50_ms": 4.0, "runtime": "XNNPACK"}},
             "estimates": [{"profile": "npu", "ms": 0.6, "basis": "fitted to published figures"},
                           {"profile": "ane", "ms": None, "basis": None, "reason": "ane runs coreml artifacts"}]},
            {"artifact": "artifacts/m_int8.tflite", "format": "tflite", "precision": "int8", "passed": True, "size_bytes": 1000,
             "host": {"1": {"p50_ms": 20.0, "runtime": "XNNPACK"}, "2": {"p50_ms": 10.0, "runtime": "XNNPACK", "noisy": "busy"}},
             "estimates": [{"profile": "npu", "ms": 0.3, "basis": "derived (not fitted)"},
                           {"profile": "ane", "ms": None, "basis": None, "reason": "ane runs coreml artifacts"}],
             "phones": [{"device": "R58M", "delegate": "gpu", "mean_ms": 2.5}]},
            {"artifact": "artifacts/m_fp16.mlpackage", "format": "coreml", "precision": "fp16", "passed": True, "size_bytes": 2000,
             "host": {"2": {"skipped": "Core ML executes on macOS only"}},
             "estimates": [{"profile": "npu", "ms": None, "basis": None, "reason": "npu runs tflite artifacts"},
                           {"profile": "ane", "ms": 0.5, "basis": "fitted to published figures"}]}]
    profiles = [SimpleNamespace(name="npu", runtime="tflite", device="Phone X", unit="npu"),
                SimpleNamespace(name="ane", runtime="coreml", device="Phone Y", unit="npu")]

    r = recommend_rows(rows, profiles).model_dump(mode="json")

    assert [(d["device"], d["kind"], d["recommended"] and d["recommended"]["artifact"], d["recommended"] and d["recommended"]["basis"])
            for d in r["devices"]] == [
        ("host coreml (2 thr)", "host", None, None),
        ("host tflite (1 thr)", "host", "artifacts/m_fp32.tflite", "measured on host (p50, 1 threads)"),
        ("host tflite (2 thr)", "host", "artifacts/m_fp32.tflite", "measured on host (p50, 2 threads)"),
        ("npu", "profile", "artifacts/m_int8.tflite", "estimated from profile npu (derived)"),
        ("ane", "profile", "artifacts/m_fp16.mlpackage", "estimated from profile ane (fitted)"),
        ("phone R58M (gpu)", "phone", "artifacts/m_int8.tflite", "measured on phone R58M (mean, benchmark_model)")]
    assert r["devices"][0]["reason"] == "no passing artifact runs there: artifacts/m_fp16.mlpackage: Core ML executes on macOS only"
    assert r["devices"][2]["description"] == "this host: XNNPACK, 2 threads"
    assert r["devices"][2]["runner_up"]["noisy"] == "busy" and r["devices"][3]["description"] == "Phone X, NPU"
    assert [(f["device"], f["ratio"]) for f in r["flags"]] == [(host_key("tflite", 1), 2.86), (host_key("tflite", 2), 2.5)]


def test_a_measured_flag_needs_its_fastest_runs_slower_too_and_says_when_the_host_was_noisy():
    fp32 = Figure(3.7, "measured on host (p50, 2 threads)", True, p10_ms=3.5)
    median_only = _art("m_fp16.tflite", "fp16", host=Figure(4.7, "m", True, p10_ms=3.6))  # 1.27× at p50, 1.03× at p10
    within = _art("m_sparse.tflite", "sparse", host=Figure(4.5, "m", True))  # 1.22×: below SLOWER_BY
    slow = _art("m_int8.tflite", "int8", host=Figure(18.9, "m", True, noisy="busy", p10_ms=17.0))

    flags = recommend([_art("m_fp32.tflite", "fp32", host=fp32), median_only, within, slow], [HOST]).flags

    assert [(f.artifact, f.sibling, f.ratio, f.noisy) for f in flags] == [
        ("artifacts/m_int8.tflite", "artifacts/m_fp32.tflite", 5.11, True)]
    assert flags[0].message.endswith(": 18.9 vs 3.7 ms, measured on a host marked noisy: confirm on an idle machine")


def test_the_table_and_flags_as_report_md_and_bench_print_them():
    arts = [_art("m_fp32.tflite", "fp32", host=_measured(3.7)), _art("m_int8.tflite", "int8", host=_measured(18.9, noisy="busy")),
            _art("m_fp16.mlpackage", "fp16", fmt="coreml", ane=_estimated(0.41, "ane"))]
    devices = [HOST, Device("ane", "profile", "coreml", "a phone ANE"), Device("ai", "profile", "coreai", "Core AI")]
    rec = recommend(arts, devices).model_dump(mode="json")

    lines = render_recommended(rec, {"tflite", "coreml"})

    assert lines == [
        f"Rule: {RULE}.", "", "| device | runtime | recommended | latency | basis | runner-up |", "|---|---|---|---|---|---|",
        "| host tflite (2 thr) | tflite | `artifacts/m_fp32.tflite` (fp32) | 3.7 ms | measured on host (p50, 2 threads) | "
        "`artifacts/m_int8.tflite` (int8) 18.9 ms (noisy) |",
        "| ane | coreml | `artifacts/m_fp16.mlpackage` (fp16) | 0.41 ms | estimated from profile ane (fitted) | — |",
        "", "No artifact of their runtime in the bundle: ai (coreai).", "",
        "Slower than a more precise sibling on the same device:", "",
        "- artifacts/m_int8.tflite (int8) is 5.11× slower than the more precise artifacts/m_fp32.tflite (fp32) on "
        "host tflite (2 thr): 18.9 vs 3.7 ms, measured on a host marked noisy: confirm on an idle machine"]
    assert render_recommended({**rec, "flags": []}, {"tflite"})[-1] == "No artifact is slower than a more precise sibling on any device."


# -- one real export (the session's default bundle: onnx fp32, tflite fp32 and fp16, coreml fp16) --------------

def _expected(candidates: list[tuple[float, str, str, int]]) -> tuple:
    """The rule, independently: the fastest, then the more precise, the smaller, the first by name."""
    ranked = sorted(candidates, key=lambda c: (c[0], precision_rank(c[2]), c[3], c[1]))
    return tuple((c[1], c[0]) for c in ranked[:2])


def test_a_real_export_recommends_per_device_from_its_own_figures(default_bundle):
    out, proc = default_bundle
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = out / "acne_test"
    m = json.loads((path / "manifest.json").read_text())
    report = (path / "report.md").read_text()
    rec, arts = m["recommended"], m["artifacts"]
    by = {d["device"]: d for d in rec["devices"]}
    threads = m["recipe"]["resolved"]["benchmark"]["threads"]
    profiles = load_profiles()

    # one device per host runtime, then every profile, in order
    hosts = [host_key(f, threads) for f in ("coreml", "onnx", "tflite")]
    assert list(by) == hosts + [p.name for p in profiles]
    for key, fmt in zip(hosts, ("coreml", "onnx", "tflite")):
        d = by[key]
        timed = [(a["benchmark"]["p50_ms"], a["path"], a["precision"], a["size_bytes"]) for a in arts
                 if a["format"] == fmt and "p50_ms" in a["benchmark"]]
        got = tuple((p["artifact"], p["ms"]) for p in (d["recommended"], d["runner_up"]) if p)
        assert got == _expected(timed), key
        if timed:
            assert d["recommended"]["basis"] == f"measured on host (p50, {threads} threads)" and d["recommended"]["measured"] is True
    if sys.platform != "darwin":  # Core ML is not timed off macOS: no recommendation, and why
        assert by[hosts[0]]["reason"] == ("no passing artifact runs there: artifacts/acne_mobilenetv2_fp16.mlpackage: "
                                          "Core ML executes on macOS only; the reference interpreter's latency means nothing")
    assert by[hosts[2]]["runner_up"] is not None  # tflite fp32 and fp16 both timed
    for p in profiles:
        d = by[p.name]
        est = [(a["benchmark"]["estimated_ms"][p.name], a["path"], a["precision"], a["size_bytes"]) for a in arts
               if p.name in a["benchmark"]["estimated_ms"]]
        assert tuple((q["artifact"], q["ms"]) for q in (d["recommended"], d["runner_up"]) if q) == _expected(est), p.name
        if d["recommended"]:
            assert d["recommended"]["basis"] in (f"estimated from profile {p.name} (fitted)", f"estimated from profile {p.name} (derived)")
            assert d["recommended"]["measured"] is False
        if p.runtime not in {a["format"] for a in arts}:
            assert d["reason"] == f"it runs {p.runtime} artifacts and the bundle has none"
    assert by["apple_a17pro_ane"]["recommended"]["artifact"] == "artifacts/acne_mobilenetv2_fp16.mlpackage"
    assert by["snapdragon_8gen3_npu"]["recommended"]["artifact"] in ("artifacts/acne_mobilenetv2_fp32.tflite",
                                                                     "artifacts/acne_mobilenetv2_fp16.tflite")
    # every flag states the manifest's own figures
    for f in rec["flags"]:
        a, s = next(a for a in arts if a["path"] == f["artifact"]), next(a for a in arts if a["path"] == f["sibling"])
        ms_a, ms_s = ((x["benchmark"]["p50_ms"] if f["measured"] else x["benchmark"]["estimated_ms"][f["device"]]) for x in (a, s))
        assert (f["ms"], f["sibling_ms"]) == (ms_a, ms_s) and f["ratio"] == round(ms_a / ms_s, 2) >= round(SLOWER_BY, 2)
        assert precision_rank(s["precision"]) < precision_rank(a["precision"])

    # report.md: one table row per device of a runtime the bundle has, and the flags (or that there are none)
    assert "\n## Recommended artifact per device\n" in report
    for d in rec["devices"]:
        r = d["recommended"]
        if r is None:
            row = f"| {d['device']} | {d['runtime']} | none: {d['reason']} |"
        else:
            row = f"| {d['device']} | {d['runtime']} | `{r['artifact']}` ({r['precision']}) | {r['ms']:.3g} ms"
        assert (row in report) == (d["runtime"] in {a["format"] for a in arts}), row
    for line in [f"- {f['message']}" for f in rec["flags"]] or ["No artifact is slower than a more precise sibling on any device."]:
        assert f"\n{line}\n" in report
