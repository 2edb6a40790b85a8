"""Bad input gets exit 1 and one clear line; conversion failures exit 2; a failed gate exits 3 with
the report kept. Nothing half-written is left behind."""

import json

import pytest

from tests.conftest import run_cli, write_recipe


def _one_line_error(proc, *needles):
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("skinkit: error:")]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_recipe(tmp_path):
    proc = run_cli("export", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 1
    _one_line_error(proc, "recipe not found", "fix:")


def test_unknown_model(tmp_path):
    r = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: acne_vgg}\ntargets: [{format: onnx}]\n")
    proc = run_cli("export", str(r), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    _one_line_error(proc, "unknown model 'acne_vgg'", "acne_mobilenetv2")
    assert list((tmp_path / "out").iterdir()) == [], "no partial bundle may remain"


def test_missing_checkpoint(tmp_path):
    r = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: acne_mobilenetv2, checkpoint: gone.safetensors}\ntargets: [{format: onnx}]\n")
    proc = run_cli("export", str(r), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    _one_line_error(proc, "checkpoint not found", str(tmp_path / "gone.safetensors"))


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    r = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: skin_segmenter}\ntargets: [{format: onnx}]\n"
                                         "evaluation: {source: folder, folder: empty}\n")
    proc = run_cli("export", str(r), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    _one_line_error(proc, f"evaluation folder {tmp_path / 'empty'} is empty", "labels.csv")
    assert list((tmp_path / "out").iterdir()) == []


def test_unknown_recipe_key(tmp_path):
    r = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: skin_segmenter}\ntargets: [{format: onnx}]\nbenchmrk: {}\n")
    proc = run_cli("export", str(r))
    assert proc.returncode == 1
    _one_line_error(proc, str(r), "unknown key 'benchmrk'")


def test_conversion_failure_names_target_and_leaves_nothing(tmp_path):
    (tmp_path / "bad.py").write_text(
        "import torch\nfrom toolkit.models.segmenter import SkinSegmenter\n\n"
        "class Bad(SkinSegmenter):\n"
        "    def forward(self, x):\n"
        "        if float(x.mean()) > 0:  # data-dependent Python control flow\n"
        "            return super().forward(x)\n"
        "        return torch.zeros(1, 2, 224, 224)\n\n"
        "def build():\n    return Bad(base=16)\n")
    r = write_recipe(tmp_path / "r.yaml", "name: bad\nmodel: {name: 'bad.py:build', spec_from: skin_segmenter, "
                                         f"checkpoint: {tmp_path / 'w.safetensors'}}}\ntargets: [{{format: tflite}}]\n")
    from safetensors.torch import save_file

    from toolkit.load import load_model

    save_file({k: v.contiguous() for k, v in load_model("skin_segmenter").module.state_dict().items()}, str(tmp_path / "w.safetensors"))
    proc = run_cli("export", str(r), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    _one_line_error(proc, "tflite conversion of bad failed", "fix:")
    assert list((tmp_path / "out").iterdir()) == []


def test_gate_failure_exits_3_and_keeps_report(tmp_path):
    r = write_recipe(tmp_path / "r.yaml", "name: strict\nmodel: {name: skin_segmenter}\n"
                                         "targets: [{format: tflite, precision: fp16}]\n"
                                         "evaluation: {n: 8}\nbenchmark: {enabled: false}\n"
                                         "tolerances: {fp16: {max_abs: 1.0e-9}}\n")
    proc = run_cli("export", str(r), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 3, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["passed"] is False
    assert any("max abs error vs float" in f and "required <= 1e-09" in f for f in summary["failures"])
    manifest = json.loads((tmp_path / "out" / "strict" / "manifest.json").read_text())
    assert manifest["verdict"]["passed"] is False
    assert "**FAIL**" in (tmp_path / "out" / "strict" / "report.md").read_text()


def test_dry_run_prints_resolved_recipe():
    proc = run_cli("export", "export_recipes/acne_mobilenetv2.yaml", "--dry-run", "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["recipe"]["evaluation"] == {"source": "synthetic", "n": 200, "seed": 0, "split": "test", "folder": None,
                                                     "bootstrap": 1000, "noninferiority": "ci", "min_group_size": 10,
                                                     "culprits": "failed", "culprit_images": 16,
                                                     "ground_truth": "labels"}


def test_dry_run_of_an_assessment_plans_every_component_and_checks_every_link(tmp_path):
    proc = run_cli("export", "export_recipes/selfie_assessment.yaml", "--dry-run", "--json", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)
    assert plan["bundle"] == str(tmp_path / "selfie_assessment") and plan["bundle_exists"] is False
    for name, component in plan["components"].items():
        assert component["bundle"] == str(tmp_path / "selfie_assessment" / "components" / name)
        assert component["artifacts"] and all(a["criteria"] for a in component["artifacts"]), name
    assert plan["device_chains"] and plan["recipe"]["name"] == "selfie_assessment"
    assert not list(tmp_path.iterdir())  # nothing written
    text = run_cli("export", "export_recipes/selfie_assessment.yaml", "--dry-run", "--out", str(tmp_path))
    assert text.returncode == 0 and text.stdout == ""
    assert text.stderr.startswith("dry run: export_recipes/selfie_assessment.yaml resolves (an assessment of "
                                  f"{len(plan['components'])} components, every link checked); nothing converted or written")


@pytest.mark.parametrize("args", [("export", "missing.yaml"), ("verify", "no/such/bundle"), ("bench", "no/such/bundle")])
def test_json_errors_go_to_stdout_as_json_too(args):
    proc = run_cli(*args, "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    err = json.loads(proc.stdout)
    assert set(err) == {"error", "fix", "exit_code", "kind"} and err["exit_code"] == 1
    assert proc.stderr.strip() == f"skinkit: error: {err['error']} — fix: {err['fix']}"


def test_help_does_not_import_heavy_frameworks():
    import subprocess
    import sys

    code = ("import sys; from toolkit.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'coremltools') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_is_lazy_and_complete():
    import subprocess
    import sys

    code = ("import sys, toolkit; print(sorted(m for m in ('torch', 'tensorflow', 'coremltools') if m in sys.modules)); "
            "print(all(callable(getattr(toolkit, n)) for n in toolkit.__all__ if n != '__version__'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "True"]
    import toolkit
    from toolkit.verify.bundle import verify_bundle

    assert toolkit.verify_bundle is verify_bundle
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        toolkit.nope
