"""The recipe JSON Schemas shipped in the package (toolkit/schema/) are what the typed recipes generate, every shipped
recipe validates against its schema, and each one points an editor at it on its first line."""

import json
import os
import tomllib
from fnmatch import fnmatch

import jsonschema
import pytest

from tests.conftest import ROOT, run_cli
from toolkit import recipe as single
from toolkit._io import yaml_load
from toolkit.chain import recipe as chain
from toolkit.errors import RecipeError
from toolkit.recipe import parse_recipe

RECIPES = sorted((ROOT / "export_recipes").rglob("*.yaml"))
SCHEMAS = {"recipe": single, "assessment": chain}


def _schema_of(data) -> str:
    return "assessment" if chain.is_chain_recipe(data) else "recipe"


def _validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMAS[kind].SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("kind", SCHEMAS)
def test_shipped_schema_is_the_generated_one(kind):
    # setup
    module = SCHEMAS[kind]
    # execute
    generated = single.schema_text(module.json_schema())
    # assert
    flag = " --assessment" if kind == "assessment" else ""
    assert module.SCHEMA_FILE.read_text() == generated, f"stale: run `skinkit recipe-schema{flag} > {module.SCHEMA_FILE.relative_to(ROOT)}`"
    jsonschema.Draft202012Validator.check_schema(json.loads(generated))


def test_cli_prints_the_shipped_schemas():
    # execute
    plain, assessment = run_cli("recipe-schema"), run_cli("recipe-schema", "--assessment")
    # assert
    assert plain.stdout == single.SCHEMA_FILE.read_text()
    assert assessment.stdout == chain.SCHEMA_FILE.read_text()


def test_schemas_are_package_data():
    # setup
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["toolkit"]
    # assert
    for module in SCHEMAS.values():
        rel = module.SCHEMA_FILE.relative_to(ROOT / "toolkit").as_posix()
        assert any(fnmatch(rel, pattern) for pattern in data), f"{rel} is not package data"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "export_recipes")))
def test_shipped_recipe_validates_and_names_its_schema(path):
    # setup
    text = path.read_text()
    data = yaml_load(text)
    kind = _schema_of(data)
    # execute
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(kind).iter_errors(data)]
    # assert
    assert not errors, errors
    first = text.splitlines()[0]
    want = os.path.relpath(SCHEMAS[kind].SCHEMA_FILE, path.parent)
    assert first == f"# yaml-language-server: $schema={want}"
    assert (path.parent / want).resolve() == SCHEMAS[kind].SCHEMA_FILE.resolve()


def test_schema_accepts_the_loaders_shorthands():
    # setup: a user's model with one-number sizes and normalization, and an output given by name alone
    data = {"name": "onet", "model": {"name": "onet.py:build", "task": "classification", "input_size": 48, "labels": ["a", "b"],
                                      "normalization": {"pixel_range": "0-255", "mean": 127.5, "std": [128, 128, 128]},
                                      "outputs": ["grade_logits", {"name": "box", "shape": [4]}]},
            "targets": [{"format": "onnx"}, {"format": "tflite", "precision": "int8"}]}
    chain_input = {"size": 224, "fit": "center_crop"}
    # execute
    recipe_errors = list(_validator("recipe").iter_errors(data))
    input_schema = json.loads(chain.SCHEMA_FILE.read_text())["$defs"]["ChainInput"]
    # assert: the schema and the loader agree
    assert not recipe_errors, [e.message for e in recipe_errors]
    assert parse_recipe(data).model.input_size == (48, 48)
    jsonschema.validate(chain_input, input_schema)
    assert chain.ChainInput.model_validate(chain_input).size == (224, 224)


def test_schema_refuses_what_the_loader_refuses():
    # setup
    bad = [
        ({"name": "x", "model": {"name": "acne_mobilenetv2", "chekpoint": "w.pt"}, "targets": [{"format": "onnx"}]},
         "Additional properties are not allowed ('chekpoint' was unexpected)"),
        ({"name": "x", "model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "onxx"}]}, "'onxx' is not one of"),
        ({"name": "x", "model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "onnx", "precision": "int3"}]}, "'int3' is not one of"),
        ({"name": "x", "model": {"name": "acne_mobilenetv2"}}, "'targets' is a required property"),
    ]
    for data, message in bad:
        # execute
        errors = [e.message for e in _validator("recipe").iter_errors(data)]
        # assert
        assert any(message in e for e in errors), (data, errors)
        with pytest.raises(RecipeError):
            parse_recipe(data)


def test_assessment_components_are_written_as_recipes_without_name_or_as_files():
    # setup
    base = {"name": "c", "input": {"size": 224}, "chain": [{"id": "a", "run": "a"}], "outputs": [{"name": "g", "from": "a.logits"}]}
    inline = {**base, "components": {"a": {"model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "onnx"}]}}}
    by_file = {**base, "components": {"a": {"recipe": "acne_mobilenetv2.yaml"}}}
    named = {**base, "components": {"a": {"name": "a", "model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "onnx"}]}}}
    # execute
    v = _validator("assessment")
    # assert
    assert not list(v.iter_errors(inline)) and not list(v.iter_errors(by_file))
    assert list(v.iter_errors(named)), "a component takes no name: its key names it"
