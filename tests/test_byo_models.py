"""The bring-your-own architectures in ``benchmarks/byo_models/`` are the published networks: their parameter
counts match the papers', their outputs have the documented shapes, and skinkit's loader takes them as a
recipe names them (``file.py:factory`` plus a checkpoint)."""

from dataclasses import replace

import pytest
import torch

from tests.byo_models import BYO, factory
from toolkit.load import load_model
from toolkit.registry import OutputSpec, get_spec

# Parameters with a 1000-class head, as published (rounded as the papers and model cards state them).
PUBLISHED = {
    "resnet.py:resnet50": 25.6e6,           # He et al. 2016; torchvision 25,557,032
    "efficientnet.py:efficientnet_b0": 5.3e6,  # Tan & Le 2019, Table 2; torchvision 5,288,548
    "mobilenetv3.py:mobilenetv3_large": 5.5e6,  # Howard et al. 2019 (5.4 M in Table 3); torchvision 5,483,032
    "deit.py:deit_tiny": 5.7e6,             # Touvron et al. 2021 (5 M in Table 1); timm 5,717,416
    "deit.py:deit_small": 22.1e6,           # Touvron et al. 2021 (22 M in Table 1); timm 22,050,664
    "convnext.py:convnext_tiny": 28.6e6,     # Liu et al. 2022, 28 M; torchvision 28,589,128
}


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("ref", sorted(PUBLISHED))
def test_classifier_parameter_count_matches_the_paper(ref):
    net = factory(ref)(num_classes=1000)
    assert _params(net) == pytest.approx(PUBLISHED[ref], rel=0.01)


def test_mtcnn_networks_have_the_released_layer_shapes():
    # Exact: the authors' Caffe models hold these many weights.
    assert [_params(factory(f"mtcnn.py:{n}")()) for n in ("pnet", "rnet", "onet")] == [6_632, 100_178, 389_040]


@pytest.mark.parametrize("ref, kwargs, size, shapes", [
    ("resnet.py:resnet50", {}, 32, [(1, 4)]),
    ("deit.py:deit_tiny", {"img_size": 32, "fused_attention": True}, 32, [(1, 4)]),
    ("deit.py:deit_small", {"img_size": 48}, 48, [(1, 4)]),
    ("deeplabv3.py:deeplabv3", {"num_classes": 3, "output_stride": 8}, 64, [(1, 3, 64, 64)]),
    ("espcn.py:espcn", {"scale": 3}, 16, [(1, 3, 48, 48)]),
    ("mtcnn.py:pnet", {}, 12, [(1, 4, 1, 1), (1, 2, 1, 1)]),
    ("mtcnn.py:rnet", {}, 24, [(1, 4), (1, 2)]),
    ("mtcnn.py:onet", {}, 48, [(1, 4), (1, 10), (1, 2)]),
])
def test_outputs_have_the_documented_shapes(ref, kwargs, size, shapes):
    net = factory(ref)(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, size, size))
    out = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape) for o in out] == shapes
    if ref.startswith("mtcnn"):  # the face probability comes last, a softmax over face / not face
        torch.testing.assert_close(out[-1].sum(dim=1), torch.ones_like(out[-1][:, 0]))


@pytest.mark.parametrize("ref, spec_from, outputs", [
    ("espcn.py:espcn", "texture_sr", None),
    ("mtcnn.py:onet", "hydration_vit", ("box", "landmarks", "face_probability")),
])
def test_loader_takes_the_factory_as_a_recipe_names_it(tmp_path, ref, spec_from, outputs):
    # Setup: the user's trained weights, saved from the same factory.
    state = factory(ref)().state_dict()
    torch.save(state, tmp_path / "weights.pt")
    # Execute: model.name as a recipe writes it, relative to the recipe's folder (here the repository root).
    spec = replace(get_spec(spec_from), outputs=tuple(OutputSpec(o, o) for o in outputs)) if outputs else None
    loaded = load_model(f"benchmarks/byo_models/{ref}", checkpoint=tmp_path / "weights.pt", spec_from=spec_from,
                        base_dir=BYO.parent.parent, spec=spec)
    # Assert
    assert loaded.provenance["source"] == "user factory"
    assert loaded.spec.name == ref.partition(".py")[0]
    for k, v in loaded.module.state_dict().items():
        torch.testing.assert_close(v, state[k])
