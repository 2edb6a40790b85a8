"""Each stage's public ``run(context, input)`` on its own, on a tiny export: a registered model pruned
by magnitude, an evaluation set of 16 images, one ONNX fp32 target."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toolkit.benchmark import stage as benchmark
from toolkit.bundle import stage as bundle
from toolkit.compress import stage as compress
from toolkit.context import Context
from toolkit.convert import stage as convert
from toolkit.load import stage as load
from toolkit.recipe import parse_recipe
from toolkit.verify import evaluation
from toolkit.verify import stage as verify

N = 16
RECIPE = {
    "name": "stages_test",
    "model": {"name": "acne_mobilenetv2"},
    "compress": {"pruning": {"method": "magnitude", "sparsity": 0.3, "max_metric_drop": 1.0}},
    "targets": [{"format": "onnx", "precision": "fp32"}],
    "evaluation": {"n": N, "bootstrap": 100},
    "benchmark": {"warmup": 0, "repeats": 2, "threads": 1},
}


def context_for(tmp_path, **changes) -> Context:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    return Context(recipe=parse_recipe({**RECIPE, **changes}), recipe_path=tmp_path / "recipe.yaml", staging=staging,
                   log_path=tmp_path / "backend.log")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Every stage once, in order; each test asserts on one stage's record."""
    ctx = context_for(tmp_path_factory.mktemp("stages"))
    loaded = load.run(ctx, ctx.recipe.model)
    compressed = compress.run(ctx, loaded)
    evaluated = evaluation.run(ctx, compressed)
    converted = convert.run(ctx, compressed, evaluation_images=evaluated.data.inputs)
    verified = verify.run(ctx, converted, evaluation=evaluated)
    benchmarked = benchmark.run(ctx, verified)
    bundled = bundle.run(ctx, benchmarked)
    return {"context": ctx, "loaded": loaded, "compressed": compressed, "evaluation": evaluated, "converted": converted,
            "verified": verified, "benchmarked": benchmarked, "bundled": bundled}


def test_load_returns_the_registered_model_and_its_provenance(chain):
    loaded = chain["loaded"]
    assert loaded.spec.name == "acne_mobilenetv2" and not loaded.module.training
    assert loaded.provenance["source"] == "skinkit reference model" and len(loaded.provenance["checkpoint_sha256"]) == 64


def test_compress_prunes_a_copy_and_bakes_the_contract(chain):
    loaded, compressed = chain["loaded"], chain["compressed"]
    assert compressed.loaded is loaded and compressed.model is not loaded.module
    assert compressed.report["target_sparsity"] == 0.3
    assert all(p.count_nonzero() == p.numel() for n, p in loaded.module.named_parameters() if n.endswith("weight")
               and p.dim() > 1), "the loaded network was mutated"
    h, w = loaded.spec.input_size
    with torch.inference_mode():
        y = compressed.wrapped(torch.rand(2, h, w, 3) * 255)
    assert y.shape == (2, len(loaded.spec.labels))


def test_compress_without_pruning_keeps_the_network(tmp_path, chain):
    ctx = context_for(tmp_path, compress={})
    compressed = compress.run(ctx, chain["loaded"])
    assert compressed.model is chain["loaded"].module and compressed.report is None


def test_evaluation_set_is_built_once_with_the_float_reference(chain):
    ev, spec = chain["evaluation"], chain["loaded"].spec
    assert len(ev.data) == N and ev.x.shape == (N, *spec.input_size, 3) and ev.x.dtype == np.float32
    assert ev.reference["logits"].shape == (N, len(spec.labels)) and len(ev.tone.groups) == N


def test_convert_writes_one_onnx_fp32_artifact(chain):
    ctx, converted = chain["context"], chain["converted"]
    (a,) = converted.artifacts
    assert (a.format, a.precision) == ("onnx", "fp32") and a.path.parent == ctx.staging / "artifacts" and a.path.is_file()
    assert converted.calibration is None and converted.compressed is chain["compressed"]
    assert convert.target_of(ctx.recipe, chain["loaded"].spec, a) == ctx.recipe.targets[0]


def test_convert_refuses_automatic_mixed_precision_without_a_search(tmp_path, chain):
    ctx = context_for(tmp_path, targets=[{"format": "tflite", "precision": "int8", "keep_float": "auto"}])
    with pytest.raises(ValueError, match="need a mixed-precision search"):
        convert.run(ctx, chain["compressed"], evaluation_images=chain["evaluation"].data.inputs)


def test_convert_searches_layers_to_keep_float_with_the_search_verify_builds(tmp_path, chain):
    ctx = context_for(tmp_path, targets=[{"format": "tflite", "precision": "int8", "keep_float": "auto", "keep_float_max": 2}],
                      calibration={"n": 8})
    compressed, evaluated = chain["compressed"], chain["evaluation"]
    search = verify.mixed_precision_search(ctx, compressed, evaluated)
    converted = convert.run(ctx, compressed, evaluation_images=evaluated.data.inputs, mixed_precision=search)
    (a,) = converted.artifacts
    result = a.details["mixed_precision"]
    assert result["probes"][0]["k"] == 0 and result["searched_up_to"] <= 2 and a.path.is_file()
    assert converted.calibration["disjoint_from_evaluation"] is True
    assert not list(ctx.staging.glob(".mixed-*")), "probe artifacts are removed"


def test_verify_gates_the_artifact_and_compares_with_the_original_in_its_own_record(chain):
    verified, (a,) = chain["verified"], chain["converted"].artifacts
    res = verified.results[a.filename]
    assert res["passed"] is True and res["criteria"] and a.filename in verified.runners
    assert verified.against_original["metric"] == chain["loaded"].spec.metric
    assert verified.against_original["criteria"] and all("vs original float" in c["name"] for c in verified.against_original["criteria"])
    assert "against_original" not in chain["compressed"].report, "verify must not rewrite compression's report"
    assert sum(verified.skin_tone["groups"].values()) == N


def test_benchmark_times_each_artifact_against_torch(tmp_path, chain):
    b, (a,) = chain["benchmarked"], chain["converted"].artifacts
    assert b.reference["p50_ms"] > 0 and b.artifacts[a.filename]["ratio_to_torch_fp32"] > 0
    off = benchmark.run(context_for(tmp_path, benchmark={"enabled": False}), chain["verified"])
    assert (off.artifacts, off.reference) == ({}, None)


def test_bundle_writes_manifest_report_and_labels(chain):
    ctx, bundled = chain["context"], chain["bundled"]
    m = json.loads((ctx.staging / "manifest.json").read_text())
    assert m == json.loads(json.dumps(bundled.manifest)) and bundled.path == ctx.staging
    assert m["verdict"] == {"passed": True, "complete": True, "artifact_count": 1, "passed_count": 1, "compression_passed": True}
    assert m["compression"]["target_sparsity"] == 0.3 and m["compression"]["against_original"]["passed"] is True
    assert m["evaluation"]["n"] == N and (ctx.staging / "report.md").is_file() and (ctx.staging / "labels.txt").is_file()
