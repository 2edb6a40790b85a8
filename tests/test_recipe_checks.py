"""What a recipe gets wrong is refused early, in one line, with the closest thing it may have meant: a key
given twice (both lines), a misspelt key, choice, model, metric or device profile."""

from pathlib import Path

import pytest

from toolkit.errors import BadInputError, RecipeError
from toolkit.recipe import load_recipe, parse_recipe

MINIMAL = {"name": "b", "model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "onnx"}]}


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    p = tmp_path / "twice.yaml"
    p.write_text("name: b\n"
                 "model: {name: acne_mobilenetv2}\n"
                 "targets: [{format: onnx}]\n"
                 "evaluation: {n: 8}\n"
                 "targets: [{format: tflite}]\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert e.value.cause == f"{p}: duplicate key 'targets' at line 5 (first at line 3)"
    assert e.value.fix == "keep one 'targets': YAML would silently drop all but the last"


def test_a_nested_key_given_twice_on_one_line_is_refused(tmp_path):
    p = tmp_path / "twice.yaml"
    p.write_text("name: b\nmodel: {name: acne_mobilenetv2, name: skin_segmenter}\ntargets: [{format: onnx}]\n")
    with pytest.raises(RecipeError, match=r"duplicate key 'name' at line 2 \(first at line 2\)$"):
        load_recipe(p)


def test_a_merge_key_may_be_overridden():
    from toolkit._io import yaml_load

    assert yaml_load("a: &t {format: tflite, precision: fp32}\nb: {<<: *t, precision: fp16}\n")["b"] == {
        "format": "tflite", "precision": "fp16"}


def test_a_date_that_is_none_is_a_yaml_error_with_its_line(tmp_path):
    p = tmp_path / "date.yaml"
    p.write_text("name: b\nversion: 2024-13-01\n")
    with pytest.raises(RecipeError, match=r"not valid YAML at line 2, column 10: '2024-13-01' is not a date"):
        load_recipe(p)


def test_a_device_profile_with_a_key_twice_is_refused(tmp_path):
    from toolkit.benchmark.devices import DEVICES_DIR, load_profile

    text = (DEVICES_DIR / "tensor_g3_cpu.yaml").read_text()
    p = tmp_path / "p.yaml"
    p.write_text(text + "\nname: again\n")
    with pytest.raises(BadInputError, match=r"is invalid: duplicate key 'name' at line \d+ \(first at line \d+\)$"):
        load_profile(p)


@pytest.mark.parametrize(("recipe", "message"), [
    ({**MINIMAL, "model": {"name": "acne_mobilenetv2", "chekpoint": "w.pt"}},
     "unknown key 'chekpoint' at model.chekpoint (did you mean 'checkpoint'?)"),
    ({**MINIMAL, "benchmrk": {}}, "unknown key 'benchmrk' at benchmrk (did you mean 'benchmark'?)"),
    ({**MINIMAL, "tolerances": {"int8": {"max_ab": 1}}}, "unknown key 'max_ab' at tolerances.int8.max_ab (did you mean 'max_abs'?)"),
    ({**MINIMAL, "targets": [{"format": "tflite", "keep_flot": ["x"]}]},
     "unknown key 'keep_flot' at targets.0.keep_flot (did you mean 'keep_float'?)"),
    ({**MINIMAL, "compress": {"pruning": {"sparsity": 0.5, "distil": {}}}},
     "unknown key 'distil' at compress.pruning.distil (did you mean 'distill'?)"),
    ({**MINIMAL, "evaluation": {"sorce": "folder"}}, "unknown key 'sorce' at evaluation.sorce (did you mean 'source'?)"),
    ({**MINIMAL, "targets": [{"format": "tflit"}]}, "(got 'tflit') (did you mean 'tflite'?)"),
    ({**MINIMAL, "whatever": 1}, "unknown key 'whatever' at whatever"),
])
def test_a_misspelt_key_or_choice_names_the_closest(recipe, message):
    with pytest.raises(RecipeError) as e:
        parse_recipe(recipe)
    assert message in e.value.cause
    assert ("did you mean" in message) == ("did you mean" in e.value.cause)
    assert "fix:" in e.value.one_line() and "\n" not in e.value.one_line()


def test_a_misspelt_key_in_an_assessment_recipe_names_the_closest():
    from toolkit.chain.recipe import parse_chain_recipe

    data = {"name": "a", "input": {"size": 224}, "components": {"m": {"model": {"name": "skin_segmenter"}, "targets": [{"format": "onnx"}]}},
            "chain": [{"id": "s", "run": "m"}], "outputs": [{"name": "o", "from": "s.mask"}], "evaluaton": {}}
    with pytest.raises(RecipeError, match=r"unknown key 'evaluaton' at evaluaton \(did you mean 'evaluation'\?\)"):
        parse_chain_recipe(data, source="a.yaml", base=Path("."))


def test_an_unknown_model_names_the_closest():
    from toolkit.registry import get_spec

    with pytest.raises(BadInputError) as e:
        get_spec("acne_mobilenetv3")
    assert e.value.cause == "unknown model 'acne_mobilenetv3' (did you mean 'acne_mobilenetv2'?)"
    assert "skin_segmenter" in e.value.fix


def test_an_unknown_device_profile_names_the_closest():
    from toolkit.benchmark.devices import load_profiles

    with pytest.raises(BadInputError) as e:
        load_profiles(["tensor_g3_cpus"])
    assert e.value.cause == "unknown device profile 'tensor_g3_cpus' (did you mean 'tensor_g3_cpu'?)"
    assert "snapdragon_8gen3_npu" in e.value.fix
