"""What a recipe gets wrong is refused early, in one line, with the closest thing it may have meant: a key
given twice (both lines), a misspelt key, choice, model, metric or device profile."""

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_recipe
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


# --- skinkit export --dry-run: everything checkable, nothing converted ---------------------------------------

def _dry_run_error(recipe: Path, message: str) -> None:
    proc = run_cli("export", str(recipe), "--dry-run", "--out", str(recipe.parent / "out"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"skinkit: error: {message}"]
    assert not (recipe.parent / "out").exists()


def test_dry_run_refuses_an_unknown_model(tmp_path):
    r = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: acne_mobilenetv3}\ntargets: [{format: onnx}]\n")
    _dry_run_error(r, "unknown model 'acne_mobilenetv3' (did you mean 'acne_mobilenetv2'?) — fix: use one of: acne_efficientnet_b0, "
                      "acne_gated_mobilenetv2, acne_mobilenetv2, acne_resnet50, hydration_vit, lesion_unet, skin_regions_maskrcnn, "
                      "skin_segmenter, texture_sr, or 'path/to/file.py:factory'")


def test_dry_run_refuses_a_missing_checkpoint(tmp_path):
    r = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: acne_mobilenetv2, checkpoint: gone.safetensors}\ntargets: [{format: onnx}]\n")
    _dry_run_error(r, f"checkpoint not found: {tmp_path / 'gone.safetensors'} — fix: check the path in the recipe's model.checkpoint "
                      "(relative paths are resolved against the recipe's folder)")


def test_dry_run_refuses_a_missing_data_folder(tmp_path):
    r = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: skin_segmenter}\ntargets: [{format: onnx}]\n"
                                         "evaluation: {source: folder, folder: nowhere}\n")
    _dry_run_error(r, f"evaluation folder not found: {tmp_path / 'nowhere'} — fix: set evaluation.folder to an existing folder, "
                      "or use source: synthetic")


def test_dry_run_refuses_a_misspelt_margin_metric(tmp_path):
    r = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: acne_mobilenetv2}\n"
                                         "targets: [{format: onnx}, {format: tflite, precision: int8, "
                                         "tolerance: {margins: {recall.sever: 0.02}}}]\nevaluation: {n: 20}\ncalibration: {n: 8}\n")
    _dry_run_error(r, "target tflite_int8: tolerance margins name unknown metrics: 'recall.sever' (did you mean 'recall.severe'?) "
                      "— fix: use metrics of this task that have a float counterpart: accuracy, calibration_error, macro_f1, "
                      "recall.clear, recall.mild, recall.moderate, recall.severe")


def test_dry_run_refuses_calibration_that_is_the_evaluation_set(tmp_path):
    from toolkit.registry import get_spec
    from toolkit.tasks.data import task_data, write_folder

    spec = get_spec("acne_mobilenetv2")
    write_folder(task_data(spec, 6, split="test", seed=0), spec, tmp_path / "photos")
    r = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: acne_mobilenetv2}\ntargets: [{format: tflite, precision: int8}]\n"
                                         "evaluation: {source: folder, folder: photos}\n"
                                         "calibration: {source: folder, folder: photos}\n")
    proc = run_cli("export", str(r), "--dry-run")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith("skinkit: error: 6 image(s) are in both the calibration and the evaluation set")


def test_dry_run_plans_the_artifacts_and_their_criteria():
    proc = run_cli("export", "export_recipes/acne_mobilenetv2.yaml", "--dry-run", "--out", "/nonexistent/bundles")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == "dry run: export_recipes/acne_mobilenetv2.yaml resolves; nothing converted or written"
    assert "evaluation: 200 images (synthetic, test split, seed 0; ground truth: labels)" in lines
    assert "calibration: 64 images (synthetic), none shared with evaluation" in lines
    assert "bundle: /nonexistent/bundles/acne_mobilenetv2/: manifest.json, report.md, labels.txt, and 6 artifact(s):" in lines
    i = lines.index("  artifacts/acne_mobilenetv2_int8.tflite  (tflite_int8)")
    assert lines[i + 1:i + 4] == ["    cosine vs float >= 0.98", "    top-1 agreement with float >= 0.95",
                                  "    macro_f1 drop vs float (upper 95 % CI) <= 0.03"]

    proc = run_cli("export", "export_recipes/acne_mobilenetv2.yaml", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)
    assert [a["path"] for a in plan["artifacts"]] == [
        "artifacts/acne_mobilenetv2_fp32.onnx", "artifacts/acne_mobilenetv2_fp32.tflite", "artifacts/acne_mobilenetv2_fp16.tflite",
        "artifacts/acne_mobilenetv2_int8.tflite", "artifacts/acne_mobilenetv2_fp16.mlpackage", "artifacts/acne_mobilenetv2_fp16.aimodel"]
    int8 = plan["artifacts"][3]
    assert int8["tolerance"] == {"min_cosine": 0.98, "min_agreement": 0.95, "max_metric_drop": 0.03, "noninferiority": "ci"}
    assert plan["model"]["checkpoint"].endswith("acne_mobilenetv2.safetensors") and plan["calibration"]["disjoint_from_evaluation"]
    assert plan["files"] == ["manifest.json", "report.md", "labels.txt"]


# --- any file given as a recipe: a Recipe or one skinkit error, never another exception ---------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

KEYS = ["name", "version", "model", "checkpoint", "spec_from", "outputs", "task", "labels", "input_size", "normalization",
        "mean", "std", "pixel_range", "input", "layout", "targets", "format", "precision", "tolerance", "margins", "keep_float",
        "calibration", "evaluation", "source", "folder", "manifest", "n", "seed", "tolerances", "int8", "fp16", "benchmark",
        "compress", "pruning", "sparsity", "overrides", "components", "recipe", "chain", "id", "run", "from", "shape"]
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
           | st.sampled_from(["onnx", "tflite", "int8", "fp32", "acne_mobilenetv2", "folder", "synthetic", "m.py:f", "x.pt2", "auto"])
           | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6) | st.integers(), inner, max_size=5), max_leaves=25)
YAML_ISH = st.lists(st.sampled_from([*(f"{k}:" for k in KEYS), " ", "  ", "- ", "\n", "{", "}", "[", "]", ",", "&a ", "*a",
                                     "<<: ", "!!binary ", "!!python/name:os.system", "? ", "'", '"', "#", "2024-13-01", "1e999",
                                     "~", "|", ">", "%YAML 1.1", "---", "...", "\t", "\\x00", "onnx", "0x1F"]), max_size=40).map("".join)


def _read_any(text: str | bytes):
    """What `skinkit export` does with a file before it converts anything."""
    import tempfile

    from toolkit.chain.recipe import is_chain_recipe, parse_chain_recipe
    from toolkit.errors import SkinkitError
    from toolkit.recipe import read_yaml

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            data = read_yaml(path)
            if is_chain_recipe(data):
                return parse_chain_recipe(data, source=str(path), base=path.parent)
            return parse_recipe(data, source=str(path))
        except SkinkitError as exc:
            assert exc.cause and "\n" not in exc.one_line()
            return exc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | YAML_ISH | st.binary(max_size=64))
def test_any_text_is_a_recipe_or_a_skinkit_error(text):
    _read_any(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_any_yaml_document_is_a_recipe_or_a_skinkit_error(value):
    import yaml

    _read_any(yaml.safe_dump(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_a_recipe_with_any_keys_changed_is_a_recipe_or_a_skinkit_error(changes):
    import yaml

    _read_any(yaml.safe_dump({**MINIMAL, **changes}))
    _read_any(yaml.safe_dump({**MINIMAL, "model": {**MINIMAL["model"], **changes}}))
    _read_any(yaml.safe_dump({**MINIMAL, "targets": [{"format": "tflite", **changes}]}))
