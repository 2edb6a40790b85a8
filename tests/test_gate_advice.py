"""A failing gate's fix: a paste-able recipe change (layers to keep float, or a precision), with what the culprit
analysis predicts, first in the terminal output, in the JUnit failure text, in report.md and at the top of the HTML;
and the change, applied, is a recipe `skinkit export --dry-run` accepts."""

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.browser import FAIL, MARGIN, colour_pixels, colour_rows, screenshot
from tests.conftest import run_cli, write_recipe
from toolkit.convert.base import Artifact, artifact_filename
from toolkit.recipe import Target, parse_recipe
from toolkit.registry import get_spec
from toolkit.verify import advice as advice_mod
from toolkit.verify.culprit import higher_precisions, keeps_float, kmeans_1d, simulate_weights, sqnr_db, whatif_precisions

SPEC = get_spec("acne_mobilenetv2")


def _recipe(*targets: dict):
    return parse_recipe({"name": "x", "model": {"name": "acne_mobilenetv2"}, "targets": list(targets)})


def _artifact(fmt: str, precision: str, variant: str | None = None) -> Artifact:
    return Artifact(format=fmt, precision=precision, seconds=0.0,
                    path=Path("artifacts") / artifact_filename(SPEC.name, fmt, variant or precision))


def _result(*, cosine: float = 0.9994, bound: float = 0.9999, drop_fails: bool = False, whatif: dict | None = None) -> dict:
    criteria = [{"name": "outputs finite (no NaN/Inf)", "value": True, "bound": True, "op": "==", "passed": True},
                {"name": "cosine vs float", "value": cosine, "bound": bound, "op": ">=", "passed": cosine >= bound},
                {"name": "macro_f1 drop vs float (upper 95 % CI)", "value": 0.09 if drop_fails else 0.01, "bound": 0.05, "op": "<=",
                 "passed": not drop_fails, "point": 0.05, "ci95": [0.0, 0.09]}]
    result = {"passed": all(c["passed"] for c in criteria), "criteria": criteria, "metrics": {}}
    if whatif is not None:
        result["culprits"] = {"output_sqnr_db": 24.9, "ranking": [], "suggestion": "", "whatif": whatif}
    return result


def _whatif(keep: dict[int, float], precisions: dict[str, float], twin: float = 24.9) -> dict:
    layers = ["features.1.block.0.0", "features.2.block.1.0", "features.3.block.1.0", "features.3.block.0.0",
              "features.4.block.1.0", "features.2.block.0.0", "features.5.block.0.0", "features.6.block.1.0"]
    return {"images": 16, "compared": "every output", "twin_output_sqnr_db": twin,
            "keep_float": [{"layers": layers[:k], "output_sqnr_db": db} for k, db in keep.items()],
            "precisions": [{"precision": p, "output_sqnr_db": db, "simulated": "…"} for p, db in precisions.items()]}


def test_the_fewest_layers_predicted_to_pass_are_kept_float():
    recipe = _recipe({"format": "tflite", "precision": "int8", "tolerance": {"min_cosine": 0.9999}})
    w = _whatif({1: 27.0, 2: 36.0, 4: 37.0, 8: 37.5}, {"int16x8": 38.0, "int8_weights": 38.0, "fp16": 65.0})
    a = advice_mod.advise(recipe, SPEC, _artifact("tflite", "int8"), _result(whatif=w))
    assert a["kind"] == "keep_float" and a["with"]["keep_float"] == ["features.1.block.0.0", "features.2.block.1.0"]
    assert a["with_yaml"] == "- {format: tflite, precision: int8, keep_float: [features.1.block.0.0, features.2.block.1.0], tolerance: {min_cosine: 0.9999}}"
    assert a["replace_yaml"] == "- {format: tflite, precision: int8, tolerance: {min_cosine: 0.9999}}"
    (crit,) = a["criteria"]  # cosine's noise-to-signal, 11.1 dB lower: a pass with 3 dB to spare
    nsr = 1 / 0.9994**2 - 1
    assert crit["passes"] and crit["predicted"] == pytest.approx(1 / np.sqrt(1 + nsr * 10 ** (-11.1 / 10)))
    assert a["meets"] is True and a["output_sqnr_db"] == [24.9, 36.0]
    w["keep_float"][1]["output_sqnr_db"] = 33.0  # passes at 8.1 dB, not at 5.1: borderline, so the next is offered
    a = advice_mod.advise(recipe, SPEC, _artifact("tflite", "int8"), _result(whatif=w))
    assert len(a["with"]["keep_float"]) == 4
    keep2 = advice_mod._options(recipe, recipe.targets[0], _artifact("tflite", "int8"), w, twin_db=24.9,
                                failed=[_result()["criteria"][1]])[1]
    assert keep2["criteria"][0]["borderline"] and "borderline" in advice_mod.prediction_text(keep2)
    w["keep_float"][1]["output_sqnr_db"] = 36.0
    a = advice_mod.advise(recipe, SPEC, _artifact("tflite", "int8"), _result(whatif=w))
    assert [alt["kind"] for alt in a["alternatives"]] == ["precision", "search"]
    assert a["alternatives"][0]["with"]["precision"] == "int16x8"
    text = "\n".join(advice_mod.advice_lines(a, "artifacts/acne_mobilenetv2_int8.tflite"))
    assert "keep 2 layers float (features.1.block.0.0, features.2.block.1.0)" in text and "(required >= 0.9999): pass" in text


def test_a_precision_when_keeping_layers_float_is_not_predicted_to_pass():
    recipe = _recipe({"format": "tflite", "precision": "int8", "tolerance": {"min_cosine": 0.9999}})
    w = _whatif({1: 27.5, 2: 26.5, 4: 24.2, 8: 27.2}, {"int16x8": 38.3, "int8_weights": 38.3, "fp16": 65.5})
    a = advice_mod.advise(recipe, SPEC, _artifact("tflite", "int8"), _result(whatif=w))
    assert (a["kind"], a["with"]) == ("precision", {"format": "tflite", "precision": "int16x8", "tolerance": {"min_cosine": 0.9999}})
    keep = next(alt for alt in a["alternatives"] if alt["kind"] == "keep_float")
    assert keep["with"]["keep_float"] == ["features.1.block.0.0"] and keep["meets"] is False  # the most a kept layer helps


def test_a_target_the_recipe_already_has_is_not_offered():
    recipe = _recipe({"format": "tflite", "precision": "int8", "tolerance": {"min_cosine": 0.9999}}, {"format": "tflite", "precision": "int16x8"})
    w = _whatif({1: 27.5}, {"int16x8": 38.3, "int8_weights": 38.3, "fp16": 65.5})
    a = advice_mod.advise(recipe, SPEC, _artifact("tflite", "int8"), _result(whatif=w))
    assert a["with"]["precision"] == "int8_weights"


def test_a_palettization_moves_up_dropping_nothing_it_still_takes():
    recipe = _recipe({"format": "coreml", "precision": "palettize4", "group_size": 16})
    assert whatif_precisions("coreml", "palettize4") == ["int4_block", "palettize6", "palettize8", "fp16"]
    assert not keeps_float("coreml", "palettize4") and keeps_float("tflite", "int16x8")
    w = _whatif({}, {"int4_block": 12.0, "palettize6": 29.0, "palettize8": 40.0, "fp16": 67.0}, twin=9.0)
    a = advice_mod.advise(recipe, SPEC, _artifact("coreml", "palettize4", "palettize4_g16"), _result(cosine=0.9447, bound=0.9999, whatif=w))
    assert a["with"] == {"format": "coreml", "precision": "palettize8", "group_size": 16}
    w["precisions"] = [p for p in w["precisions"] if p["precision"] != "palettize8"]
    a = advice_mod.advise(recipe, SPEC, _artifact("coreml", "palettize4", "palettize4_g16"), _result(cosine=0.9447, bound=0.9999, whatif=w))
    assert a["with"] == {"format": "coreml", "precision": "fp16"}  # group_size applies to palettizations only


def test_task_metric_failures_are_named_not_predicted():
    recipe = _recipe({"format": "tflite", "precision": "int8"})
    w = _whatif({1: 26.0, 2: 27.0}, {"int16x8": 38.3, "fp16": 65.5})
    a = advice_mod.advise(recipe, SPEC, _artifact("tflite", "int8"), _result(cosine=0.9994, bound=0.99, drop_fails=True, whatif=w))
    assert a["with"]["precision"] == "int16x8"  # keeping layers float adds under 6 dB: not offered first
    assert a["not_predicted"] == ["macro_f1 drop vs float (upper 95 % CI)"] and a["criteria"] == [] and a["meets"] is None


def test_without_a_culprit_analysis_the_nearest_precision_and_the_search():
    recipe = _recipe({"format": "tflite", "precision": "int8", "tolerance": {"min_cosine": 0.9999}})
    a = advice_mod.advise(recipe, SPEC, _artifact("tflite", "int8"), _result())
    assert a["with"]["precision"] == "int16x8" and "output_sqnr_db" not in a and a["basis"].startswith("not predicted")
    assert [alt["with"].get("keep_float") for alt in a["alternatives"]] == ["auto"]  # and the search against the gate


def test_nothing_to_advise():
    recipe = _recipe({"format": "tflite", "precision": "int8"})
    structural = {"passed": False, "metrics": {}, "criteria": [{"name": "input dtype", "value": "float32", "bound": "int8", "op": "==", "passed": False}]}
    assert advice_mod.advise(recipe, SPEC, _artifact("tflite", "int8"), structural) is None
    assert advice_mod.advise(recipe, SPEC, _artifact("tflite", "fp16"), _result()) is None  # no such target in the recipe
    assert advice_mod.advise(_recipe({"format": "onnx", "precision": "fp32"}), SPEC, _artifact("onnx", "fp32"), _result()) is None
    assert higher_precisions("onnx", "fp32") == []


def test_applied_advice_is_a_recipe(tmp_path):
    data = {"name": "x", "model": {"name": "acne_mobilenetv2"},
            "targets": [{"format": "onnx", "precision": "fp32"}, {"format": "tflite", "precision": "int8", "tolerance": {"min_cosine": 0.9999}}]}
    w = _whatif({1: 27.0, 2: 36.0}, {"int16x8": 38.0})
    a = advice_mod.advise(parse_recipe(data), SPEC, _artifact("tflite", "int8"), _result(whatif=w))
    applied = advice_mod.apply(data, a)
    assert applied["targets"][0] == data["targets"][0] and parse_recipe(applied).targets[1].key == "tflite_int8_mixed"
    pasted = yaml.safe_load(a["with_yaml"])[0]  # the line as printed, pasted into a YAML list
    assert pasted == a["with"]


def test_weights_rounded_as_each_precision_stores_them():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 32, 3, 3)) * rng.uniform(0.1, 2, (64, 1, 1, 1))).astype(np.float32)
    db = {p: sqnr_db(w, simulate_weights(w, p)) for p in ("palettize4", "palettize6", "palettize8", "int4_block", "int8_weights", "fp16")}
    assert 18 < db["palettize4"] < db["palettize6"] < db["palettize8"] < db["fp16"]
    assert db["palettize8"] - db["palettize6"] > 9 and db["palettize6"] - db["palettize4"] > 9  # about 6 dB a bit
    assert db["int4_block"] < db["int8_weights"] < db["fp16"]
    assert np.array_equal(simulate_weights(w, "fp32"), w)
    assert len(np.unique(kmeans_1d(w, 16))) <= 16


# ---- a real failing gate, end to end ------------------------------------------------------------------------------

RECIPE = """
name: acne_gate
model: {name: acne_mobilenetv2}
targets:
  - {format: onnx, precision: fp32}
  - {format: tflite, precision: int8, tolerance: {min_cosine: 0.9999}}
calibration: {n: 16}
evaluation: {n: 32, bootstrap: 200}
benchmark: {enabled: false}
"""


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    """An export whose int8 artifact misses a tight cosine bound (0.9994 against 0.9999): exit 3, bundle kept."""
    tmp = tmp_path_factory.mktemp("gate")
    recipe = write_recipe(tmp / "gate.yaml", RECIPE)
    proc = run_cli("export", str(recipe), "--out", str(tmp / "out"))
    return tmp, recipe, proc


def test_export_prints_the_fix_first(failing):
    tmp, _, proc = failing
    assert proc.returncode == 3, proc.stderr[-3000:]
    err = proc.stderr[proc.stderr.index("skinkit: the gate failed"):]
    assert err.index("suggested recipe change") < err.index("skinkit: verification gate failed") < err.index("  - artifacts/")
    m = json.loads((tmp / "out" / "acne_gate" / "manifest.json").read_text())
    advice = m["artifacts"][1]["verification"]["advice"]
    assert advice["target"] == "tflite_int8" and advice["with_yaml"] in err and advice["replace_yaml"] in err
    assert advice["meets"] is True and all(c["passes"] for c in advice["criteria"])
    assert "predicted (culprit analysis, simulated on 16 images" in err
    keep = [alt for alt in [advice, *advice["alternatives"]] if alt["kind"] == "keep_float"]
    assert keep and keep[0]["with"]["keep_float"][0] == "features.1.block.0.0"  # MobileNetV2's first depthwise conv
    report = (tmp / "out" / "acne_gate" / "report.md").read_text()
    assert report.index("## Suggested fix") < report.index("## Input contract") and advice["with_yaml"] in report


def test_verify_puts_the_fix_on_top_in_junit_and_html(failing, tmp_path):
    tmp, recipe, _ = failing
    bundle = tmp_path / "acne_gate"
    shutil.copytree(tmp / "out" / "acne_gate", bundle)
    junit, html = tmp_path / "gate.xml", tmp_path / "gate.html"
    proc = run_cli("verify", str(bundle), "--recipe", str(recipe), "--junit", str(junit), "--html", str(html))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert proc.stdout.startswith("skinkit: the gate failed; suggested recipe change")
    summary_line = proc.stdout.index(f"{bundle}: integrity ok")
    m = json.loads((bundle / "manifest.json").read_text())
    advice = m["artifacts"][1]["verification"]["advice"]
    assert proc.stdout.index(advice["with_yaml"]) < summary_line

    (failure,) = [c.find("failure") for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert "suggested fix: " + advice["change"] in failure.get("message")
    assert failure.text.startswith("suggested recipe change:") and advice["with_yaml"] in failure.text
    assert failure.text.index(advice["with_yaml"]) < failure.text.index("cosine vs float: 0.99")

    page = html.read_text()
    top = page[:page.index("id=overview")]
    assert "Suggested fix" in top and advice["with_yaml"].replace("{", "{") in page and "<svg" in page
    from html import escape

    assert escape(advice["with_yaml"]) in top and escape(advice["replace_yaml"]) in top
    first = screenshot(html, tmp_path / "first.png", height=900)
    assert colour_pixels(first, FAIL) > 200 and colour_rows(first, FAIL).min() < 200, "the failed verdict and the fix first"
    assert colour_rows(first, MARGIN).size, "the forest plot is on the first screen too"


def test_the_fix_applied_is_a_recipe_export_accepts(failing, tmp_path):
    tmp, recipe, _ = failing
    m = json.loads((tmp / "out" / "acne_gate" / "manifest.json").read_text())
    data = yaml.safe_load(recipe.read_text())
    for a in m["artifacts"]:
        if a["verification"].get("advice"):
            data = advice_mod.apply(data, a["verification"]["advice"])
    fixed = tmp_path / "gate.yaml"
    fixed.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = run_cli("export", str(fixed), "--dry-run", "--json", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)
    advised = Target.model_validate(m["artifacts"][1]["verification"]["advice"]["with"])
    planned = parse_recipe(plan["recipe"]).targets
    assert [t.key for t in planned] == ["onnx_fp32", advised.key] and planned[1] == advised


@pytest.mark.slow
def test_the_fix_applied_passes_as_predicted(failing, tmp_path):
    """The advised change, exported for real: the gate passes, near the value the analysis predicted."""
    tmp, recipe, _ = failing
    m = json.loads((tmp / "out" / "acne_gate" / "manifest.json").read_text())
    advice = m["artifacts"][1]["verification"]["advice"]
    fixed = tmp_path / "gate.yaml"
    fixed.write_text(yaml.safe_dump(advice_mod.apply(yaml.safe_load(recipe.read_text()), advice), sort_keys=False))
    proc = run_cli("export", str(fixed), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fixed_m = json.loads((tmp_path / "out" / "acne_gate" / "manifest.json").read_text())
    cosine = next(c for c in fixed_m["artifacts"][1]["verification"]["criteria"] if c["name"] == "cosine vs float")
    predicted = advice["criteria"][0]["predicted"]
    assert cosine["passed"] and abs(np.log10(1 - cosine["value"]) - np.log10(1 - predicted)) < 0.5  # within ~5 dB
