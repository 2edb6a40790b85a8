"""skinkit's plain-torch torchvision operators (toolkit/load/vision_ops.py), without torchvision: each kernel
against a straightforward loop reference of the C++ kernel's semantics on generated inputs, the backwards as
the adjoints of the forwards, and the registration under ``torchvision::`` traced by torch.export."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.load import vision_ops

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)
FLT_MAX = np.finfo(np.float32).max


# --- references: loops over boxes, bins and samples, in float64 ---------------------------------------------

def nms_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep index order
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])
    suppressed, kept = set(), []
    for a, i in enumerate(order):
        if i in suppressed:
            continue
        kept.append(i)
        for j in order[a + 1:]:
            w = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            h = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = w * h
            with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: NaN, not above any threshold
                iou = inter / (area(boxes[i]) + area(boxes[j]) - inter)
            if iou > threshold:
                suppressed.add(j)
    return kept


def _bilinear(image: np.ndarray, y: float, x: float) -> np.ndarray:
    _, height, width = image.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(image.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * image[:, y0, x0] + (1 - ly) * lx * image[:, y0, x1]
            + ly * (1 - lx) * image[:, y1, x0] + ly * lx * image[:, y1, x1])


def roi_align_reference(features, rois, scale, pooled_h, pooled_w, sampling_ratio, aligned) -> np.ndarray:
    out = np.zeros((len(rois), features.shape[1], pooled_h, pooled_w))
    shift = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        x1, y1, x2, y2 = x1 * scale - shift, y1 * scale - shift, x2 * scale - shift, y2 * scale - shift
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / pooled_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pooled_w)
        count = max(grid_h * grid_w, 1)
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                total = np.zeros(features.shape[1])
                for iy in range(grid_h):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        total += _bilinear(features[int(b)], y, x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w)
                out[k, :, ph, pw] = total / count
    return out


def roi_pool_reference(features, rois, scale, pooled_h, pooled_w) -> tuple[np.ndarray, np.ndarray]:
    _, channels, height, width = features.shape
    out = np.zeros((len(rois), channels, pooled_h, pooled_w))
    argmax = np.full(out.shape, -1)
    c_round = lambda v: int(math.copysign(math.floor(abs(v) + 0.5), v))
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        x1, y1, x2, y2 = (c_round(v * scale) for v in (x1, y1, x2, y2))
        bin_h, bin_w = max(y2 - y1 + 1, 1) / pooled_h, max(x2 - x1 + 1, 1) / pooled_w
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                h0 = min(max(math.floor(ph * bin_h) + y1, 0), height)
                h1 = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), height)
                w0 = min(max(math.floor(pw * bin_w) + x1, 0), width)
                w1 = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), width)
                for c in range(channels):
                    best, where = (0.0 if h1 <= h0 or w1 <= w0 else -FLT_MAX), -1
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            if features[int(b), c, h, w] > best:
                                best, where = features[int(b), c, h, w], h * width + w
                    out[k, c, ph, pw], argmax[k, c, ph, pw] = best, where
    return out, argmax


# --- generated inputs: small maps, RoIs on and off the map, degenerate and reversed ------------------------

coordinate = st.one_of(st.integers(-3, 14).map(float), st.sampled_from([0.5, 2.5, 7.5, 9.0]),
                       st.floats(-3, 14, allow_nan=False, width=32))


@st.composite
def roi_case(draw, integer_features: bool = False):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    features = rng.integers(-3, 4, (n, c, h, w)).astype(np.float64) if integer_features else rng.normal(size=(n, c, h, w))
    boxes = draw(st.lists(st.tuples(st.integers(0, n - 1).map(float), coordinate, coordinate, coordinate, coordinate),
                          min_size=0, max_size=5))
    ordered = draw(st.booleans())  # x1 < x2 as torchvision asks, or as given (reversed, degenerate)
    rois = [(b, min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)) if ordered else (b, x1, y1, x2, y2)
            for b, x1, y1, x2, y2 in boxes]
    return features, np.array(rois, dtype=np.float64).reshape(-1, 5), {
        "scale": draw(st.sampled_from([1.0, 0.5, 0.25, 2.0])),
        "pooled": (draw(st.integers(1, 4)), draw(st.integers(1, 4)))}


# --- kernels against the references ----------------------------------------------------------------------

@PROPERTY
@given(boxes=st.lists(st.tuples(*[st.integers(0, 12)] * 4), max_size=30), seed=st.integers(0, 2**16),
       threshold=st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0]))
def test_nms_matches_greedy_reference(boxes, seed, threshold):
    b = np.array([(x, y, x + w, y + h) for x, y, w, h in boxes], dtype=np.float64).reshape(-1, 4)
    scores = np.random.default_rng(seed).permutation(len(b)) / max(len(b), 1)  # distinct; integer boxes tie IoUs
    kept = vision_ops.nms(torch.from_numpy(b), torch.from_numpy(scores), threshold)
    assert kept.dtype == torch.long and kept.tolist() == nms_reference(b, scores, threshold)


def test_nms_ties_and_float32():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 5, 5]], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.5, 0.1, 0.7])  # equal scores keep index order
    assert vision_ops.nms(boxes, scores, 0.5).tolist() == [1, 4, 3]  # the zero-area box overlaps nothing
    assert vision_ops.nms(boxes, scores, 1.0).tolist() == [1, 4, 0, 2, 3]  # IoU 1 is not above 1
    assert vision_ops.nms(boxes[:0], scores[:0], 0.5).tolist() == []


@PROPERTY
@given(case=roi_case(), sampling_ratio=st.sampled_from([-1, 0, 1, 2, 3]), aligned=st.booleans())
def test_roi_align_matches_loop_reference(case, sampling_ratio, aligned):
    features, rois, p = case
    got = vision_ops.roi_align(torch.from_numpy(features), torch.from_numpy(rois), p["scale"], *p["pooled"], sampling_ratio, aligned)
    want = roi_align_reference(features, rois, p["scale"], *p["pooled"], sampling_ratio, aligned)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)


def test_roi_align_float32_and_chunking(monkeypatch):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 8, 20, 24))
    rois = np.array([[0, 1.3, 2.2, 17.9, 12.1], [1, 0, 0, 23, 19], [1, 4.5, 4.5, 6.0, 30.0], [0, -5, -5, 2, 2]])
    want = roi_align_reference(features, rois, 0.5, 7, 7, 0, True)
    f32 = vision_ops.roi_align(torch.from_numpy(features).float(), torch.from_numpy(rois).float(), 0.5, 7, 7, 0, True)
    np.testing.assert_allclose(f32.numpy(), want, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(vision_ops, "CHUNK_ELEMENTS", 1)  # one RoI per chunk: the same result
    one_by_one = vision_ops.roi_align(torch.from_numpy(features), torch.from_numpy(rois), 0.5, 7, 7, 0, True)
    np.testing.assert_allclose(one_by_one.numpy(), want, rtol=1e-9, atol=1e-12)


def test_roi_align_samples_exactly_on_the_limits():
    """A sample at y == -1 or y == H still counts (clamped to the edge); one beyond does not."""
    features = np.arange(1, 17, dtype=np.float64).reshape(1, 1, 4, 4)
    rois = np.array([[0, 0, 3, 4, 5], [0, -2, -2, 0, 0], [0, 0, 3.01, 4, 5.01], [0, -2.01, -2.01, -0.01, -0.01]])
    got = vision_ops.roi_align(torch.from_numpy(features), torch.from_numpy(rois), 1.0, 1, 1, 1, False)
    want = roi_align_reference(features, rois, 1.0, 1, 1, 1, False)
    np.testing.assert_array_equal(got.numpy(), want)
    assert want[:, 0, 0, 0].tolist() == [15.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_reversed_and_empty_rois(aligned, sampling_ratio):
    """Malformed RoIs as the C++ kernels take them: RoIAlign's legacy mode and RoIPool force them to one pixel,
    aligned RoIAlign samples nothing for a negative extent."""
    features = np.random.default_rng(3).normal(size=(1, 2, 9, 9))
    rois = np.array([[0, 8, 8, 2, 2], [0, 5, 1, 1, 6], [0, 3, 3, 3, 3], [0, 7.5, 2, 7, 8], [0, 2, 2, 8, 8]], dtype=np.float64)
    x, r = torch.from_numpy(features), torch.from_numpy(rois)
    np.testing.assert_allclose(vision_ops.roi_align(x, r, 1.0, 2, 2, sampling_ratio, aligned).numpy(),
                               roi_align_reference(features, rois, 1.0, 2, 2, sampling_ratio, aligned), rtol=1e-9, atol=1e-12)
    out, argmax = vision_ops.roi_pool(x, r, 1.0, 2, 2)
    want, want_argmax = roi_pool_reference(features, rois, 1.0, 2, 2)
    np.testing.assert_array_equal(out.numpy(), want)
    np.testing.assert_array_equal(argmax.numpy(), want_argmax)


def test_roi_pool_non_finite_values():
    """As the C++ kernel: NaN never wins, and a window of values at or below -FLT_MAX gives -FLT_MAX, argmax -1."""
    features = np.array([[[[np.nan, 1.0], [-np.inf, -FLT_MAX]]]], dtype=np.float64)
    rois = np.array([[0, 0, 0, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=np.float64)
    out, argmax = vision_ops.roi_pool(torch.from_numpy(features), torch.from_numpy(rois), 1.0, 1, 1)
    want, want_argmax = roi_pool_reference(features, rois, 1.0, 1, 1)
    np.testing.assert_array_equal(out.numpy(), want)
    np.testing.assert_array_equal(argmax.numpy(), want_argmax)
    assert want_argmax.ravel().tolist() == [1, -1, -1] and want.ravel()[1] == -FLT_MAX


@PROPERTY
@given(case=roi_case(integer_features=True))  # integer features: ties, where the first maximum must win
def test_roi_pool_matches_loop_reference(case):
    features, rois, p = case
    out, argmax = vision_ops.roi_pool(torch.from_numpy(features), torch.from_numpy(rois), p["scale"], *p["pooled"])
    want, want_argmax = roi_pool_reference(features, rois, p["scale"], *p["pooled"])
    np.testing.assert_array_equal(out.numpy(), want)
    assert argmax.dtype == torch.int32
    np.testing.assert_array_equal(argmax.numpy(), want_argmax)


@PROPERTY
@given(case=roi_case(), sampling_ratio=st.sampled_from([-1, 2]), aligned=st.booleans())
def test_backwards_are_the_adjoints_of_the_forwards(case, sampling_ratio, aligned):
    """Both forwards are linear in the input (RoIPool for its argmax): <f(x), g> == <x, f'(g)>."""
    features, rois, p = case
    x, r = torch.from_numpy(features), torch.from_numpy(rois)
    n, c, h, w = x.shape
    out = vision_ops.roi_align(x, r, p["scale"], *p["pooled"], sampling_ratio, aligned)
    g = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    back = vision_ops.roi_align_backward(g, r, p["scale"], *p["pooled"], n, c, h, w, sampling_ratio, aligned)
    torch.testing.assert_close((out * g).sum(), (x * back).sum(), rtol=1e-9, atol=1e-9)
    pooled, argmax = vision_ops.roi_pool(x, r, p["scale"], *p["pooled"])
    back = vision_ops.roi_pool_backward(g, r, argmax, p["scale"], *p["pooled"], n, c, h, w)
    torch.testing.assert_close((pooled * g).sum(), (x * back).sum(), rtol=1e-9, atol=1e-9)


# --- registration under torchvision:: (no torchvision needed) ---------------------------------------------

class _DetectionHead(torch.nn.Module):
    def forward(self, features, rois, boxes, scores):
        pooled = torch.ops.torchvision.roi_align(features, rois, 0.25, 3, 3, 2, True)
        maxed, _ = torch.ops.torchvision.roi_pool(features, rois, 0.25, 2, 2)
        return pooled, maxed, torch.ops.torchvision.nms(boxes, scores, 0.5)


def test_registered_operators_run_and_trace_with_torch_export():
    assert vision_ops.register(fakes=True) and vision_ops.registered()
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 4, 16, 16, generator=gen)
    rois = torch.tensor([[0, 4.0, 4, 40, 36], [1, 0, 0, 63, 63], [1, 10, 20, 30, 22]])
    boxes = torch.rand(40, 4, generator=gen) * 30
    boxes[:, 2:] += boxes[:, :2]
    scores = torch.rand(40, generator=gen)
    eager = _DetectionHead()(features, rois, boxes, scores)
    torch.testing.assert_close(eager[0], vision_ops.roi_align(features, rois, 0.25, 3, 3, 2, True))
    ep = torch.export.export(_DetectionHead(), (features, rois, boxes, scores))
    targets = {str(n.target) for n in ep.graph.nodes}
    assert {"torchvision.roi_align.default", "torchvision.roi_pool.default", "torchvision.nms.default"} <= targets
    for got, want in zip(ep.module()(features, rois, boxes, scores), eager, strict=True):
        torch.testing.assert_close(got, want)


def test_operators_without_a_kernel_fail_by_name():
    vision_ops.register(fakes=True)
    x = torch.zeros(1, 4, 4, 4)
    with pytest.raises(NotImplementedError, match="torchvision::ps_roi_align has no plain-torch fallback"):
        torch.ops.torchvision.ps_roi_align(x, torch.zeros(1, 5), 1.0, 2, 2, 1)
    assert torch.ops.torchvision._cuda_version() == -1
