import pytest
import torch

from toolkit.compress import MagnitudePruner
from toolkit.load import load_model


@pytest.mark.parametrize("scope", ["global", "per_layer"])
def test_pruning_reaches_target_without_mutating_input(scope):
    model = load_model("acne_mobilenetv2").module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, report = MagnitudePruner(0.5, scope, exclude=("head.fc",)).compress(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model was mutated"
    assert report["achieved_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert "head.fc" not in report["modules"]
    assert float((pruned.head.fc.weight == 0).float().mean()) == 0.0
    if scope == "per_layer":
        assert all(abs(m["sparsity"] - 0.5) < 0.02 for m in report["modules"].values() if m["weights"] > 100)


def test_pruning_rejects_bad_sparsity():
    with pytest.raises(ValueError, match="sparsity must be in"):
        MagnitudePruner(1.5).compress(torch.nn.Linear(2, 2))


def test_channel_pruning_removes_channels_across_dependencies_and_distillation_recovers():
    import copy

    import torch

    from toolkit.compress.channels import ChannelPruner, distill
    from toolkit.load import load_model
    from toolkit.load.contract import to_network_input
    from toolkit.tasks.data import task_data

    loaded = load_model("skin_segmenter")
    original = copy.deepcopy(loaded.module.state_dict())
    example = torch.zeros(1, 3, *loaded.spec.input_size)
    pruned, report = ChannelPruner(0.5, exclude=("enc1",)).compress(loaded.module, example)
    assert all(torch.equal(v, loaded.module.state_dict()[k]) for k, v in original.items()), "the input model is untouched"
    assert report["macs"]["ratio"] < 0.7 and report["params"]["ratio"] < 0.6  # enc1 and the output layer keep theirs
    assert pruned(example).shape == loaded.module(example).shape  # the output layer keeps its channels
    assert not any(name == "enc1" or name.startswith("enc1.") for name in report["modules"])
    for entry in report["modules"].values():
        before, after = entry["out_channels"]
        assert after < before and after % 8 == 0
    images = to_network_input(task_data(loaded.spec, 16, split="train").inputs, loaded.spec)
    r = distill(pruned, loaded.module, images, epochs=2, lr=1e-3)
    assert r["mse_after"] < r["mse_before"]


def test_sparse_storage_needs_magnitude_pruning():
    from toolkit.recipe import parse_recipe

    base = {"name": "x", "model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "coreml", "precision": "sparse"}]}
    with pytest.raises(Exception, match="needs compress.pruning with method: magnitude"):
        parse_recipe({**base, "compress": {"pruning": {"method": "channels", "sparsity": 0.5}}})


def _toy():
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 8)

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3)
            self.blocks = nn.ModuleList([Block(), Block()])
            self.head = nn.Linear(8, 2)

    return Toy()


def test_layer_ratios_name_beats_type_beats_global_and_longer_name_wins():
    from toolkit.compress.select import layer_ratios

    ratios = layer_ratios(_toy(), 0.5, {"Linear": 0.2, "Block": 0.3, "blocks": 0.4, "blocks.*.fc": 0.1, "blocks.1.fc": 0.0},
                          exclude=("stem",))
    assert ratios == {"stem": 0.0, "blocks.0.conv": 0.4, "blocks.0.fc": 0.1, "blocks.1.conv": 0.4, "blocks.1.fc": 0.0, "head": 0.2}
    # A type names the layers inside modules of that type; the layer's own type is nearer than its block's.
    assert layer_ratios(_toy(), 0.5, {"Block": 0.3, "Linear": 0.2}) == {
        "stem": 0.5, "blocks.0.conv": 0.3, "blocks.0.fc": 0.2, "blocks.1.conv": 0.3, "blocks.1.fc": 0.2, "head": 0.2}


def test_override_that_names_nothing_is_an_error_listing_what_exists():
    from toolkit.compress.select import layer_ratios
    from toolkit.errors import RecipeError

    with pytest.raises(RecipeError, match="name nothing in Toy: 'blocks.*.mlp'") as info:
        layer_ratios(_toy(), 0.5, {"blocks.*.mlp": 0.2, "Linear": 0.1})
    assert "Block" in info.value.fix and "'stem'" in info.value.fix


def test_magnitude_overrides_set_each_layers_own_sparsity():
    model = load_model("acne_mobilenetv2").module
    pruned, report = MagnitudePruner(0.5, overrides={"Linear": 0.0, "features.1": 0.2}).compress(model)
    assert float((pruned.head.fc.weight == 0).float().mean()) == 0.0 and "head.fc" not in report["modules"]
    f1 = {n: m for n, m in report["modules"].items() if n.startswith("features.1.")}
    assert f1 and all(m["target"] == 0.2 and abs(m["sparsity"] - 0.2) < 0.03 for m in f1.values())
    rest = [m for n, m in report["modules"].items() if not n.startswith("features.1.")]
    zeros = sum(m["sparsity"] * m["weights"] for m in rest) / sum(m["weights"] for m in rest)
    assert zeros == pytest.approx(0.5, abs=0.01)  # the layers left at the global ratio share one threshold


def test_channel_pruning_keeps_pixel_shuffle_feeders_and_honours_overrides():
    from toolkit.compress.channels import ChannelPruner, feeds_pixel_shuffle

    sr = load_model("texture_sr")
    x = torch.rand(1, 3, *sr.spec.input_size)
    assert feeds_pixel_shuffle(sr.module, x) == ["upsample.0"]
    pruned, report = ChannelPruner(0.5).compress(sr.module, x)
    assert report["kept_automatically"] == {"tail": "the output layer", "upsample.0": "feeds a PixelShuffle"}
    assert pruned.upsample[0].out_channels == 128 and pruned.upsample[0].in_channels == 16
    assert pruned(x).shape == sr.module(x).shape and report["macs"]["ratio"] < 0.5

    vit = load_model("hydration_vit")
    x = torch.rand(1, 3, *vit.spec.input_size)
    pruned, report = ChannelPruner(0.5, overrides={"Linear": 0.0, "Conv2d": 0.0, "blocks.*.mlp.0": 0.5}).compress(vit.module, x)
    assert report["modules"] == {f"blocks.{i}.mlp.0": {"out_channels": [512, 256]} for i in range(4)}
    assert pruned(x).shape == vit.module(x).shape


def test_pruned_export_reports_its_cost_and_fails_its_budget_with_exit_3(tmp_path):
    """Channel pruning without distillation costs the skin segmenter accuracy: the bundle is written, its
    artifact passes against the pruned float model, and the pruning budget against the original fails."""
    import json

    from tests.conftest import run_cli, write_recipe
    from toolkit.verify.bundle import junit_xml, verify_bundle

    recipe = write_recipe(tmp_path / "pruned.yaml", """
name: seg_pruned
model: {name: skin_segmenter}
compress:
  pruning: {method: channels, sparsity: 0.5, max_metric_drop: 0.01, max_group_drop: 0.02}
targets: [{format: tflite, precision: fp32}]
evaluation: {n: 40, bootstrap: 200}
benchmark: {enabled: false}
""")
    proc = run_cli("export", str(recipe), "--out", str(tmp_path), "-q")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "pruning: miou drop vs original float (upper 95 % CI)" in proc.stderr
    m = json.loads((tmp_path / "seg_pruned" / "manifest.json").read_text())
    assert m["verdict"] == {"passed": False, "complete": True, "artifact_count": 1, "passed_count": 1, "compression_passed": False}
    ao = m["compression"]["against_original"]
    assert ao["float"]["value"] - ao["artifact"]["value"] == pytest.approx(ao["drop"]["value"]) and ao["drop"]["value"] > 0.01
    assert {c["name"].split(" (")[0] for c in ao["criteria"]} == {"miou drop vs original float", "worst skin-tone group miou drop vs original float"}
    assert sum(g["n"] for g in ao["by_group"].values()) == 40
    assert "## Compression" in (tmp_path / "seg_pruned" / "report.md").read_text()

    summary = verify_bundle(tmp_path / "seg_pruned")  # CI re-checks the same budget
    assert summary["passed"] is False and summary["artifacts"][0]["passed"] is True
    assert summary["pruning"]["passed"] is False and summary["pruning"]["drop"] == ao["drop"]
    assert 'name="pruning (float vs original)"><failure' in junit_xml(summary)


class _TwoHeads(torch.nn.Module):
    """Grade logits and the feature map a second head reads: two outputs."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1))
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        f = self.body(x)
        return {"logits": self.head(f.mean((2, 3))), "features": f}


def test_channel_pruning_refuses_to_change_a_second_output_and_distils_every_output():
    from toolkit.compress.channels import ChannelPruner, distill
    from toolkit.errors import BadInputError

    torch.manual_seed(0)
    model, x = _TwoHeads().eval(), torch.randn(1, 3, 8, 8)
    with pytest.raises(BadInputError, match=r"changed the network's output shapes from \[\(1, 16, 8, 8\), \(1, 4\)\]") as e:
        ChannelPruner(0.5, round_to=4).compress(model, x)
    assert "compress.pruning.exclude" in e.value.fix
    pruned, _ = ChannelPruner(0.5, exclude=("body.2",), round_to=4).compress(model, x)
    assert pruned.body[0].out_channels == 8 and pruned.body[2].out_channels == 16
    images = torch.randn(32, 3, 8, 8)
    result = distill(pruned, model, images, epochs=3, lr=1e-2)
    assert result["mse_after"] < result["mse_before"]
