"""Every reference model through its shipped recipe's targets (slow: run with `pytest -m slow`)."""

import json

import pytest

from tests.conftest import ROOT, run_cli, write_recipe
from toolkit.load.loader import shipped_checkpoint
from toolkit.recipe import load_recipe
from toolkit.registry import list_models

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_reference_model_exports_and_verifies(spec, tmp_path):
    assert shipped_checkpoint(spec.name).exists(), f"no trained weights for {spec.name}: run `skinkit train {spec.name}`"
    recipe = (ROOT / "export_recipes" / f"{spec.name}.yaml").read_text()
    recipe = recipe.replace("  n: 200", "  n: 48").replace("  repeats: 20", "  repeats: 3")
    r = write_recipe(tmp_path / f"{spec.name}.yaml", recipe)
    proc = run_cli("export", str(r), "--out", str(tmp_path / "out"), "--json", timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    targets = load_recipe(r).targets
    assert summary["passed"] and len(summary["artifacts"]) == len(targets) >= 5
