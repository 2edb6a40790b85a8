"""`skinkit verify BUNDLE`: integrity first, then the gate re-run on every artifact, for CI."""

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tests.browser import FAIL, PASS, colour_pixels, content_height, screenshot
from tests.conftest import run_cli
from toolkit.convert.base import file_sha256


@pytest.fixture
def bundle_copy(default_bundle, tmp_path):
    out, proc = default_bundle
    assert proc.returncode == 0, proc.stderr[-2000:]
    dst = tmp_path / "acne_test"
    shutil.copytree(out / "acne_test", dst)
    return dst


def test_reference_bundle_passes_with_junit(bundle_copy, tmp_path):
    junit, html = tmp_path / "report.xml", tmp_path / "report.html"
    before = {p: p.stat().st_mtime_ns for p in bundle_copy.rglob("*") if p.is_file()}
    proc = run_cli("verify", str(bundle_copy), "--n", "16", "--junit", str(junit), "--html", str(html), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    ev = summary["evaluation"]
    assert summary["passed"] and (ev["source"], ev["n"], ev["folder"], ev["bootstrap"], ev["noninferiority"]) == ("synthetic", 16, None, 1000, "ci")
    assert sum(ev["skin_tone"]["groups"].values()) == 16
    assert [a["path"] for a in summary["artifacts"]] == [e["path"] for e in summary["integrity"]]
    assert all(e["matches"] for e in summary["integrity"])
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    page = html.read_text()
    assert "PASSED: 4 of 4 artifacts pass the gate" in page and page.count("<details class='artifact'") == 4
    assert "Culprit layers" not in page and "Suggested fix" not in page  # only failing artifacts are diagnosed by default
    # the forest plot, the float model's confusion matrix; per artifact its histogram, group drops, confusion and changed predictions
    assert page.count("<svg") == 2 + 4 * 4 and "data:image/png" not in page
    assert "http" not in page.replace("http://www.w3.org/", "")  # self-contained: nothing fetched when opened
    pixels = screenshot(html, tmp_path / "page.png", height=4000)
    assert content_height(pixels) < 1800, "four passing artifacts: the overview, their sections collapsed"
    assert colour_pixels(pixels, PASS) > 300 and colour_pixels(pixels, FAIL) < 50
    assert {p: p.stat().st_mtime_ns for p in bundle_copy.rglob("*") if p.is_file()} == before, "verify never writes into a bundle"


def test_tampered_and_unlisted_files_are_named(bundle_copy):
    art = bundle_copy / "artifacts" / "acne_mobilenetv2_fp32.tflite"
    data = bytearray(art.read_bytes())
    data[-100] ^= 0xFF
    art.write_bytes(bytes(data))
    (bundle_copy / "artifacts" / "extra.onnx").write_bytes(b"x")
    proc = run_cli("verify", str(bundle_copy))
    assert proc.returncode == 1
    assert "artifacts/acne_mobilenetv2_fp32.tflite was modified" in proc.stderr
    assert "artifacts/extra.onnx is not listed in the manifest" in proc.stderr


def test_damaged_artifact_fails_the_gate_with_exit_3(bundle_copy, tmp_path):
    """A damaged weight recorded in the manifest passes integrity but not the gate."""
    import onnx
    from onnx import numpy_helper

    path = bundle_copy / "artifacts" / "acne_mobilenetv2_fp32.onnx"
    model = onnx.load(str(path))
    big = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    big.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(big) * 1.5, big.name))
    onnx.save(model, str(path))
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["path"].endswith("fp32.onnx"):
            a["sha256"] = file_sha256(path)
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))

    junit, html = tmp_path / "report.xml", tmp_path / "report.html"
    proc = run_cli("verify", str(bundle_copy), "--n", "16", "--junit", str(junit), "--html", str(html))
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "artifacts/acne_mobilenetv2_fp32.onnx: max abs error / output range vs float" in proc.stderr
    assert "FAIL  artifacts/acne_mobilenetv2_fp32.onnx" in proc.stdout
    assert "pass  artifacts/acne_mobilenetv2_fp32.tflite" in proc.stdout
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "1"
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["artifacts/acne_mobilenetv2_fp32.onnx"]

    # The culprit finder reads the weights back from the file and names the damaged layer first.
    from toolkit.load import load_model

    layers = {n: m for n, m in load_model("acne_mobilenetv2").module.named_modules() if hasattr(m, "weight") and m.weight is not None and m.weight.dim() > 1}
    damaged = [n for n, m in layers.items() if m.weight.numel() == int(np.prod(big.dims))]
    assert len(damaged) == 1
    assert f"culprits: keep in higher precision: {damaged[0]}\n" in proc.stdout
    page = html.read_text()
    assert page.count("<svg") >= 6 and "FAILED" in page and f">{damaged[0]}<" in page  # named on the SQNR plot
    assert "Suggested fix" not in page  # no precision above fp32, no layer to keep float in ONNX: no recipe change fixes it


def test_evaluation_folder_replaces_the_bundles_own(bundle_copy, tmp_path):
    data = tmp_path / "data"
    assert run_cli("data", "acne_mobilenetv2", "--out", str(data), "--n", "8", "--split", "val").returncode == 0
    proc = run_cli("verify", str(bundle_copy), "--data", str(data), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ev = json.loads(proc.stdout)["evaluation"]
    assert (ev["source"], ev["n"], ev["folder"]) == ("folder", 8, str(data))
    assert ev["skin_tone"]["method"].startswith("ITA° from skin mask")  # the folder's skin/ masks were used
    assert sum(ev["skin_tone"]["groups"].values()) == 8 and ev["skin_tone"]["versus_annotation"]["n"] == 8


def test_not_a_bundle(tmp_path):
    proc = run_cli("verify", str(tmp_path))
    assert proc.returncode == 1 and "is not a skinkit bundle (no manifest.json)" in proc.stderr
