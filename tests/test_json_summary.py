"""--json on every command, failures included; the export summary's per-artifact headline metric, CI, margin and
worst skin-tone group."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli, write_recipe
from toolkit.cli import app


def _commands() -> list[str]:
    import typer.main

    return sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("command", _commands())
def test_every_command_accepts_json(command):
    # setup / execute: the command's own options, as typer builds them
    import typer.main

    options = {o for p in typer.main.get_command(app).commands[command].params for o in p.opts}
    # assert
    assert "--json" in options


@pytest.mark.parametrize(("args", "kind", "cause"), [
    (("data", "no_such_model", "--out", "{tmp}/d", "--json"), "BadInputError", "unknown model 'no_such_model'"),
    (("keygen", "--out", "{tmp}/file.txt", "--json"), "BadInputError", "file.txt"),
    (("describe", "{tmp}/missing.yaml", "--json"), "RecipeError", "recipe not found"),
])
def test_failures_are_json_on_stdout(tmp_path, args, kind, cause):
    # setup: a file where a folder is expected
    (tmp_path / "file.txt").write_text("x")
    # execute
    proc = run_cli(*(a.format(tmp=tmp_path) for a in args))
    # assert: one object with the cause, the fix, the exit code and the kind; one line on stderr
    out = json.loads(proc.stdout)
    assert (out["kind"], out["exit_code"], proc.returncode) == (kind, 1, 1)
    assert cause in out["error"] and out["fix"]
    assert proc.stderr.strip().splitlines() == [f"skinkit: error: {out['error']} — fix: {out['fix']}"]


@pytest.fixture(scope="module")
def gate_failure(tmp_path_factory):
    """An export whose artifact fails its gate (an impossible max_abs): the bundle is written, exit 3."""
    tmp = tmp_path_factory.mktemp("gate")
    r = write_recipe(tmp / "r.yaml", "name: strict\nmodel: {name: skin_segmenter}\ntargets: [{format: tflite, precision: fp16}]\n"
                                     "evaluation: {n: 12, bootstrap: 100, min_group_size: 3}\nbenchmark: {enabled: false}\n"
                                     "tolerances: {fp16: {max_abs: 1.0e-9}}\n")
    proc = run_cli("export", str(r), "--out", str(tmp / "out"), "--json")
    return proc, tmp / "out" / "strict"


def test_gate_failure_json_carries_the_summary_and_the_error(gate_failure):
    # setup / execute
    proc, bundle = gate_failure
    out = json.loads(proc.stdout)
    # assert: the error fields, the failures, and every artifact's measurement
    assert proc.returncode == 3 and out["exit_code"] == 3 and out["kind"] == "VerificationFailed"
    assert out["passed"] is False and out["bundle"] == str(bundle)
    assert any("max abs error vs float" in f for f in out["failures"])
    assert out["error"].startswith("verification gate failed for 1 criteria") and out["fix"].startswith("see report.md")
    (a,) = out["artifacts"]
    assert (a["path"], a["format"], a["precision"], a["passed"]) == ("artifacts/skin_segmenter_fp16.tflite", "tflite", "fp16", False)


def test_summary_metric_margin_and_worst_group_follow_the_manifest(gate_failure):
    # setup: the manifest's own record of the artifact
    proc, bundle = gate_failure
    (a,) = json.loads(proc.stdout)["artifacts"]
    v = json.loads((bundle / "manifest.json").read_text())["artifacts"][0]["verification"]
    tm = v["task_metric"]
    crit = next(c for c in v["criteria"] if c["name"].startswith(f"{tm['name']} drop vs float ("))
    groups = {g: d["metrics"][tm["name"]]["drop"]["value"] for g, d in v["by_group"].items() if g != "unknown" and d["n"] >= 3}
    worst = max(groups, key=groups.get)
    # execute / assert: the summary states the same figures
    m = a["metric"]
    assert (m["name"], m["float_value"], m["value"], m["drop"], m["drop_ci95"]) == (
        tm["name"], tm["float"], tm["artifact"], tm["drop"], tm["drop_ci95"])
    assert m["name"] == "miou" and m["higher_is_better"] is True
    assert (m["bound"], m["judged_on"], m["passed"]) == (crit["bound"], "upper 95 % CI", crit["passed"])
    assert m["margin"] == pytest.approx(crit["bound"] - crit["value"])
    assert a["worst_group"] == {"name": worst, "n": v["by_group"][worst]["n"], "drop": groups[worst], "gated": True}
