from pathlib import Path

import pytest

from toolkit.errors import RecipeError
from toolkit.recipe import load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"name": "b", "model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "onnx"}]}


@pytest.mark.parametrize("path", sorted((ROOT / "export_recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_recipes_parse(path):
    r = load_recipe(path)
    assert r.name == path.stem
    assert {t.key for t in r.targets} == {"onnx_fp32", "tflite_fp32", "tflite_fp16", "tflite_int8", "coreml_fp16"}
    assert r.calibration.source == "synthetic" and r.calibration.n == 64


def test_defaults_are_filled():
    r = parse_recipe(MINIMAL)
    assert (r.input.layout, r.input.pixel_range) == ("nhwc", "0-255")
    assert (r.evaluation.source, r.evaluation.n, r.evaluation.split) == ("synthetic", 200, "test")
    assert r.targets[0].precision == "fp32"


def test_unknown_key_names_key_path_and_file(tmp_path):
    p = tmp_path / "typo.yaml"
    p.write_text("name: b\nmodel: {name: acne_mobilenetv2, chekpoint: w.pt}\ntargets: [{format: onnx}]\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert str(p) in str(e.value)
    assert "unknown key 'chekpoint' at model.chekpoint" in str(e.value)


def test_wrong_type_is_reported_with_value():
    with pytest.raises(RecipeError, match=r"evaluation\.n: Input should be a valid integer.*\(got 'many'\)"):
        parse_recipe({**MINIMAL, "evaluation": {"n": "many"}})


def test_unsupported_precision_lists_supported():
    with pytest.raises(RecipeError, match=r"targets\.0: onnx supports precisions fp32, not 'fp16'"):
        parse_recipe({**MINIMAL, "targets": [{"format": "onnx", "precision": "fp16"}]})


def test_duplicate_targets_rejected():
    with pytest.raises(RecipeError, match="targets listed twice: tflite_fp16"):
        parse_recipe({**MINIMAL, "targets": [{"format": "tflite", "precision": "fp16"}, {"format": "tflite", "precision": "fp16"}]})


def test_missing_required_key():
    with pytest.raises(RecipeError, match="missing required key targets"):
        parse_recipe({"name": "b", "model": {"name": "x"}})


def test_folder_source_needs_folder():
    with pytest.raises(RecipeError, match="source 'folder' needs evaluation.folder"):
        parse_recipe({**MINIMAL, "evaluation": {"source": "folder"}})


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match=r"not valid YAML at line \d+"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_recipe_hash_is_stable_and_content_sensitive():
    a, b = parse_recipe(MINIMAL), parse_recipe(dict(MINIMAL))
    assert a.sha256() == b.sha256()
    assert a.sha256() != parse_recipe({**MINIMAL, "name": "c"}).sha256()


@pytest.mark.parametrize("path", sorted((ROOT / "export_recipes" / "compress").glob("*.yaml")), ids=lambda p: p.stem)
def test_compression_recipes_parse_and_name_existing_files(path):
    r = load_recipe(path)
    assert r.name == path.stem or r.name == path.stem + "_compress"
    if r.calibration.source == "manifest":
        assert (path.parent / r.calibration.manifest).resolve().is_file()
    assert any(t.precision in ("int8", "palettize4") for t in r.targets)
