"""A target that fails to convert no longer sinks the others: they are verified and bundled, the manifest
marks the bundle incomplete, and `export`, `verify` and `bench` exit 4 (3 when the gate fails too).
`--strict` keeps all or nothing (exit 2, nothing written), as does a recipe none of whose targets convert.

The failing target is Core ML: its torch frontend has no `heaviside`, which ONNX and LiteRT lower."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import run_cli, write_recipe

STEP_NET = '''
import torch
from torch import nn


class Gate(nn.Module):
    def forward(self, x):
        return x * torch.heaviside(x, torch.tensor(0.5))  # Core ML's torch frontend has no heaviside


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        self.gate = Gate()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.gate(self.conv(x)).mean((2, 3)))


def build():
    return Net()
'''


def _recipe(tmp: Path, targets: str, *, name: str = "partial", extra: str = "") -> Path:
    (tmp / "step.py").write_text(STEP_NET)
    if not (tmp / "step.pt").exists():
        import importlib.util

        spec = importlib.util.spec_from_file_location("step", tmp / "step.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        torch.manual_seed(0)
        torch.save(mod.build().state_dict(), tmp / "step.pt")
    return write_recipe(tmp / f"{name}.yaml", f"""
name: {name}
model: {{name: 'step.py:build', checkpoint: step.pt, spec_from: acne_mobilenetv2}}
targets: {targets}
evaluation: {{n: 8}}
benchmark: {{enabled: false}}
{extra}""")


ONNX_AND_COREML = "[{format: onnx, precision: fp32}, {format: coreml, precision: fp16}]"
HEAVISIDE = "coreml conversion of step failed: NotImplementedError: PyTorch convert function for op 'heaviside' not implemented."


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    """One export whose ONNX target converts and whose Core ML target does not."""
    tmp = tmp_path_factory.mktemp("partial")
    proc = run_cli("export", str(_recipe(tmp, ONNX_AND_COREML)), "--out", str(tmp / "out"), "--json")
    return tmp / "out" / "partial", proc


def test_partial_bundle_is_written_marked_incomplete_and_exits_4(partial):
    bundle, proc = partial
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # One summary line, then one line per failed target: its cause and its fix.
    assert "skinkit: bundle incomplete: 1 of 2 targets did not convert (coreml_fp16)" in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("  - ")]
    assert len(lines) == 1
    assert lines[0].startswith(f"  - coreml_fp16 not converted: {HEAVISIDE}")
    assert "[unsupported op: heaviside; in model.gate (Gate) calls heaviside]" in lines[0]
    assert "— fix: replace heaviside with supported primitives in model.gate (Gate), or drop the coreml target" in lines[0]
    summary = json.loads(proc.stdout)  # the machine summary of the bundle written, as for a complete one
    assert (summary["passed"], summary["complete"]) == (False, False)
    assert [(a["path"], a["passed"]) for a in summary["artifacts"]] == [("artifacts/step_fp32.onnx", True)]
    assert [f["key"] for f in summary["failed_targets"]] == ["coreml_fp16"]
    # The converted target is in the bundle; nothing of the failed one is.
    assert sorted(p.name for p in (bundle / "artifacts").iterdir()) == ["step_fp32.onnx"]
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")], "no staging folder may remain"


def test_manifest_lists_the_failed_target_and_says_incomplete(partial):
    from toolkit.bundle.manifest import MANIFEST_SCHEMA_VERSION

    bundle, _ = partial
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["schema_version"] == MANIFEST_SCHEMA_VERSION == "1.4"
    assert m["verdict"] == {"passed": False, "complete": False, "artifact_count": 1, "passed_count": 1}
    assert [a["path"] for a in m["artifacts"]] == ["artifacts/step_fp32.onnx"]
    assert m["artifacts"][0]["verification"]["passed"]
    [failed] = m["failed_targets"]
    assert failed["error"].startswith(HEAVISIDE)
    assert {k: v for k, v in failed.items() if k != "error"} == {
        "key": "coreml_fp16", "format": "coreml", "precision": "fp16", "op": "heaviside", "module": "model.gate (Gate)",
        "fix": "replace heaviside with supported primitives in model.gate (Gate), or drop the coreml target from the recipe"}


def test_report_shows_the_failed_target_with_its_error(partial):
    bundle, _ = partial
    report = (bundle / "report.md").read_text()
    assert ("**Verdict: INCOMPLETE** — 1 of 2 recipe targets converted (**incomplete bundle**: coreml_fp16 did not); "
            "1 of 1 artifacts passed verification") in report
    assert "## Targets not converted (incomplete bundle)" in report
    row = next(ln for ln in report.splitlines() if ln.startswith("| `coreml_fp16` |"))
    assert row.startswith("| `coreml_fp16` | coreml | fp16 | heaviside | model.gate (Gate) | " + HEAVISIDE)
    assert "replace heaviside with supported primitives" in row


def test_verify_checks_what_is_there_and_reports_the_bundle_incomplete(partial, tmp_path):
    bundle, _ = partial
    proc = run_cli("verify", str(bundle), "--junit", str(tmp_path / "j.xml"), "--html", str(tmp_path / "v.html"))
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "  pass  artifacts/step_fp32.onnx" in proc.stdout and "  NOT CONVERTED  coreml_fp16" in proc.stdout
    assert "skinkit: bundle incomplete: 1 recipe target(s) did not convert at export (the artifacts present pass)" in proc.stderr
    assert f"  - coreml_fp16 not converted: {HEAVISIDE}" in proc.stderr
    junit = (tmp_path / "j.xml").read_text()
    assert 'tests="2" failures="1"' in junit and 'name="coreml_fp16 (not converted)"><failure message="not converted">' in junit
    html = (tmp_path / "v.html").read_text()
    assert "incomplete bundle: 1 recipe target(s) did not convert" in html and "<td>coreml_fp16</td>" in html

    proc = run_cli("verify", str(bundle), "--json")
    assert proc.returncode == 4
    summary = json.loads(proc.stdout)
    assert (summary["passed"], summary["gate_passed"], summary["complete"]) == (False, True, False)
    assert [f["key"] for f in summary["failed_targets"]] == ["coreml_fp16"]


def test_a_manifest_from_before_schema_1_1_reads_as_complete(partial):
    from toolkit.bundle.report import render
    from toolkit.verify.bundle import not_converted

    bundle, _ = partial
    m = json.loads((bundle / "manifest.json").read_text())
    m.update(schema_version="1.0", verdict={"passed": True, "artifact_count": 1, "passed_count": 1})
    del m["failed_targets"]
    assert not_converted(m) == []
    report = render(m)
    assert "**Verdict: PASSED** — 1 of 1 artifacts passed" in report and "not converted" not in report


def test_strict_keeps_all_or_nothing(tmp_path):
    from toolkit.errors import ConversionError
    from toolkit.pipeline import export
    from toolkit.recipe import load_recipe

    path = _recipe(tmp_path, ONNX_AND_COREML)
    with pytest.raises(ConversionError, match="coreml conversion of step failed") as e:
        export(load_recipe(path), recipe_path=path, out_dir=tmp_path / "out", strict=True)
    assert e.value.exit_code == 2 and (e.value.op, e.value.module) == ("heaviside", "model.gate (Gate)")
    assert list((tmp_path / "out").iterdir()) == [], "nothing may be written"


def test_strict_on_the_command_line_exits_2(tmp_path):
    proc = run_cli("export", str(_recipe(tmp_path, ONNX_AND_COREML)), "--out", str(tmp_path / "out"), "--strict")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("skinkit: error:")]
    assert len(errors) == 1 and HEAVISIDE in errors[0] and "backend log:" in errors[0]
    assert list((tmp_path / "out").iterdir()) == []


def test_every_target_failing_exits_2_and_writes_nothing(tmp_path):
    recipe = _recipe(tmp_path, "[{format: coreml, precision: fp16}, {format: coreml, precision: fp32}]")
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("skinkit: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "no target converted (2 failed): coreml_fp16: " + HEAVISIDE in errors[0] and "; coreml_fp32: " in errors[0]
    assert list((tmp_path / "out").iterdir()) == []


def test_gate_failure_beside_a_failed_conversion_exits_3_and_names_both(tmp_path):
    recipe = _recipe(tmp_path, "[{format: tflite, precision: fp16}, {format: coreml, precision: fp16}]",
                     extra="tolerances: {fp16: {max_abs: 1.0e-9}}\n")
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "1 target(s) did not convert either (coreml_fp16)" in proc.stderr
    assert any("max abs error vs float" in ln for ln in proc.stderr.splitlines() if ln.startswith("  - "))
    assert f"  - coreml_fp16 not converted: {HEAVISIDE}" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["passed"] is False and summary["not_converted"][0].startswith("coreml_fp16 not converted")
    m = json.loads((tmp_path / "out" / "partial" / "manifest.json").read_text())
    assert m["verdict"]["complete"] is False and m["verdict"]["passed_count"] == 0
    assert "**Verdict: FAILED**" in (tmp_path / "out" / "partial" / "report.md").read_text()


class _Head(nn.Module):
    """A PReLU with one slope per feature after a Linear: Core ML's prelu takes per-channel slopes only at rank 4."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.act = nn.PReLU(num_parameters=4)
        with torch.no_grad():
            self.act.weight.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))

    def forward(self, x):
        return self.act(self.fc(x))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU())
        self.head = _Head()

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class _Contract(nn.Module):
    """Stands for the device contract: the user's network as its ``model``."""

    def __init__(self):
        super().__init__()
        self.model = _Net()

    def forward(self, x):
        return self.model(x * 2.0)


def test_describe_failure_names_the_op_and_module_coremltools_failed_on():
    import coremltools as ct

    from toolkit.convert.base import describe_failure

    # setup: coremltools' own error names neither the op nor the module
    module, x = _Contract().eval(), torch.rand(1, 3, 16, 16)
    traced = torch.jit.trace(nn.Sequential(module, nn.Softmax(-1)).eval(), (x,))  # wrapped as a Core ML classifier is
    with pytest.raises(ValueError, match="rank 3 or rank 5 input is only supported when all the values of alpha are same") as e:
        ct.convert(traced, inputs=[ct.TensorType(name="image", shape=x.shape)], convert_to="mlprogram")
    assert "head" not in str(e.value)  # nor where: that is what describe_failure adds
    # execute
    err = describe_failure(e.value, "coreml", "net", module=module, sample=x)
    # assert: the node coremltools was converting, found in the module as the user wrote it
    assert (err.op, err.module) == ("prelu", "model.head.act (PReLU)")
    assert err.cause.startswith("coreml conversion of net failed: ValueError: prelu op: rank 3 or rank 5 input")
    assert err.cause.endswith("[op: prelu; in model.head.act (PReLU) calls prelu]")
    assert "static" not in err.fix and "control flow" not in err.fix
    assert err.fix == ("coreml cannot convert prelu as used in model.head.act (PReLU) (see the cause): express it there "
                       "with other ops, or drop the coreml target from the recipe")


def test_describe_failure_without_a_known_op_does_not_guess_the_cause():
    from toolkit.convert.base import describe_failure

    err = describe_failure(RuntimeError("converter gave up"), "coreml", "net")
    assert (err.op, err.module) == (None, None)
    assert err.cause == "coreml conversion of net failed: RuntimeError: converter gave up"
    assert "static" not in err.fix and "backend log" in err.fix and "drop the coreml target" in err.fix


def test_bench_times_what_is_there_and_reports_the_bundle_incomplete(partial):
    bundle, _ = partial
    proc = run_cli("bench", str(bundle), "--threads", "1", "--warmup", "0", "--repeats", "2", "--device", "tensor_g3_cpu", "--json")
    assert proc.returncode == 4, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert [a["artifact"] for a in result["artifacts"] if a["in_bundle"]] == ["artifacts/step_fp32.onnx"]
    assert "p50_ms" in result["artifacts"][0]["host"]["1"]
    assert [f["key"] for f in result["failed_targets"]] == ["coreml_fp16"]
    assert "skinkit: bundle incomplete: 1 recipe target(s) did not convert at export" in proc.stderr
