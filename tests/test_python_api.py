"""toolkit.export on a plain torch.nn.Module: the bring-your-own recipe route, built in memory, with a typed result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import toolkit
from tests.conftest import TINY_NET, run_cli
from toolkit.errors import BadInputError
from toolkit.load import load_model
from toolkit.pipeline import ArtifactResult, ExportResult

LABELS = ("clear", "mild", "moderate", "severe")
IMAGENET = {"pixel_range": "0-1", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _tiny():
    namespace: dict = {}
    exec(TINY_NET, namespace)
    torch.manual_seed(0)
    return namespace["build"]()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The trained default network handed over as a module, as a user's own would be."""
    tmp = tmp_path_factory.mktemp("api")
    module = load_model("acne_mobilenetv2").module
    events = []
    result = toolkit.export(module, torch.rand(1, 3, 224, 224), targets=["onnx"], data="synthetic", labels=LABELS,
                            normalization="imagenet", out=tmp / "out", name="acne_api", n=16,
                            recipe={"benchmark": {"enabled": False}, "evaluation": {"bootstrap": 100}}, progress=events.append)
    return result, events, tmp


def test_module_export_returns_a_typed_result(exported):
    # setup / execute: the module fixture's export
    result, _, tmp = exported
    # assert: the bundle, its one artifact with its verdict and headline metric, the manifest
    assert isinstance(result, ExportResult) and result.passed and result.complete
    assert result.bundle_dir == tmp / "out" / "acne_api"
    (a,) = result.artifacts
    assert isinstance(a, ArtifactResult)
    assert (a.path, a.format, a.precision, a.passed) == (result.bundle_dir / "artifacts" / "acne_api_fp32.onnx", "onnx", "fp32", True)
    assert a.path.is_file() and a.size_bytes == a.path.stat().st_size
    tm = result.manifest["artifacts"][0]["verification"]["task_metric"]
    assert (a.metric.name, a.metric.float_value, a.metric.value, a.metric.drop) == ("macro_f1", tm["float"], tm["artifact"], tm["drop"])
    assert a.metric.drop_ci95 == tuple(tm["drop_ci95"]) and a.metric.judged_on == "upper 95 % CI"
    assert a.metric.bound == 0.005 and a.metric.margin == pytest.approx(0.005 - tm["drop_ci95"][1]) and a.metric.passed
    assert a.worst_group is not None and a.worst_group.name in result.manifest["artifacts"][0]["verification"]["by_group"]
    # the contract is the one described: classification of the four grades at 224, ImageNet normalization
    m = result.manifest
    assert (m["model"]["task"], m["labels"], m["model"]["described_by"]) == ("classification", list(LABELS), "recipe")


def test_module_export_is_the_recipe_route_and_repeats_from_the_cli(exported):
    # setup: the recipe the export wrote beside the bundle
    result, _, tmp = exported
    recipe = toolkit.load_recipe(result.recipe_path)
    # execute: skinkit export of that recipe
    proc = run_cli("--quiet", "export", str(result.recipe_path), "--out", str(tmp / "again"), "--json")
    # assert: a bring-your-own model (factory and weights beside the recipe), exported to the same artifact
    assert result.recipe_path == tmp / "out" / "acne_api.recipe" / "recipe.yaml"
    assert (recipe.model.name, str(recipe.model.checkpoint), recipe.model.input_size) == ("acne_api.py:build", "weights.pt", (224, 224))
    assert recipe.model.normalization.mean == (0.485, 0.456, 0.406)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    again = json.loads(proc.stdout)
    assert [(x["path"], x["passed"], x["metric"]["value"]) for x in again["artifacts"]] == [
        ("artifacts/acne_api_fp32.onnx", True, result.artifacts[0].metric.value)]


def test_progress_callback_sees_every_step(exported):
    # setup / execute: the events the export's callback received
    _, events, _ = exported
    # assert: done <= total throughout; each step's last event is done == total; the stages in pipeline order
    assert all(0 <= e.done <= e.total for e in events)
    steps = list(dict.fromkeys((e.stage, e.step) for e in events))
    for key in steps:
        mine = [e for e in events if (e.stage, e.step) == key]
        assert mine[0].done == 0 and mine[-1].done == mine[-1].total and sum(e.finished for e in mine) == 1
        assert [e.done for e in mine] == sorted(e.done for e in mine)
    assert steps == [("export", "1/6 load"), ("export", "2/6 compress"), ("export", "3/6 convert"), ("convert", "onnx_fp32"),
                     ("export", "4/6 verify"), ("verify", "acne_api_fp32.onnx"), ("export", "5/6 benchmark"), ("export", "6/6 bundle")]


def test_recipe_route_still_works(tmp_path):
    # setup: a recipe object and its path, as callers passed them before
    path = tmp_path / "tiny.yaml"
    (tmp_path / "tiny.py").write_text(TINY_NET)
    torch.save(_tiny().state_dict(), tmp_path / "tiny.pt")
    path.write_text("name: tiny\nmodel: {name: 'tiny.py:build', checkpoint: tiny.pt, spec_from: acne_mobilenetv2}\n"
                    "targets: [{format: onnx}]\nevaluation: {n: 8, bootstrap: 100, ground_truth: float}\nbenchmark: {enabled: false}\n")
    # execute: toolkit.export with a Recipe (keywords as before), then with the file
    first = toolkit.export(toolkit.load_recipe(path), recipe_path=path, out_dir=tmp_path / "a")
    second = toolkit.export(path, out=tmp_path / "b")
    # assert
    assert first.passed and second.passed
    assert [a.path.name for a in first.artifacts] == [a.path.name for a in second.artifacts] == ["tiny_fp32.onnx"]


@pytest.mark.parametrize(("kwargs", "cause", "fix"), [
    ({"example_input": torch.rand(1, 3, 4, 4)},
     "the model fails on example_input of shape [1, 3, 4, 4]: RuntimeError: ", "pass an example_input of the shape the network takes"),
    ({"example_input": torch.rand(3, 64, 64)},
     "example_input has shape [3, 64, 64], but skinkit exports image networks taking one RGB batch [1, 3, H, W]", "torch.rand(1, 3, 224, 224)"),
    ({"targets": ["tensorrt_fp16"]},
     "unknown target format 'tensorrt' (in 'tensorrt_fp16'); known: onnx, tflite, coreml, coreai", "FORMAT_PRECISION"),
    ({"normalization": None}, "normalization is not given", "normalization='imagenet'"),
    ({"labels": None}, "cannot tell what the model's output ([1, 4]) means", "pass task= (one of "),
    ({"data": None}, "data is not given", "labels.csv"),
    ({"targets": ["onnx_fp16"]}, "onnx supports precisions fp32, int8, not 'fp16'", "recipe-schema"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, kwargs, cause, fix):
    # setup: a valid call but for one argument
    args = {"example_input": torch.rand(1, 3, 64, 64), "targets": ["onnx"], "data": "synthetic", "labels": LABELS,
            "normalization": IMAGENET, "out": tmp_path, **kwargs}
    # execute
    with pytest.raises(BadInputError) as err:
        toolkit.export(_tiny(), **args)
    # assert: one line naming the cause, a fix naming what to pass; nothing written
    assert cause in err.value.cause and "\n" not in err.value.one_line()
    assert fix in err.value.fix
    assert not list(Path(tmp_path).iterdir())


def test_not_a_module_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="takes a torch.nn.Module, a Recipe or a recipe file, not int"):
        toolkit.export(3)
