import pytest
import torch
from safetensors.torch import save_file

from toolkit.errors import BadInputError, CheckpointError
from toolkit.load import load_model
from toolkit.load.loader import shipped_checkpoint
from toolkit.registry import get_spec

NAME = "skin_segmenter"  # the smallest trained reference model


@pytest.fixture
def state():
    return load_model(NAME).module.state_dict()


def _same_outputs(a, b):
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_shipped_weights_load_and_are_trained():
    lm = load_model(NAME)
    assert lm.provenance["checkpoint"] == str(shipped_checkpoint(NAME))
    assert len(lm.provenance["checkpoint_sha256"]) == 64
    assert not lm.module.training
    fresh = get_spec(NAME).factory()
    differs = any(not torch.equal(v, fresh.state_dict()[k]) for k, v in lm.module.state_dict().items() if v.is_floating_point())
    assert differs, "shipped weights equal a fresh initialisation"


def test_torch_state_dict_with_wrapper_and_prefix(tmp_path, state):
    p = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, p)
    # A training checkpoint: non-tensor entries beside "state_dict", DataParallel's "module." prefix.
    lm = load_model(NAME, checkpoint=p)
    _same_outputs(lm.module, load_model(NAME).module)


def test_safetensors_checkpoint(tmp_path, state):
    p = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(p))
    _same_outputs(load_model(NAME, checkpoint=p).module, load_model(NAME).module)


def test_missing_and_unexpected_keys_named(tmp_path, state):
    broken = dict(state)
    removed = next(iter(broken))
    del broken[removed]
    broken["extra.weight"] = torch.zeros(1)
    p = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in broken.items()}, str(p))
    with pytest.raises(CheckpointError) as e:
        load_model(NAME, checkpoint=p)
    assert f"missing keys: {removed}" in str(e.value) and "unexpected keys: extra.weight" in str(e.value)


def test_shape_mismatch_named(tmp_path):
    p = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in load_model("acne_mobilenetv2").module.state_dict().items()}, str(p))
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_model(NAME, checkpoint=p)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_corrupt_file(tmp_path, suffix):
    p = tmp_path / f"corrupt{suffix}"
    p.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(CheckpointError, match="corrupt|cannot be read"):
        load_model(NAME, checkpoint=p)


def test_pickled_objects_are_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": get_spec(NAME).factory()}, p)  # a whole module, not tensors
    with pytest.raises(CheckpointError, match="weights_only"):
        load_model(NAME, checkpoint=p)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(NAME, checkpoint=tmp_path / "nope.safetensors")


def test_exported_program_pt2(tmp_path):
    lm = load_model(NAME)
    ep = torch.export.export(lm.module, (torch.randn(1, 3, 224, 224),))
    p = tmp_path / "seg.pt2"
    torch.export.save(ep, str(p))
    loaded = load_model(str(p), spec_from=NAME, base_dir=tmp_path)
    assert loaded.spec.task == "segmentation" and loaded.provenance["source"] == "torch.export program"
    _same_outputs(loaded.module, lm.module)


def test_user_factory_needs_spec_and_checkpoint(tmp_path, state):
    (tmp_path / "mine.py").write_text("from toolkit.models.segmenter import SkinSegmenter\n\ndef build():\n    return SkinSegmenter(base=16)\n")
    with pytest.raises(BadInputError, match="is not registered, so its input contract is unknown") as e:
        load_model("mine.py:build", base_dir=tmp_path)
    assert "model.spec_from" in e.value.fix
    with pytest.raises(CheckpointError, match="has no checkpoint"):
        load_model("mine.py:build", spec_from=NAME, base_dir=tmp_path)
    p = tmp_path / "w.pt"
    torch.save(state, p)
    lm = load_model("mine.py:build", checkpoint=p, spec_from=NAME, base_dir=tmp_path)
    assert lm.spec.name == "mine" and lm.provenance["source"] == "user factory"
    with pytest.raises(BadInputError, match="has no callable 'nope'"):
        load_model("mine.py:nope", checkpoint=p, spec_from=NAME, base_dir=tmp_path)
