"""The conversion matrix as one flow suite: each reference model's matrix recipe exports every
supported (format, precision) target; each artifact must pass its gate, unless it is listed in
EXPECTED_FAILURES, in which case it must fail (a newly passing combination is noticed).

The default run covers the default model; `pytest -m slow` covers every reference model and the
pruned (sparse Core ML) recipes.
"""

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from toolkit.backends import BACKENDS
from toolkit.backends.precisions import PRECISIONS
from toolkit.convert.matrix import EXPECTED_FAILURES, support_table
from toolkit.errors import IncompleteBundle, VerificationFailed
from toolkit.recipe import load_recipe
from toolkit.registry import list_models

MATRIX = ROOT / "export_recipes" / "matrix"
DEFAULT = "acne_mobilenetv2"


def _export(recipe_path: Path, out: Path, n: int = 100, formats: set[str] | None = None) -> dict:
    """Export a matrix recipe (only the targets of ``formats``, if given) and return its manifest."""
    from toolkit.pipeline import export

    recipe = load_recipe(recipe_path)
    targets = tuple(t for t in recipe.targets if formats is None or t.format in formats)
    recipe = recipe.model_copy(update={"evaluation": recipe.evaluation.model_copy(update={"n": n}), "targets": targets})
    try:
        return export(recipe, recipe_path=recipe_path, out_dir=out).manifest
    except (VerificationFailed, IncompleteBundle) as exc:  # the bundle is written: judge each target below
        return json.loads((Path(exc.bundle_dir) / "manifest.json").read_text())


def _check(manifest: dict) -> None:
    model = manifest["model"]["name"]
    unexpected = [f"{(model, f['format'], f['precision'])} does not convert: {f['error']}" for f in manifest["failed_targets"]
                  if (model, f["format"], f["precision"]) not in EXPECTED_FAILURES]
    for a in manifest["artifacts"]:
        key = (model, a["format"], a["precision"])
        v = a["verification"]
        failed = [f"{c['name']} = {c['value']} (bound {c['op']} {c['bound']})" for c in v["criteria"] if not c["passed"]]
        if key in EXPECTED_FAILURES and v["passed"]:
            unexpected.append(f"{key} now PASSES: remove it from EXPECTED_FAILURES")
        elif key not in EXPECTED_FAILURES and not v["passed"]:
            unexpected.append(f"{key} fails: {'; '.join(failed)}")
        if a["format"] == "tflite" and manifest["model"]["task"] != "regression":
            assert a["structure"]["transpose_count"] == 0, f"{key}: CNN TFLite graphs must be channel-last throughout"
    assert not unexpected, "\n".join(unexpected)


# Formats the default run leaves to `pytest -m slow` (test-time budget: Core AI's Linux CPU runtime takes 0.3-8 s an
# image); tests/test_coreai_export.py exports the default model to Core AI in the default run.
SLOW_FORMATS = {"coreai"}


def test_matrix_recipes_cover_every_supported_pair():
    for spec in list_models():
        recipe = load_recipe(MATRIX / f"{spec.name}.yaml")
        assert recipe.model.name == spec.name
        want = {(f, p) for f, b in BACKENDS.items() for p in b.precisions if not PRECISIONS[p].needs_sparsity}
        assert {(t.format, t.precision) for t in recipe.targets} == want, f"{spec.name}: regenerate its matrix recipe"
        pruned = load_recipe(MATRIX / f"{spec.name}_pruned.yaml")
        assert pruned.compress.pruning is not None and any(t.precision == "sparse" for t in pruned.targets)


def test_expected_failures_name_real_supported_combinations():
    names = {s.name for s in list_models()}
    for (model, fmt, precision), why in EXPECTED_FAILURES.items():
        assert model in names and precision in BACKENDS[fmt].precisions and len(why) > 20


def test_support_table_gives_a_reason_for_every_gap():
    table = support_table()
    for p in PRECISIONS:
        assert f"| `{p}` |" in table
    assert "✗ Core ML has no int16 activation type" in table


def test_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    assert support_table() in readme, "README's conversion table is stale: paste `skinkit matrix` output"


def test_default_model_matrix(tmp_path):
    _check(_export(MATRIX / f"{DEFAULT}.yaml", tmp_path, formats=set(BACKENDS) - SLOW_FORMATS))


@pytest.mark.slow
def test_default_model_matrix_slow_formats(tmp_path):
    _check(_export(MATRIX / f"{DEFAULT}.yaml", tmp_path, formats=SLOW_FORMATS))


@pytest.mark.slow
@pytest.mark.parametrize("name", [s.name for s in list_models() if s.name != DEFAULT])
def test_reference_model_matrix(name, tmp_path):
    _check(_export(MATRIX / f"{name}.yaml", tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("name", [s.name for s in list_models()])
def test_pruned_model_stores_sparse_weights(name, tmp_path):
    manifest = _export(MATRIX / f"{name}_pruned.yaml", tmp_path)
    _check(manifest)
    sparse = next(a for a in manifest["artifacts"] if a["precision"] == "sparse")
    assert sparse["structure"]["compressed_weight_ops"].get("constexpr_sparse_to_dense", 0) > 0
