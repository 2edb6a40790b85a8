"""Exact rewrites for converter gaps: each computes what it replaces (property tests over shapes), is applied to a
copy and only where a call needs it, and is needed by exactly the backends that list it (every witness through
every backend, with a strict list: a gap a converter closes is noticed)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tests.rewrite_models import Call, prelu
from toolkit.backends import BACKENDS
from toolkit.backends.rewrites import REWRITES, get_rewrite, rewritten
from toolkit.errors import ConversionError

PROPERTY = settings(max_examples=40, deadline=None)


def _check(module: nn.Module, x: torch.Tensor, name: str, *, applied: bool, exact: bool = False, rtol: float = 1e-6):
    """Rewrite ``module`` with ``name`` alone; assert whether it applied and that the outputs agree."""
    module.eval()
    twin, done = rewritten(module, x, [name])
    assert bool(done) == applied, done
    with torch.no_grad():
        want, got = module(x), twin(x)
    if exact:
        assert torch.equal(got, want)
    else:
        torch.testing.assert_close(got, want, rtol=0, atol=rtol * max(1.0, float(want.abs().max())))


# ---------------------------------------------------------------------------------- each rewrite is exact

@PROPERTY
@given(rank=st.sampled_from([2, 3, 5]), channels=st.integers(2, 24), seed=st.integers(0, 2**16))
def test_prelu_rank_is_bit_exact(rank, channels, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, *([3] * (rank - 2)), generator=g)
    _check(prelu(channels), x, "prelu_rank", applied=True, exact=True)


def test_prelu_rank_leaves_rank_4_and_single_slope_alone():
    _check(prelu(6), torch.randn(1, 6, 5, 5), "prelu_rank", applied=False)
    _check(nn.PReLU(16), torch.randn(2, 16), "prelu_rank", applied=False)  # 0.25 everywhere: one slope in effect


@PROPERTY
@given(h=st.integers(1, 40), w=st.integers(1, 40), oh=st.integers(1, 40), ow=st.integers(1, 40), functional=st.booleans())
def test_area_resize_matches_adaptive_average_pooling(h, w, oh, ow, functional):
    x = torch.rand(2, 3, h, w) * 255
    module = Call(lambda t: F.interpolate(t, size=(oh, ow), mode="area")) if functional else nn.AdaptiveAvgPool2d((oh, ow))
    _check(module, x, "area_resize", applied=bool(h % oh or w % ow))


@PROPERTY
@given(h=st.integers(1, 24), w=st.integers(1, 24), oh=st.integers(1, 40), ow=st.integers(1, 40), by_scale=st.booleans())
def test_nearest_resize_is_bit_exact(h, w, oh, ow, by_scale):
    x = torch.randn(1, 3, h, w)
    resize = ((lambda t: F.interpolate(t, scale_factor=(oh / h, ow / w), mode="nearest")) if by_scale
              else (lambda t: F.interpolate(t, size=(oh, ow), mode="nearest")))
    twin, done = rewritten(Call(resize), x, ["nearest_resize"])
    with torch.no_grad():
        assert torch.equal(twin(x), resize(x))
    out_h, out_w = resize(x).shape[-2:]
    integer_upscale = out_h % h == 0 and out_w % w == 0 and not by_scale
    if integer_upscale:
        assert not done


@PROPERTY
@given(h=st.integers(2, 24), w=st.integers(2, 24), oh=st.integers(1, 32), ow=st.integers(1, 32),
       mode=st.sampled_from(["bilinear", "bicubic"]), align=st.booleans(), by_scale=st.booleans())
def test_antialiased_resize_matches(h, w, oh, ow, mode, align, by_scale):
    x = torch.rand(1, 3, h, w) * 255
    resize = Call(lambda t: F.interpolate(t, mode=mode, align_corners=align, antialias=True,
                                          **({"scale_factor": (oh / h, ow / w)} if by_scale else {"size": (oh, ow)})))
    twin, done = rewritten(resize, x, ["antialias_resize"])
    with torch.no_grad():
        want = resize(x)
        torch.testing.assert_close(twin(x), want, rtol=0, atol=2e-6 * float(want.abs().max()))
    # PyTorch's antialiased kernel sometimes takes another path for an output of width 1: then the call is left alone.
    assert done or want.shape[-1] == 1


@PROPERTY
@given(h=st.integers(2, 24), w=st.integers(2, 24), oh=st.integers(1, 40), ow=st.integers(1, 40), align=st.booleans())
def test_bicubic_resize_matches(h, w, oh, ow, align):
    x = torch.rand(1, 3, h, w) * 255
    _check(Call(lambda t: F.interpolate(t, size=(oh, ow), mode="bicubic", align_corners=align)), x, "bicubic_resize",
           applied=True, rtol=2e-6)


@PROPERTY
@given(h=st.integers(1, 30), w=st.integers(1, 30), oh=st.integers(1, 30), ow=st.integers(1, 30), rank=st.sampled_from([3, 4]))
def test_adaptive_max_pool_is_bit_exact(h, w, oh, ow, rank):
    x = torch.randn(*([2] if rank == 4 else []), 3, h, w)
    _check(nn.AdaptiveMaxPool2d((oh, ow)), x, "adaptive_max_pool", applied=True, exact=True)


@PROPERTY
@given(h=st.integers(1, 20), w=st.integers(1, 20), k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2),
       ceil=st.booleans(), count_pad=st.booleans(), divisor=st.sampled_from([None, 3, 5]))
def test_avg_pool_rewrites_match(h, w, k, s, p, ceil, count_pad, divisor):
    if p > k // 2 or h + 2 * p < k or w + 2 * p < k:
        return  # PyTorch refuses these
    pool = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=count_pad, divisor_override=divisor)
    x = torch.rand(2, 3, h, w) * 255
    _check(pool, x, "avg_pool_window", applied=ceil or (not count_pad and p > 0))
    _check(pool, x, "avg_pool_divisor", applied=divisor is not None)


@pytest.mark.parametrize("module", [nn.ELU(), nn.ELU(0.3), nn.SELU()], ids=["elu", "elu-0.3", "selu"])
def test_elu_matches(module):
    x = torch.linspace(-20, 20, 4001).reshape(1, 1, 1, -1)
    _check(module, x, "elu", applied=True, rtol=1e-6)


@PROPERTY
@given(groups=st.integers(1, 4), per_group=st.integers(1, 4), rank=st.sampled_from([3, 4]))
def test_channel_shuffle_is_bit_exact(groups, per_group, rank):
    x = torch.randn(2, groups * per_group, *([3] * (rank - 2)))
    _check(nn.ChannelShuffle(groups), x, "channel_shuffle", applied=True, exact=True)


@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle_is_bit_exact(r):
    net = nn.Sequential(nn.Conv2d(3, 4 * r * r, 3, padding=1), nn.PixelShuffle(r))
    _check(net, torch.randn(1, 3, 8, 8), "pixel_shuffle", applied=True, exact=True)


# ----------------------------------------------------------------------- applied to a copy, only where needed

class _Mixed(nn.Module):
    """A rank-4 PReLU (converts), a rank-2 one (does not), and an area resize in the model's own forward."""

    def __init__(self):
        super().__init__()
        self.conv, self.act = nn.Conv2d(3, 4, 3), prelu(4)
        self.fc, self.fc_act = nn.Linear(4, 6), prelu(6)

    def forward(self, x):
        x = F.interpolate(x, size=(9, 9), mode="area")
        return self.fc_act(self.fc(self.act(self.conv(x)).mean((2, 3))))


def test_rewrites_apply_to_a_copy_at_the_detected_places_only():
    net = _Mixed().eval()
    x = torch.rand(2, 3, 20, 20)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    twin, done = rewritten(net, x, ["prelu_rank", "area_resize", "adaptive_max_pool"])
    assert [d.as_dict() for d in done] == [
        {"name": "area_resize", "why": REWRITES["area_resize"].why, "where": ["(top level) (_Mixed)"], "count": 1,
         "calls": ["area resize 20×20 → 9×9"]},
        {"name": "prelu_rank", "why": REWRITES["prelu_rank"].why, "where": ["fc_act (PReLU)"], "count": 1,
         "calls": ["prelu, 6 slopes, rank-2 input"]},
    ]
    # The caller's model: same classes, weights, no hooks; the copy keeps paths, classes and weights.
    assert type(net) is _Mixed and type(net.fc_act) is nn.PReLU and not hasattr(net.fc_act, "skinkit_rewrites")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())
    assert type(twin.fc_act).__qualname__ == "PReLU" and isinstance(twin.fc_act, nn.PReLU)
    assert not hasattr(twin.act, "skinkit_rewrites"), "the rank-4 PReLU is left alone"
    assert {k for k in twin.state_dict() if "skinkit_rewrites" not in k} == set(before)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), net(x), rtol=0, atol=1e-6)
    # One copy per module and sample shape: the targets of an export share it; nothing to do, no copy.
    assert rewritten(net, x, ["prelu_rank", "area_resize", "adaptive_max_pool"])[0] is twin
    assert rewritten(net, x, ["elu"]) == (net, ())
    assert rewritten(net, x, []) == (net, ())


def test_a_rewritten_copy_still_traces_symbolically():
    """torch.fx (BatchNorm folding, quantizer preparation) sees the calls unchanged rather than failing."""
    twin, done = rewritten(_Mixed().eval(), torch.rand(1, 3, 20, 20), ["prelu_rank", "area_resize"])
    assert done
    graph = torch.fx.symbolic_trace(twin).graph
    assert any(n.target is F.interpolate for n in graph.nodes)


def test_every_backend_names_known_rewrites():
    for backend in BACKENDS.values():
        assert all(get_rewrite(n) for n in backend.rewrites), backend.name
    with pytest.raises(ConversionError, match="unknown rewrite 'nope'") as e:
        get_rewrite("nope")
    assert all(n in e.value.fix for n in REWRITES)
