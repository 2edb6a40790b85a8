"""One export's targets converted by two processes: a second process takes the costliest format group (TFLite's
variants, which share one float lowering) into the conversion cache — a temporary one when the export has none —
while this process converts the others; the bundle is the one a single process makes."""

import json

import pytest

from tests.test_outputs import _export, _recipe
from toolkit.convert.stage import second_process_share
from toolkit.recipe import Target


def _targets(*pairs):
    return [Target(format=f, precision=p) for f, p in pairs]


def test_the_second_process_takes_the_costliest_group_and_leaves_work_here():
    tflite = _targets(("tflite", "fp32"), ("tflite", "int8"))
    assert second_process_share([*_targets(("onnx", "fp32"), ("coreml", "fp16")), *tflite], others=0) == tflite
    assert second_process_share(_targets(("onnx", "fp32"), ("coreml", "fp16")), others=0) == _targets(("coreml", "fp16"))
    assert second_process_share(tflite, others=0) == []  # one group: nothing would be left to do here meanwhile
    assert second_process_share(tflite, others=1) == tflite  # a Core AI target converts here meanwhile
    assert second_process_share([], others=3) == []


@pytest.mark.parametrize("cache", [False, "dir"])
def test_two_processes_make_the_bundle_one_process_makes(tmp_path, monkeypatch, cache):
    # setup: the same recipe (ONNX, TFLite, Core AI) exported by one process and by two
    path = _recipe(tmp_path)
    root = str(tmp_path / "cache") if cache == "dir" else False
    monkeypatch.setenv("SKINKIT_CONVERT_WORKERS", "1")
    one, _ = _export(path, tmp_path / "one", False)
    monkeypatch.setenv("SKINKIT_CONVERT_WORKERS", "2")
    # execute
    two, events = _export(path, tmp_path / "two", root)
    # assert: the TFLite target came from the second process (converted last here, after the others), bytes equal
    finished = [(e.step, e.message) for e in events if e.stage == "convert" and e.finished and e.step != "calibration images"]
    assert [step for step, _ in finished] == ["coreai_fp32", "onnx_fp32", "tflite_fp32"]
    assert finished[-1][1] == "tiny_fp32.tflite (converted by a second process meanwhile)"
    # (a Core AI asset's metadata.json carries its creation time: its program is compared)
    assert [a["sha256"] for a in two.manifest["artifacts"][:2]] == [a["sha256"] for a in one.manifest["artifacts"][:2]]
    program = "artifacts/tiny_fp32.aimodel/main.mlirb"
    assert (two.bundle_dir / program).read_bytes() == (one.bundle_dir / program).read_bytes()
    tflite = next(a for a in two.manifest["artifacts"] if a["path"].endswith(".tflite"))
    assert tflite["conversion_seconds"] > 0 and two.passed
    if cache == "dir":  # the user's cache holds what the second process converted
        kinds = [json.loads(p.read_text()).get("format") for p in (tmp_path / "cache").glob("??/*/entry.json")]
        assert "tflite" in kinds


def test_a_second_process_that_fails_leaves_its_targets_to_this_one(tmp_path, monkeypatch):
    # setup: the second process cannot start Python's interpreter the export names (it exits at once)
    path = _recipe(tmp_path)
    monkeypatch.setenv("SKINKIT_CONVERT_WORKERS", "2")
    monkeypatch.setattr("sys.executable", "/bin/false")
    # execute
    result, events = _export(path, tmp_path / "out", False)
    # assert: converted here after all, the bundle complete and passing
    finished = {e.step: e.message for e in events if e.stage == "convert" and e.finished}
    assert finished["tflite_fp32"] == "tiny_fp32.tflite" and result.passed and len(result.manifest["artifacts"]) == 3


def test_targets_already_cached_are_not_waited_for(tmp_path, monkeypatch):
    # setup: an export into a cache by two processes, then the same recipe again
    path = _recipe(tmp_path)
    monkeypatch.setenv("SKINKIT_CONVERT_WORKERS", "2")
    _export(path, tmp_path / "first", tmp_path / "cache")
    # execute
    second, events = _export(path, tmp_path / "second", tmp_path / "cache")
    # assert: every target from the cache, none from the second process (which found nothing to do)
    finished = {e.step: e.message for e in events if e.stage == "convert" and e.finished and e.step != "calibration images"}
    assert finished == {"coreai_fp32": "tiny_fp32.aimodel (from the conversion cache)",
                        "onnx_fp32": "tiny_fp32.onnx (from the conversion cache)",
                        "tflite_fp32": "tiny_fp32.tflite (from the conversion cache)"}
    assert second.passed


def test_two_processes_only_with_two_cores_and_the_memory_for_them(monkeypatch):
    from toolkit import pipeline

    real = pipeline.available_memory_gb
    assert 0 < real() < 4096  # this Linux machine says (GB)
    monkeypatch.delenv("SKINKIT_CONVERT_WORKERS")
    monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(pipeline, "available_memory_gb", lambda: 12.0)
    assert pipeline.conversion_workers() == 2
    monkeypatch.setattr(pipeline, "available_memory_gb", lambda: 3.0)  # a small CI runner: one process
    assert pipeline.conversion_workers() == 1
    monkeypatch.setattr(pipeline, "available_memory_gb", lambda: None)  # the system does not say
    assert pipeline.conversion_workers() == 2
    monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda pid: {0})
    assert pipeline.conversion_workers() == 1
    for value, want in (("1", 1), ("2", 2), ("auto", 1), ("many", 1)):
        monkeypatch.setenv("SKINKIT_CONVERT_WORKERS", value)
        assert pipeline.conversion_workers() == want
