"""One real export of the trained default model, checked the way an app and a CI job read it."""

import json
import sys

import pytest

from tests.conftest import run_cli, write_recipe
from toolkit.bundle.manifest import MANIFEST_SCHEMA_VERSION, Manifest
from toolkit.convert.base import file_sha256, tree_size


@pytest.fixture(scope="module")
def bundle(default_bundle):
    out, proc = default_bundle
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "acne_test", proc


def test_json_summary_on_clean_stdout(bundle):
    path, proc = bundle
    summary = json.loads(proc.stdout)  # nothing but JSON on stdout
    assert summary["bundle"] == str(path) and summary["passed"] is True
    assert [(a["format"], a["precision"]) for a in summary["artifacts"]] == [
        ("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "fp16"), ("coreml", "fp16")]


def test_manifest_is_valid_and_checksums_match(bundle):
    path, _ = bundle
    manifest = json.loads((path / "manifest.json").read_text())
    Manifest.model_validate(manifest)
    assert manifest["schema_version"] == MANIFEST_SCHEMA_VERSION
    assert manifest["verdict"] == {"passed": True, "complete": True, "artifact_count": 4, "passed_count": 4}
    assert manifest["failed_targets"] == []
    for a in manifest["artifacts"]:
        f = path / a["path"]
        assert f.exists()
        assert a["sha256"] == file_sha256(f) and a["size_bytes"] == tree_size(f)
        assert a["verification"]["passed"] is True
        assert a["verification"]["n_samples"] == 48
    assert manifest["labels"] == ["clear", "mild", "moderate", "severe"]
    assert (path / "labels.txt").read_text().split() == manifest["labels"]
    assert manifest["input"]["shape"] == [1, 224, 224, 3] and manifest["input"]["layout"] == "NHWC"
    assert manifest["model"]["training_card"]["held_out_float_metrics"]["accuracy"] > 0.9
    assert len(manifest["recipe"]["sha256"]) == 64


def test_verification_figures(bundle):
    path, _ = bundle
    arts = {(a["format"], a["precision"]): a for a in json.loads((path / "manifest.json").read_text())["artifacts"]}
    for key in [("onnx", "fp32"), ("tflite", "fp32")]:
        v = arts[key]["verification"]
        assert v["numerics"]["max_abs_error"] < 1e-3 and v["agreement"] == 1.0
    for key in [("tflite", "fp16"), ("coreml", "fp16")]:
        v = arts[key]["verification"]
        assert 1e-6 < v["numerics"]["max_abs_error"] < 0.25, "fp16 must differ from float, a little"
        assert v["agreement"] >= 0.98
    # Accuracy of the trained model on held-out data, and per skin-tone group.
    v = arts[("onnx", "fp32")]["verification"]
    acc = v["metrics"]["accuracy"]["float"]
    assert acc["value"] > 0.85 and acc["ci95"][0] < acc["value"] <= acc["ci95"][1] and acc["ci95"][0] > 0.7
    assert v["metrics"]["accuracy"]["drop"] == {"value": 0.0, "ci95": [0.0, 0.0]}  # fp32 decides as float does
    assert v["task_metric"]["name"] == "macro_f1" and v["task_metric"]["drop"] == 0.0
    assert sum(g["n"] for g in v["by_group"].values()) == 48
    tone = json.loads((path / "manifest.json").read_text())["evaluation"]["skin_tone"]
    assert {g: d["n"] for g, d in v["by_group"].items()} == tone["groups"] and len(tone["ita"]) == 48
    check = arts[("coreml", "fp16")]["verification"]["check"]
    assert check.startswith("coremltools MLModel.predict" if sys.platform == "darwin" else "MIL reference interpreter")


def test_artifact_structure(bundle):
    path, _ = bundle
    arts = {(a["format"], a["precision"]): a for a in json.loads((path / "manifest.json").read_text())["artifacts"]}
    assert arts[("tflite", "fp32")]["structure"]["transpose_count"] == 0, "NHWC CNN must have no transposes"
    assert arts[("tflite", "fp16")]["structure"]["tensor_dtypes"]["float16"] > 0
    assert arts[("tflite", "fp16")]["size_bytes"] < 0.6 * arts[("tflite", "fp32")]["size_bytes"]
    cm = arts[("coreml", "fp16")]["structure"]
    assert cm["inputs"] == [{"name": "image", "type": "imageType", "shape": [1, 3, 224, 224], "color_space": "RGB"}]
    assert cm["classifier"] is True and cm["output_transform"] == "softmax"
    assert json.loads(cm["metadata"]["skinkit.labels"]) == ["clear", "mild", "moderate", "severe"]
    assert cm["weight_dtypes"].get("FLOAT32", 0) == 0 and cm["weight_dtypes"]["FLOAT16"] > 0
    assert (path / "report.md").read_text().count("| pass |") == 4


def test_existing_bundle_is_not_overwritten(bundle, tmp_path):
    path, _ = bundle
    recipe = write_recipe(tmp_path / "r.yaml", "name: acne_test\nmodel: {name: acne_mobilenetv2}\ntargets: [{format: onnx}]\n")
    before = (path / "manifest.json").read_bytes()
    proc = run_cli("export", str(recipe), "--out", str(path.parent))
    assert proc.returncode == 1
    assert "bundle already exists" in proc.stderr and "--force" in proc.stderr
    assert (path / "manifest.json").read_bytes() == before


def test_inspect_reads_each_artifact_back(bundle):
    path, _ = bundle
    arts = path / "artifacts"
    proc = run_cli("inspect", str(arts / "acne_mobilenetv2_fp16.tflite"), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    d = json.loads(proc.stdout)
    assert d["signatures"] == {"classification": {"inputs": ["image"], "outputs": ["logits"]}}
    assert d["transpose_count"] == 0 and d["gpu_delegate"]["fully_delegable"] is True
    assert d["metadata"]["labels"] == ["clear", "mild", "moderate", "severe"] and d["metadata"]["precision"] == "fp16"
    assert d["sha256"] == file_sha256(arts / "acne_mobilenetv2_fp16.tflite")

    cm = json.loads(run_cli("inspect", str(arts / "acne_mobilenetv2_fp16.mlpackage"), "--json").stdout)
    assert cm["compute_units"]["neural_engine"] == "all ops eligible"
    assert cm["metadata"]["model"] == "acne_mobilenetv2" and cm["metadata"]["precision"] == "fp16"
    onnx = json.loads(run_cli("inspect", str(arts / "acne_mobilenetv2_fp32.onnx"), "--json").stdout)
    assert onnx["opset"] == 18 and onnx["inputs"][0]["shape"] == [1, 224, 224, 3]

    text = run_cli("inspect", str(arts / "acne_mobilenetv2_fp16.tflite")).stdout
    assert "signatures classification(image) -> logits" in text and "transposes 0" in text


def test_inspect_bad_files(tmp_path):
    proc = run_cli("inspect", str(tmp_path / "missing.tflite"))
    assert proc.returncode == 1 and "artifact not found" in proc.stderr
    (tmp_path / "broken.tflite").write_bytes(b"not a flatbuffer at all")
    proc = run_cli("inspect", str(tmp_path / "broken.tflite"))
    assert proc.returncode == 1 and "cannot be read as tflite" in proc.stderr
    (tmp_path / "model.pb").write_bytes(b"x")
    proc = run_cli("inspect", str(tmp_path / "model.pb"))
    assert proc.returncode == 1 and "not an artifact skinkit knows" in proc.stderr
