from pathlib import Path

import pytest

from toolkit.errors import RecipeError
from toolkit.recipe import load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"name": "b", "model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "onnx"}]}


def _single_model_recipes() -> list[Path]:
    """The shipped recipes of one model (assessment recipes, several models, are tested in test_chain.py)."""
    from toolkit.chain.recipe import is_chain_recipe
    from toolkit.recipe import read_yaml

    return [p for p in sorted((ROOT / "export_recipes").glob("*.yaml")) if not is_chain_recipe(read_yaml(p))]


@pytest.mark.parametrize("path", _single_model_recipes(), ids=lambda p: p.stem)
def test_shipped_recipes_parse(path):
    r = load_recipe(path)
    assert r.name == path.stem
    keys = {t.key for t in r.targets}
    # every shipped recipe has the six release targets; a compressed Core ML precision may come on top
    assert {"onnx_fp32", "tflite_fp32", "tflite_fp16", "tflite_int8", "coreml_fp16", "coreai_fp16"} <= keys
    assert all(k.startswith("coreml_") for k in keys - {"onnx_fp32", "tflite_fp32", "tflite_fp16", "tflite_int8", "coreai_fp16"})
    # 64 images; the gated classifier's masked images need 128 (int8 agreement 0.99 -> 0.995 on 200)
    assert r.calibration.source == "synthetic" and r.calibration.n == (128 if "gated" in r.name else 64)


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
    with pytest.raises(RecipeError, match=r"targets\.0: onnx supports precisions fp32, int8, not 'fp16'"):
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


# Reference models without a 50 %-channels recipe, and why.
NO_CHANNEL_PRUNING = {
    "skin_regions_maskrcnn": "label-free distillation matches the network's outputs, which for a detector are the "
                             "top-K detections after NMS: on 1024 images it ran out of 24 GB (December 2026)",
}


def test_every_reference_model_has_the_four_compression_recipes():
    import toolkit.models  # noqa: F401  (registers the models)
    from toolkit.registry import list_models

    folder = ROOT / "export_recipes" / "compress"
    for spec in list_models():
        options = load_recipe(folder / f"{spec.name}.yaml")
        keys = {t.key: t for t in options.targets}
        assert {"tflite_fp32", "tflite_int8", "tflite_int8_mixed", "coreml_palettize4"} <= set(keys), spec.name
        budget = keys["tflite_int8_mixed"].tolerance
        assert keys["tflite_int8_mixed"].keep_float == "auto" and budget.max_group_drop is not None, spec.name
        if spec.name in NO_CHANNEL_PRUNING:
            assert not (folder / f"{spec.name}_channels50_int8.yaml").exists(), f"{spec.name}: remove it from NO_CHANNEL_PRUNING"
            continue
        pruned = load_recipe(folder / f"{spec.name}_channels50_int8.yaml")
        assert (pruned.compress.pruning.method, pruned.compress.pruning.sparsity) == ("channels", 0.5), spec.name
        assert {"tflite_fp32", "tflite_int8"} <= {t.key for t in pruned.targets}, spec.name


def test_target_tolerance_layers_on_the_precision_override():
    import toolkit.models  # noqa: F401
    from toolkit.convert.base import Artifact
    from toolkit.convert.stage import target_of
    from toolkit.registry import get_spec
    from toolkit.verify.gate import resolve_tolerance

    r = parse_recipe({**MINIMAL, "targets": [
        {"format": "tflite", "precision": "int8"},
        {"format": "tflite", "precision": "int8", "keep_float": "auto",
         "tolerance": {"max_metric_drop": 0.005, "margins": {"recall.severe": 0.01}, "noninferiority": "point"}}],
        "tolerances": {"int8": {"max_group_drop": 0.04, "margins": {"recall.clear": 0.02}}}})
    spec = get_spec("acne_mobilenetv2")
    plain, mixed = (target_of(r, spec, Artifact("tflite", "int8", Path(f"a/acne_mobilenetv2_{v}.tflite"), 0.0))
                    for v in ("int8", "int8_mixed"))
    assert (plain.keep_float, mixed.keep_float) == (None, "auto")
    assert target_of(r, spec, Artifact("tflite", "int8", Path("acne_mobilenetv2_probe3.tflite"), 0.0)) is None
    tol = resolve_tolerance(spec, "int8", r.tolerances["int8"], mixed.tolerance)
    default = spec.tolerance("int8")
    assert (tol.max_metric_drop, tol.max_group_drop, tol.min_agreement) == (0.005, 0.04, default.min_agreement)
    assert tol.margins == {**default.margins, "recall.clear": 0.02, "recall.severe": 0.01}
    assert resolve_tolerance(spec, "int8", r.tolerances["int8"], None).max_metric_drop == default.max_metric_drop


def test_pruning_override_ratios_are_checked():
    base = {**MINIMAL, "compress": {"pruning": {"method": "channels", "sparsity": 0.5, "overrides": {"Linear": 1.0}}}}
    with pytest.raises(RecipeError, match=r"override ratios must be in \[0, 1\) \(got Linear: 1.0\)"):
        parse_recipe(base)
