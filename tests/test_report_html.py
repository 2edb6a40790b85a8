"""The HTML report, rendered in a real headless browser: overview first (a forest plot of every artifact's drop against
its margin), passing artifacts collapsed, figures as inline SVG, honest histograms, one confusion matrix and a
changed-predictions matrix per artifact, the culprits named on the SQNR plot, and a failing gate's fix at the top."""

import re

import numpy as np
import pytest

from tests.browser import FAIL, MARGIN, PASS, colour_pixels, colour_rows, content_height, screenshot
from toolkit.verify.html import render_html

LABELS = ["clear", "mild", "moderate", "severe"]
LAYERS = ["features.0.0", "features.1.block.0.0", "features.1.block.1", "features.2.block.0.0", "features.2.block.1.0",
          "features.2.block.2", "features.3.block.0.0", "features.3.block.1.0", "classifier.1"]


def _row(value: float, drop: float, spread: float = 0.02) -> dict:
    return {"float": {"value": value + drop, "ci95": [value + drop - 0.05, value + drop + 0.05]},
            "artifact": {"value": value, "ci95": [value - 0.05, value + 0.05]},
            "drop": {"value": drop, "ci95": [drop - spread, drop + spread]}}


def _artifact(path: str, fmt: str, precision: str, *, drop: float, cosine: float, margin: float = 0.05, seed: int = 0) -> dict:
    """One artifact's gate result, shaped as ``verify_bundle`` returns it."""
    rng = np.random.default_rng(seed)
    upper = drop + 0.02
    criteria = [
        {"name": "outputs finite (no NaN/Inf)", "value": True, "bound": True, "op": "==", "passed": True},
        {"name": "max abs error vs float", "value": 0.02 + 0.1 * (1 - cosine), "bound": 0.25, "op": "<=", "passed": True},
        {"name": "cosine vs float", "value": cosine, "bound": 0.999, "op": ">=", "passed": cosine >= 0.999},
        {"name": "macro_f1 drop vs float (upper 95 % CI)", "value": upper, "bound": margin, "op": "<=", "passed": upper <= margin,
         "point": drop, "ci95": [drop - 0.02, upper]},
        {"name": "worst skin-tone group macro_f1 drop vs float (tan, n=40)", "value": drop * 1.5, "bound": 0.1, "op": "<=",
         "passed": drop * 1.5 <= 0.1},
    ]
    counts = [0] * 41
    for k, c in zip(range(14, 27), [1, 0, 3, 12, 60, 300, 900, 280, 50, 9, 2, 0, 1]):
        counts[k] = c
    edge = 0.04
    groups = {g: {"n": n, "ita_range": [lo, lo + 12.0], "metrics": {"macro_f1": _row(0.8, drop * f)}}
              for g, n, lo, f in (("very_light", 30, 56.0, 0.5), ("light", 44, 42.0, 1.0), ("intermediate", 52, 29.0, 0.8),
                                  ("tan", 40, 11.0, 1.5), ("brown", 24, -29.0, 1.1), ("dark", 10, -45.0, 0.9))}
    cm = rng.integers(0, 6, (4, 4)) + np.diag([40, 38, 35, 30])
    changed = np.diag(cm.sum(0)) + (np.eye(4, k=1, dtype=int) * round(drop * 100))
    passed = all(c["passed"] for c in criteria)
    a = {
        "path": f"artifacts/{path}", "format": fmt, "precision": precision, "passed": passed,
        "check": "ai-edge-litert interpreter (XNNPACK); batch 1" if fmt == "tflite" else "ONNX Runtime (CPU)",
        "criteria": criteria,
        "numerics": {"max_abs_error": 0.02, "mean_abs_error": 0.004, "mean_signed_error": 0.0, "cosine": cosine, "sqnr_db": 30.0},
        "numerics_by_output": {"logits": {"max_abs_error": 0.02, "mean_abs_error": 0.004, "mean_signed_error": 0.0, "cosine": cosine, "sqnr_db": 30.0}},
        "error_histogram": {"edges": list(np.linspace(-edge, edge, 42)), "counts": counts},
        "agreement": 0.97,
        "task_metric": {"name": "macro_f1", "higher_is_better": True, "float": 0.8 + drop, "artifact": 0.8, "drop": drop,
                        "drop_ci95": [drop - 0.02, upper]},
        "metrics": {"macro_f1": _row(0.8, drop), "accuracy": _row(0.82, drop * 0.8)},
        "by_group": groups,
        "confusion": {"artifact": cm.tolist(), "float": (cm + np.eye(4, dtype=int)).tolist(), "changed": changed.tolist()},
        "tolerance": {"max_metric_drop": margin},
    }
    if not passed:
        ranking = [{"layer": n, "position": i, "type": "Conv2d", "local_sqnr_db": 45.0 - 9 * (n == "features.1.block.0.0") - i * 0.5,
                    "input_sqnr_db": 40.0 - i, "output_sqnr_db": 38.0 - i, "sqnr_drop_db": 2.0, "weight_sqnr_db": 49.0,
                    "artifact_tensor": f"tensor {i}", "match_cosine": 1.0} for i, n in enumerate(LAYERS)]
        ranking.sort(key=lambda r: r["local_sqnr_db"])
        a["culprits"] = {"method": "artifact weights read back from the file; activations fake-quantized to 8 bits over float ranges (simulated)",
                         "images": 16, "layers_matched": len(LAYERS), "layers_total": len(LAYERS), "unmatched": [],
                         "output_sqnr_db": 24.9, "ranking": ranking,
                         "suggestion": "keep in higher precision: " + ", ".join(r["layer"] for r in ranking[:3])}
        a["advice"] = {
            "artifact": path, "target": f"{fmt}_{precision}", "replace": {"format": fmt, "precision": precision},
            "replace_yaml": f"- {{format: {fmt}, precision: {precision}}}", "kind": "precision",
            "with": {"format": fmt, "precision": "int16x8"}, "with_yaml": f"- {{format: {fmt}, precision: int16x8}}",
            "change": f"precision int16x8 instead of {precision}", "output_sqnr_db": [24.9, 38.3],
            "simulated": "weights as the artifact stores them (int8 per channel); activations fake-quantized to 16 bits",
            "criteria": [{"name": "cosine vs float", "value": cosine, "predicted": 0.99996, "op": ">=", "bound": 0.999, "passes": True}],
            "meets": True, "not_predicted": ["macro_f1 drop vs float (upper 95 % CI)"],
            "basis": "culprit analysis: the compressed twin on 16 images (simulated), its output SQNR change applied to what the gate measured",
            "alternatives": [{"kind": "keep_float", "with": {"format": fmt, "precision": precision, "keep_float": [ranking[0]["layer"]]},
                              "with_yaml": f"- {{format: {fmt}, precision: {precision}, keep_float: [{ranking[0]['layer']}]}}",
                              "change": f"keep 1 layer float: {ranking[0]['layer']}", "output_sqnr_db": [24.9, 27.5],
                              "criteria": [], "meets": None}],
        }
    return a


def summary(*, failing: bool = False) -> dict:
    """A five-artifact verification summary, as ``verify_bundle`` returns it; ``failing``: the int8 artifact fails."""
    arts = [_artifact("m_fp32.onnx", "onnx", "fp32", drop=0.0, cosine=1.0, margin=0.03, seed=1),
            _artifact("m_fp32.tflite", "tflite", "fp32", drop=0.001, cosine=0.99999, margin=0.03, seed=2),
            _artifact("m_fp16.tflite", "tflite", "fp16", drop=0.004, cosine=0.9999, margin=0.03, seed=3),
            _artifact("m_int8.tflite", "tflite", "int8", drop=0.09 if failing else 0.01, cosine=0.995 if failing else 0.9995, seed=4),
            _artifact("m_fp16.mlpackage", "coreml", "fp16", drop=0.003, cosine=0.9999, margin=0.03, seed=5)]
    ok = all(a["passed"] for a in arts)
    return {"bundle": "bundles/m", "model": "acne_mobilenetv2", "task": "classification", "labels": LABELS, "passed": ok,
            "gate_passed": ok, "complete": True, "failed_targets": [],
            "evaluation": {"source": "synthetic", "n": 200, "folder": None, "bootstrap": 1000, "noninferiority": "ci",
                           "skin_tone": {"method": "ITA° from the central face ellipse (CIELab, OpenCV), six Fitzpatrick-proxy bins",
                                         "groups": {"very_light": 30, "light": 44, "intermediate": 52, "tan": 40, "brown": 24, "dark": 10},
                                         "ita": [], "versus_annotation": None}},
            "integrity": [{"path": a["path"], "sha256": "0" * 64, "matches": True} for a in arts],
            "signature": {"present": False, "checked": False}, "notes": [], "artifacts": arts, "seconds": 12.5}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    out = {}
    for name, failing in (("passing", False), ("failing", True)):
        page = tmp / f"{name}.html"
        page.write_text(render_html(summary(failing=failing)))
        out[name] = page
    return out


def test_page_is_self_contained_vector_and_collapsed(pages):
    html = pages["passing"].read_text()
    assert "data:image/png" not in html and "<img" not in html, "figures are inline SVG, not PNG"
    assert html.count("<svg") == 1 + 5 * 4 + 1  # the forest plot; per artifact histogram, groups, confusion, changed; the float reference
    assert "<script" not in html and "http" not in html.replace("http-equiv", "").replace("http://www.w3.org", "")
    assert html.count("<details class='artifact'") == 5 and " open>" not in html, "passing artifacts are collapsed"
    assert html.index("id=overview") < html.index("<details class='artifact'")
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "each inline figure's element ids are its own"
    assert "Suggested fix" not in html


def test_histogram_draws_counts_and_leaves_empty_bins_empty(pages):
    html = pages["passing"].read_text()
    first = html[html.index("output error:"):]
    assert first.startswith("output error: 1,618 values, 30 of 41 bins empty")
    histogram = html[:html.index("output error:")].rsplit("<svg", 1)[1]
    assert histogram.count('style="fill: #4a78b5"') == 11, "one bar per non-empty bin: none for the 30 empty ones"
    assert "max abs bound" in html


def test_one_confusion_matrix_and_the_changed_predictions(pages):
    html = pages["failing"].read_text()
    int8 = html[html.index("id='a3'"):html.index("id='a4'")]
    assert int8.count('aria-label="confusion matrix (artifact)"') == 1 and "confusion matrix (float)" not in int8
    assert "changed predictions: 27 of" in int8
    assert html.count('aria-label="confusion matrix (float)"') == 1, "the float model's matrix once, not once per artifact"


def test_culprits_named_on_the_sqnr_plot(pages):
    html = pages["failing"].read_text()
    plot = html[html.index("per-layer SQNR (network order)") - 20000:]
    plot = plot[plot.index('aria-label="per-layer SQNR"'):]
    plot = plot[:plot.index("</svg>")]
    for name in LAYERS:
        assert f">{name}<" in plot, name  # every tick is a module path, as text
    assert plot.count(">features.1.block.0.0<") == 2  # its tick and its annotation as a culprit


def test_passing_page_in_a_browser(pages, tmp_path):
    full = screenshot(pages["passing"], tmp_path / "full.png", height=6000)
    height = content_height(full)
    assert 600 < height < 2200, f"five passing artifacts take {height} px (8,450 before the overview and collapsed sections)"
    first = screenshot(pages["passing"], tmp_path / "first.png", height=900)
    forest = colour_rows(first, MARGIN)
    assert forest.size and forest.max() < 900, "the forest plot's margins are on the first screen"
    assert colour_pixels(first, PASS) > 300, "pass green: the verdict, and every artifact's CI in the forest plot"
    assert colour_pixels(first, FAIL) < 50, "no failure red on a passing page"


def test_failing_page_in_a_browser(pages, tmp_path):
    html = pages["failing"].read_text()
    assert html.index("Suggested fix") < html.index("id=overview") < html.index("<details class='artifact")
    assert "- {format: tflite, precision: int16x8}" in html[:html.index("id=overview")]
    assert html.count(" open>") == 1  # the failing artifact's section, open
    first = screenshot(pages["failing"], tmp_path / "first.png", height=900)
    assert colour_pixels(first, FAIL) > 200, "failure red: the verdict, the fix's border, the failing artifact in the forest plot"
    assert colour_pixels(first, PASS) > 200, "pass green: the artifacts that pass"
    assert colour_rows(first, MARGIN).size, "the forest plot is on the first screen, below the fix"
    red = colour_rows(first, FAIL)
    assert red.min() < 250, "the verdict and the fix come first"
