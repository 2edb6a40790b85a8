"""Each artifact's outputs on the evaluation set, computed once: a slow runtime (Core AI's Linux CPU runtime) runs in
the background while the other targets convert, and with the conversion cache on, a re-export that changed only a
tolerance reads every artifact's outputs back instead of running it."""

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from tests.conftest import TINY_NET
from toolkit import progress
from toolkit.convert.cache import ConversionCache
from toolkit.pipeline import export
from toolkit.recipe import parse_recipe, read_yaml
from toolkit.verify.bundle import verify_bundle

RECIPE = """name: tiny
model: {{name: 'tiny.py:build', checkpoint: tiny.pt, spec_from: acne_mobilenetv2}}
targets: [{{format: onnx, precision: fp32}}, {{format: tflite, precision: fp32}}, {{format: coreai, precision: fp32}}]
evaluation: {{n: 24, bootstrap: 200, ground_truth: float}}
tolerances: {{fp32: {{max_metric_drop: {drop}}}}}
benchmark: {{warmup: 1, repeats: 2}}
"""


def _recipe(folder: Path, drop: float = 0.005) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.py").write_text(TINY_NET)
    if not (folder / "tiny.pt").exists():
        namespace: dict = {}
        exec(TINY_NET, namespace)
        torch.manual_seed(0)
        torch.save(namespace["build"]().state_dict(), folder / "tiny.pt")
    path = folder / "tiny.yaml"
    path.write_text(RECIPE.format(drop=drop))
    return path


def _export(path: Path, out: Path, cache):
    events = []
    with progress.reporting(events.append):
        result = export(parse_recipe(read_yaml(path), source=str(path)), recipe_path=path, out_dir=out, cache=cache)
    return result, events


def _plain(value):
    """A record as the manifest writes it (NaN as null)."""
    return json.loads(json.dumps(value).replace("NaN", "null"))


def _verification(result, suffix: str) -> dict:
    return next(a["verification"] for a in result.manifest["artifacts"] if a["path"].endswith(suffix))


def test_the_core_ai_target_converts_first_and_runs_while_the_others_convert(tmp_path):
    # setup
    path = _recipe(tmp_path)
    # execute
    result, events = _export(path, tmp_path / "out", False)
    # assert: converted first, verified from the run started then, the bundle in recipe order
    converted = [e.step for e in events if e.stage == "convert" and e.finished]
    assert converted == ["coreai_fp32", "onnx_fp32", "tflite_fp32"]
    assert [a["path"] for a in result.manifest["artifacts"]] == [
        "artifacts/tiny_fp32.onnx", "artifacts/tiny_fp32.tflite", "artifacts/tiny_fp32.aimodel"]
    core_ai = _verification(result, ".aimodel")
    assert core_ai["outputs"] == {"from": "started while the other targets converted"}
    assert core_ai["check"].startswith("Core AI runtime (coreai-core ")
    assert "outputs" not in _verification(result, ".onnx")
    # the same figures as verifying the bundle afresh, where every artifact runs then
    again = verify_bundle(result.bundle_dir)
    fresh = next(a for a in again["artifacts"] if a["path"].endswith(".aimodel"))
    assert _plain(fresh["numerics"]) == _plain(core_ai["numerics"]) and _plain(fresh["metrics"]) == _plain(core_ai["metrics"])
    assert result.passed


def test_a_reexport_that_changed_only_a_tolerance_reads_every_output_back(tmp_path):
    # setup: an export into a cache, then the fp32 drop bound changed
    cache = tmp_path / "cache"
    first, _ = _export(_recipe(tmp_path), tmp_path / "first", cache)
    path = _recipe(tmp_path, drop=0.02)
    # execute
    second, events = _export(path, tmp_path / "second", cache)
    # assert: no artifact ran on the evaluation set; every figure equal, the new bound applied
    for suffix in (".onnx", ".tflite", ".aimodel"):
        a, b = _verification(first, suffix), _verification(second, suffix)
        assert b["outputs"]["from"] == "the output cache" and len(b["outputs"]["key"]) == 64
        assert b["numerics"] == a["numerics"] and b["metrics"] == a["metrics"] and b["check"] == a["check"]
        assert b["tolerance"]["max_metric_drop"] == 0.02 and a["tolerance"]["max_metric_drop"] == 0.005
    verify_steps = [e for e in events if e.stage == "verify" and e.finished]
    assert len(verify_steps) == 3 and all(e.elapsed < 5 for e in verify_steps)
    kinds = [json.loads(p.read_text()).get("kind") for p in cache.glob("??/*/entry.json")]
    assert kinds.count("outputs") == 3 and kinds.count("cost") == 3 and kinds.count("synthetic data") == 1  # evaluation images


def test_outputs_are_kept_by_content_and_an_unreadable_entry_runs_the_artifact_again(tmp_path):
    # setup: an export into a cache; one kept output file removed (a writer killed half-way), other weights
    cache = tmp_path / "cache"
    path = _recipe(tmp_path)
    _export(path, tmp_path / "first", cache)
    entries = [p.parent for p in cache.glob("??/*/entry.json") if json.loads(p.read_text()).get("kind") == "outputs"]
    onnx = next(e for e in entries if json.loads((e / "entry.json").read_text())["artifact"].endswith(".onnx"))
    (onnx / "outputs.npz").unlink()
    # execute
    second, _ = _export(path, tmp_path / "second", cache)
    torch.save({k: v + 0.01 for k, v in torch.load(tmp_path / "tiny.pt").items()}, tmp_path / "tiny.pt")
    third, _ = _export(path, tmp_path / "third", cache)
    # assert: the onnx artifact ran again and its outputs were kept again, the others were read; other weights: all ran
    assert "outputs" not in _verification(second, ".onnx") and second.passed
    assert _verification(second, ".tflite")["outputs"]["from"] == "the output cache"
    got, record = ConversionCache(cache).get_outputs(onnx.name)
    assert list(got) == ["logits"] and got["logits"].shape == (24, 4) and record["artifact"] == "tiny_fp32.onnx"
    assert [_verification(third, s).get("outputs") for s in (".onnx", ".tflite", ".aimodel")] == [
        None, None, {"from": "started while the other targets converted"}]


def test_kept_outputs_round_trip_exactly(tmp_path):
    # setup
    store = ConversionCache(tmp_path / "c")
    outputs = {"b": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "a": np.array([[1, 2]], dtype=np.int32)}
    # execute
    kept = store.put_outputs("ab" * 32, outputs, {"key": "ab" * 32, "check": "x"})
    again = store.put_outputs("ab" * 32, outputs, {"key": "ab" * 32, "check": "y"})
    got, record = store.get_outputs("ab" * 32)
    # assert: names in order, bits equal, the first writer wins
    assert kept and not again and list(got) == ["b", "a"] and record["check"] == "x"
    assert all(np.array_equal(got[k], outputs[k]) and got[k].dtype == outputs[k].dtype for k in outputs)
    shutil.rmtree(tmp_path / "c")
    assert store.get_outputs("ab" * 32) is None
