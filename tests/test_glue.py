"""The glue ops: the NumPy form is the definition; the torch form (what a fused graph runs) must equal it, and
a link that does not connect is one error naming both ends."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.glue import OPS, GlueError, Value, crop_box, get_op, infer, nearest_indices, resolve_params, run_numpy, run_torch

RNG = np.random.default_rng(0)


def _both(op: str, inputs: dict, params: dict, kinds: dict) -> tuple[dict, dict]:
    a = run_numpy(OPS[op], inputs, params, kinds)
    b = run_torch(OPS[op], {k: torch.from_numpy(v) for k, v in inputs.items()}, params, kinds)
    return a, {k: v.numpy() for k, v in b.items()}


@settings(max_examples=25, deadline=None)
@given(st.integers(5, 60), st.integers(5, 60), st.integers(4, 90), st.integers(4, 90), st.sampled_from(["image", "scores", "mask", "labels"]))
def test_resize_torch_equals_numpy(h, w, oh, ow, kind):
    x = {"image": RNG.uniform(0, 255, (2, h, w, 3)), "scores": RNG.normal(size=(2, 3, h, w)),
         "mask": (RNG.uniform(size=(2, h, w)) > 0.5), "labels": RNG.integers(0, 5, (2, h, w))}[kind]
    x = x.astype(np.int32 if kind == "labels" else np.float32)
    a, b = _both("resize", {"x": x}, {"size": [oh, ow]}, {"x": kind})
    if kind in ("mask", "labels"):
        np.testing.assert_array_equal(a[""], b[""])  # nearest: the same source pixel on both
    else:  # bilinear, half-pixel centres: cv2 and torch agree to float rounding (0–255 pixels)
        np.testing.assert_allclose(a[""], b[""], atol=2e-3 if kind == "image" else 1e-4)
    want = {"image": (2, oh, ow, 3), "scores": (2, 3, oh, ow), "mask": (2, oh, ow), "labels": (2, oh, ow)}[kind]
    assert a[""].shape == b[""].shape == want


def test_nearest_indices_pick_the_pixel_holding_each_centre():
    rows, cols = nearest_indices((4, 6), (2, 3))
    assert rows.tolist() == [1, 3] and cols.tolist() == [1, 3, 5]
    rows, _ = nearest_indices((2, 2), (4, 4))
    assert rows.tolist() == [0, 0, 1, 1]


def test_region_stats_are_area_of_the_skin_and_mean_luminance():
    labels = np.zeros((1, 4, 4), np.int32)
    labels[0, 0, :2] = 1  # two pixels of class 1, one of them outside the skin
    labels[0, 3, 3] = 2
    image = np.zeros((1, 4, 4, 3), np.float32)
    image[0, 0, 0] = [100, 100, 100]
    image[0, 0, 1] = [200, 0, 0]
    within = np.ones((1, 4, 4), np.float32)
    within[0, 0, 1] = 0.0
    params = resolve_params(OPS["region_stats"], {}, "test")
    infer(OPS["region_stats"], {"labels": Value("labels", (4, 4), ("bg", "a", "b")), "image": Value("image", (4, 4, 3)),
                                "within": Value("mask", (4, 4))}, params, "test")
    a, b = _both("region_stats", {"labels": labels, "image": image, "within": within}, params, {})
    np.testing.assert_allclose(a["area"], [[1 / 15, 1 / 15]], rtol=1e-6)
    np.testing.assert_allclose(a["intensity"], [[100.0, 0.0]], rtol=1e-6)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-4)


def test_count_regions_counts_8_connected_regions_of_min_size():
    labels = np.zeros((1, 8, 8), np.int32)
    labels[0, 0:2, 0:2] = 1  # 4 px
    labels[0, 2, 2] = 1  # touches the first diagonally: the same region
    labels[0, 6:8, 6:8] = 1  # a second region
    labels[0, 4, 0] = 1  # 1 px: below min_pixels
    out = run_numpy(OPS["count_regions"], {"labels": labels}, {"_indices": [1], "min_pixels": 2}, {})[""]
    assert out.tolist() == [[2.0]]


def test_apply_mask_argmax_class_mask_coverage_threshold_match():
    scores = RNG.normal(size=(2, 3, 9, 7)).astype(np.float32)
    a, b = _both("argmax", {"x": scores}, {}, {})
    np.testing.assert_array_equal(a[""], b[""])
    a, b = _both("class_mask", {"x": a[""].astype(np.int64)}, {"_index": 2}, {})
    np.testing.assert_array_equal(a[""], b[""])
    mask = a[""]
    image = RNG.uniform(0, 255, (2, 9, 7, 3)).astype(np.float32)
    a, b = _both("apply_mask", {"image": image, "mask": mask}, {"fill": 10}, {})
    np.testing.assert_allclose(a[""], b[""], rtol=1e-6)
    assert np.all(a[""][mask == 0] == 10) and np.array_equal(a[""][mask == 1], image[mask == 1])
    a, b = _both("coverage", {"x": mask}, {}, {})
    np.testing.assert_allclose(a[""][:, 0], mask.reshape(2, -1).mean(1), rtol=1e-6)
    a, b = _both("threshold", {"x": scores[:, :1]}, {"value": 0.5}, {})
    np.testing.assert_array_equal(a[""], b[""])
    a, b = _both("softmax", {"x": scores}, {}, {})
    np.testing.assert_allclose(a[""], b[""], rtol=1e-5)


def test_crop_box_widens_by_margin_and_keeps_an_empty_mask_whole():
    mask = np.zeros((20, 30), np.float32)
    mask[5:10, 10:20] = 1
    assert crop_box(mask, 0.0) == (10, 5, 20, 10)
    assert crop_box(mask, 0.1) == (9, 4, 21, 11)
    assert crop_box(np.zeros((20, 30)), 0.1) == (0, 0, 30, 20)
    assert get_op("crop_to_mask").fusable is False and get_op("count_regions").fusable is False


def test_a_link_of_the_wrong_kind_names_the_port_and_the_fix():
    with pytest.raises(GlueError, match=r"step 'g'.*apply_mask's input 'mask' takes mask, but gets a scores") as err:
        infer(OPS["apply_mask"], {"image": Value("image", (8, 8, 3)), "mask": Value("scores", (2, 8, 8), ("a", "b"))},
              {"fill": 0}, "step 'g'")
    assert "argmax then class_mask" in err.value.fix
    with pytest.raises(GlueError, match=r"differ in size \(image \[8, 8\], mask \[4, 4\]\)"):
        infer(OPS["apply_mask"], {"image": Value("image", (8, 8, 3)), "mask": Value("mask", (4, 4))}, {"fill": 0}, "s")
    with pytest.raises(GlueError, match="no class 'skin' in a, b"):
        infer(OPS["class_mask"], {"x": Value("labels", (4, 4), ("a", "b"))}, {"class": "skin"}, "s")
    with pytest.raises(GlueError, match="has no parameter 'fil'"):
        resolve_params(OPS["apply_mask"], {"fil": 0}, "s")
    with pytest.raises(GlueError, match="unknown glue op 'blur'"):
        get_op("blur")


def test_torch_forms_trace_with_static_sizes():
    """Converters trace the fused graph (torch.jit.trace gives shapes as tensors): the ops must still build."""
    def chain(x):
        mask = run_torch(OPS["threshold"], {"x": x[..., 0]}, {"value": 100}, {"x": "mask"})[""]
        small = run_torch(OPS["resize"], {"x": mask}, {"size": [19, 23]}, {"x": "mask"})[""]
        picture = run_torch(OPS["resize"], {"x": x}, {"size": [19, 23]}, {"x": "image"})[""]
        return picture * small.unsqueeze(-1)

    x = torch.rand(1, 40, 30, 3) * 255
    traced = torch.jit.trace(chain, x)
    np.testing.assert_allclose(traced(x).numpy(), chain(x).numpy())


def test_region_stats_stay_finite_in_float16():
    """A float16 graph must not sum a picture's luminance (192 × 192 × 255 passes float16's 65504)."""
    labels = RNG.integers(0, 3, (1, 192, 192)).astype(np.int64)
    image = RNG.uniform(100, 255, (1, 192, 192, 3)).astype(np.float32)
    within = np.ones((1, 192, 192), np.float32)
    params = {"_indices": [1, 2]}
    want = run_numpy(OPS["region_stats"], {"labels": labels, "image": image, "within": within}, params, {})
    got = run_torch(OPS["region_stats"], {"labels": torch.from_numpy(labels), "image": torch.from_numpy(image).half(),
                                          "within": torch.from_numpy(within).half()}, params, {})
    for k in want:
        assert torch.isfinite(got[k]).all()
        np.testing.assert_allclose(got[k].float().numpy(), want[k], rtol=2e-2)


def test_to_image_scales_a_model_picture_to_pixels_channel_last():
    x = np.array([[[[0.0, 0.5]], [[1.0, 1.2]], [[-0.1, 0.25]]]], np.float32)  # 1 x 3 x 1 x 2
    params = resolve_params(OPS["to_image"], {}, "t")
    assert infer(OPS["to_image"], {"x": Value("map", (3, 1, 2))}, params, "t")[""] == Value("image", (1, 2, 3))
    a, b = _both("to_image", {"x": x}, params, {"x": "map"})
    np.testing.assert_array_equal(a[""], [[[[0.0, 255.0, 0.0], [127.5, 255.0, 63.75]]]])
    np.testing.assert_array_equal(b[""], a[""])
    with pytest.raises(GlueError, match=r"three-channel map .* \[2, 4, 4\]"):
        infer(OPS["to_image"], {"x": Value("map", (2, 4, 4))}, params, "t")


def _detections(boxes, scores, classes, count, m=4):
    k = len(scores)
    return {"boxes": np.array([boxes], np.float32).reshape(1, k, 4), "scores": np.array([scores], np.float32),
            "classes": np.array([classes], np.float32), "masks": np.ones((1, k, m, m), np.float32),
            "count": np.array([[count]], np.float32)}


def test_paste_instances_labels_each_pixel_with_the_best_scoring_valid_detection():
    op = OPS["paste_instances"]
    params = resolve_params(op, {"size": [4, 4], "classes": ["a", "b"]}, "t")
    values = {"boxes": Value("map", (1, 3, 4)), "scores": Value("vector", (3,)), "classes": Value("vector", (3,)),
              "masks": Value("map", (3, 4, 4)), "count": Value("vector", (1,))}
    assert infer(op, values, params, "t")[""] == Value("labels", (4, 4), ("none", "a", "b"))
    # Detection 0 (class a) covers the top-left quarter; 1 (class b, lower score) the right half; 2 is padding
    # past count: its whole-picture box draws nothing.
    inputs = _detections([[0, 0, 0.5, 0.5], [0.25, 0, 1, 1], [0, 0, 1, 1]], [0.9, 0.8, 0.7], [0, 1, 0], 2)
    out = run_numpy(op, inputs, params, {})[""]
    np.testing.assert_array_equal(out[0], [[1, 1, 2, 2], [1, 1, 2, 2], [0, 2, 2, 2], [0, 2, 2, 2]])
    # A mask below the threshold draws nothing.
    inputs["masks"][0, 0] = 0.4
    assert (run_numpy(op, inputs, params, {})[""][0] == 1).sum() == 0


def test_paste_instances_refuses_outputs_that_are_not_one_detectors():
    op = OPS["paste_instances"]
    params = resolve_params(op, {"size": [4, 4], "classes": ["a"]}, "t")
    values = {"boxes": Value("map", (1, 3, 4)), "scores": Value("vector", (3,)), "classes": Value("vector", (3,)),
              "masks": Value("map", (5, 4, 4)), "count": Value("vector", (1,))}
    with pytest.raises(GlueError, match=r"masks has shape \[5, 4, 4\], but 3 detections \(scores\) need \[3, M, M\]"):
        infer(op, values, params, "t")
    with pytest.raises(GlueError, match="classes lists the detector's class names"):
        infer(op, {**values, "masks": Value("map", (3, 4, 4))}, {**params, "classes": "a"}, "t")
