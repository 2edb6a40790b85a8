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
    from toolkit.data.tasks import task_data
    from toolkit.load import load_model
    from toolkit.load.contract import to_network_input

    loaded = load_model("skin_segmenter")
    original = copy.deepcopy(loaded.module.state_dict())
    example = torch.zeros(1, 3, *loaded.spec.input_size)
    pruned, report = ChannelPruner(0.5, exclude=("enc1",)).compress(loaded.module, example)
    assert all(torch.equal(v, loaded.module.state_dict()[k]) for k, v in original.items()), "the input model is untouched"
    assert report["macs"]["ratio"] < 0.7 and report["params"]["ratio"] < 0.6  # enc1 and the output layer keep theirs
    assert pruned(example).shape == loaded.module(example).shape  # the output layer keeps its channels
    assert not any(name == "enc1" or name.startswith("enc1.") for name in report["modules"])
    for name, entry in report["modules"].items():
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
