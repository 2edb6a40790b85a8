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
