from pathlib import Path

import pytest
import torch

from toolkit.backends.precisions import PRECISIONS
from toolkit.errors import BadInputError
from toolkit.load.contract import DeviceContract, InputContract
from toolkit.recipe import load_recipe
from toolkit.registry import get_spec, list_models, register_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_every_model_builds_with_declared_output(spec):
    torch.manual_seed(0)
    model = spec.factory().eval()
    h, w = spec.input_size
    with torch.inference_mode():
        y = model(torch.randn(2, 3, h, w))
    if spec.task == "classification":
        assert y.shape == (2, len(spec.labels))
    elif spec.task == "regression":
        assert y.shape == (2, len(spec.outputs))
    elif spec.task == "segmentation":
        assert y.shape == (2, len(spec.labels), *spec.output_size)
    elif spec.task == "instance_segmentation":  # fixed-size detections, each output as declared
        assert {k: tuple(v.shape) for k, v in y.items()} == {o.name: (2, *o.shape) for o in spec.outputs}
        assert float(y["masks"].min()) >= 0.0 and float(y["masks"].max()) <= 1.0
    else:
        assert y.shape == (2, 3, *spec.output_size)
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert set(spec.tolerances) == {p.tier for p in PRECISIONS.values()}


def test_every_registered_model_has_a_recipe_and_every_recipe_a_model():
    from toolkit.chain.recipe import is_chain_recipe, load_chain_recipe
    from toolkit.recipe import read_yaml

    paths = sorted((ROOT / "export_recipes").glob("*.yaml"))
    chains = [p for p in paths if is_chain_recipe(read_yaml(p))]
    names = {s.name for s in list_models()}
    recipes = {p.stem: load_recipe(p).model.name for p in paths if p not in chains}
    assert set(recipes) == names
    assert all(recipes[n] == n for n in names)
    # an assessment recipe is named after its file and runs registered models only
    assert [p.stem for p in chains] == ["acne_gated", "lesion_stats", "selfie_assessment", "skin_texture_regions"]
    for p in chains:
        chain = load_chain_recipe(p)
        assert chain.name == p.stem and {c.model.name for c in chain.components.values()} <= names


def test_unknown_model_lists_known_names():
    with pytest.raises(BadInputError) as e:
        get_spec("acne_mobilenet")
    assert "unknown model 'acne_mobilenet'" in str(e.value)
    assert "acne_mobilenetv2" in e.value.fix and "texture_sr" in e.value.fix


def test_registering_twice_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        register_model(get_spec("acne_mobilenetv2"))


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_device_contract_matches_manual_preprocessing(layout):
    from toolkit.load.contract import normalize

    spec = get_spec("skin_segmenter")
    torch.manual_seed(0)
    net = spec.factory().eval()
    pixels = torch.rand(1, 3, 224, 224) * 255
    wrapped = DeviceContract(net, spec, InputContract(layout=layout)).eval()
    with torch.inference_mode():
        expected = net(normalize(pixels, spec))
        got = wrapped(pixels.permute(0, 2, 3, 1) if layout == "nhwc" else pixels)
    if layout == "nhwc":
        got = got.permute(0, 3, 1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_vit_attention_equals_torch_multihead_attention():
    from toolkit.models.vit import Attention

    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    mine = Attention(32, 4).eval()
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(2, 10, 32)
    with torch.inference_mode():
        torch.testing.assert_close(mine(x), ref(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_output_names_do_not_clash_with_the_input(spec):
    assert "image" not in {o.name for o in spec.outputs}, "artifacts name their input 'image'"
