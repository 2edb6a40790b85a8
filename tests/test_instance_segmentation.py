"""The instance segmentation task: pasting masks as an app must, instances matched by class and IoU (never by
index), image-averaged AP and the other metrics on hand-built cases with values worked out by hand, its data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.data.synthetic import FACE_REGIONS
from toolkit.errors import BadInputError, DataError
from toolkit.glue import paste_masks
from toolkit.registry import ModelSpec, OutputSpec
from toolkit.tasks import get_task
from toolkit.tasks.data import load_folder, task_data, write_folder
from toolkit.tasks.instance_segmentation import OUTPUTS, TargetBatches, instances
from toolkit.verify.stats import Bootstrap, compare

TASK = get_task("instance_segmentation")
K, M, S = 4, 4, 8  # detections per image, mask side, evaluation resolution (S x S)
LABELS = ("a", "b", "c")
AP_TP_FP_TP = (51 + 50 * 2 / 3) / 101  # two truths, ranked hit, miss, hit: precision 1 to recall 0.5, then 2/3


def _spec(labels=FACE_REGIONS, output_size=(160, 160)) -> ModelSpec:
    return ModelSpec(name="toy_regions", task="instance_segmentation", architecture="toy", factory=lambda: None, description="toy",
                     input_size=(320, 320), output_size=output_size, outputs=tuple(OutputSpec(n, n) for n in OUTPUTS),
                     tolerances={}, labels=labels)


def _box(rows: tuple[int, int], cols: tuple[int, int]) -> list[float]:
    """Normalized box of pixel rows/cols [start, stop) on the S x S picture."""
    return [cols[0] / S, rows[0] / S, cols[1] / S, rows[1] / S]


def _outputs(images: list[list[tuple]]) -> dict[str, np.ndarray]:
    """Model outputs from per-image lists of (rows, cols, class, score): a full mask of ones on each box, which
    pastes to exactly the box's pixels; entries past the list are zero padding."""
    n = len(images)
    out = {"boxes": np.zeros((n, K, 4), np.float32), "scores": np.zeros((n, K), np.float32),
           "classes": np.zeros((n, K), np.float32), "masks": np.zeros((n, K, M, M), np.float32), "count": np.zeros((n, 1), np.float32)}
    for i, dets in enumerate(images):
        for k, (rows, cols, cls, score) in enumerate(dets):
            out["boxes"][i, k], out["classes"][i, k], out["scores"][i, k] = _box(rows, cols), cls, score
            out["masks"][i, k] = 1.0
        out["count"][i] = len(dets)
    return out


def _truth(images: list[list[tuple]]) -> np.ndarray:
    """Ground truth from per-image lists of (rows, cols, class) rectangles at S x S."""
    recs = []
    for inst in images:
        masks = np.zeros((len(inst), S, S), np.uint8)
        for g, (rows, cols, _) in enumerate(inst):
            masks[g, rows[0]:rows[1], cols[0]:cols[1]] = 1
        recs.append(instances(masks, np.array([c for *_, c in inst], np.int32)))
    return TASK.stack_targets(recs)


def _metrics(out: dict, targets: np.ndarray, ref: dict | None = None) -> dict[str, float]:
    spec = _spec(LABELS)
    o = TASK.read(out, spec)
    r = o if ref is None else TASK.read(ref, spec)
    stats = TASK.per_image(o, targets, r, labels=LABELS)
    return {k: float(v[0]) for k, v in TASK.aggregate({k: v.sum(0, keepdims=True) for k, v in stats.items()}, labels=LABELS).items()}


# Three images: (A) two truths, detections hit / wrong place / hit; (B) one truth, one detection at mask IoU 0.5
# exactly; (C) nothing and nothing.
TOP, BOTTOM, TOP_RIGHT = ((0, 4), (0, 4)), ((4, 8), (4, 8)), ((0, 4), (4, 8))
TRUTH = [[(*TOP, 0), (*BOTTOM, 1)], [((0, 4), (0, 2), 2)], []]
DETS = [[(*TOP, 0, 0.9), (*TOP_RIGHT, 1, 0.8), (*BOTTOM, 1, 0.7)], [(*TOP, 2, 0.6)], []]


# --- paste_masks ---------------------------------------------------------------------------------------------

def _paste_loop(box, mask, h, w) -> np.ndarray:
    """paste_masks' definition, word for word, one pixel at a time."""
    m = mask.shape[0]
    x1, y1, x2, y2 = (float(v) for v in box)

    def taps(centre, lo, hi):
        if not lo <= centre < hi:
            return []
        u = min(max((centre - lo) / (hi - lo) * m - 0.5, 0.0), m - 1)
        j = int(np.floor(u))
        return [(j, 1 - (u - j)), (min(j + 1, m - 1), u - j)]

    out = np.zeros((h, w))
    for i in range(h):
        for jx in range(w):
            ty, tx = taps((i + 0.5) / h, y1, y2), taps((jx + 0.5) / w, x1, x2)
            out[i, jx] = sum(wy * wx * mask[a, b] for a, wy in ty for b, wx in tx)
    return out


def test_paste_masks_matches_its_definition_pixel_by_pixel():
    rng = np.random.default_rng(0)
    corners = rng.uniform(-0.2, 1.2, (6, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)  # [x1, y1, x2, y2], some past the picture
    masks = rng.uniform(0, 1, (6, 5, 5)).astype(np.float32)
    got = paste_masks(boxes, masks, 13, 17)
    assert got.shape == (6, 13, 17) and got.dtype == np.float32
    for k in range(6):
        np.testing.assert_allclose(got[k], _paste_loop(boxes[k], masks[k], 13, 17), atol=1e-6)


def test_paste_masks_full_box_constant_mask_and_degenerate_box():
    full = paste_masks(np.array([[0.0, 0.0, 1.0, 1.0]]), np.full((1, 7, 7), 0.75, np.float32), 9, 11)
    np.testing.assert_allclose(full, 0.75, atol=1e-7)
    half = paste_masks(np.array([[0.0, 0.0, 0.5, 1.0]]), np.ones((1, 3, 3), np.float32), 4, 8)
    np.testing.assert_array_equal(half[0], np.repeat([[1.0] * 4 + [0.0] * 4], 4, axis=0))
    flat = paste_masks(np.array([[0.2, 0.5, 0.8, 0.5], [0.6, 0.1, 0.3, 0.9]]), np.ones((2, 4, 4), np.float32), 10, 10)
    assert not flat.any()


# --- outputs ---------------------------------------------------------------------------------------------------

def test_check_outputs_names_a_missing_or_misshapen_output():
    spec, out = _spec(), _outputs(DETS)
    TASK.check_outputs(spec, out)
    with pytest.raises(BadInputError, match=r"reads output 'masks' as per-detection mask probabilities of shape \[K, M, M\] per image, "
                                            r"but the model has no output of that name") as err:
        TASK.check_outputs(spec, {k: v for k, v in out.items() if k != "masks"})
    assert "boxes, scores, classes, masks, count" in err.value.fix
    with pytest.raises(BadInputError, match=r"'masks' .* of shape \[K, M, M\] per image \(K = 4\), but it has shape \[4, 16\]"):
        TASK.check_outputs(spec, {**out, "masks": out["masks"].reshape(3, K, -1)})
    with pytest.raises(BadInputError, match=r"'scores' .* \(K = 4\), but it has shape \[5\]"):
        TASK.check_outputs(spec, {**out, "scores": np.zeros((3, 5), np.float32)})


def test_read_gives_a_structured_array_that_slices_like_the_outputs():
    got = TASK.read(_outputs(DETS), _spec())
    assert len(got) == 3 and got["masks"].shape == (3, K, M, M) and got["count"].tolist() == [3, 1, 0]
    assert got["classes"].dtype == np.int32 and got[np.array([2, 0])]["count"].tolist() == [0, 3]


# --- metrics ---------------------------------------------------------------------------------------------------

def test_hand_built_metrics():
    got = _metrics(_outputs(DETS), _truth(TRUTH))
    # A: AP_TP_FP_TP at every threshold (IoU 1); B: IoU 0.5 matches at 0.5 only; C: nothing to find, nothing found.
    assert got["mask_ap50"] == pytest.approx((AP_TP_FP_TP + 1 + 1) / 3)
    assert got["mask_ap"] == pytest.approx((AP_TP_FP_TP + 0.1 + 1) / 3)
    assert got["box_ap50"] == pytest.approx(got["mask_ap50"]) and got["box_ap"] == pytest.approx(got["mask_ap"])
    assert got["mask_iou"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert got["count_error"] == pytest.approx(1 / 3)  # 3 detections for 2 truths in A
    assert [got[f"recall.{c}"] for c in LABELS] == [1.0, 1.0, 1.0]
    assert got["agreement"] == 1.0


def test_perfect_predictions_score_one_and_an_unmatched_truth_counts():
    truth = _truth(TRUTH)
    perfect = _metrics(_outputs([[(*TOP, 0, 0.9), (*BOTTOM, 1, 0.8)], [((0, 4), (0, 2), 2, 0.5)], []]), truth)
    assert all(perfect[k] == 1.0 for k in ("mask_ap50", "mask_ap", "box_ap50", "box_ap", "mask_iou", "agreement"))
    assert perfect["count_error"] == 0.0
    # Nothing found in A: its AP is 0, and an extra detection in C (no truth) makes C's 0 too.
    missed = _metrics(_outputs([[], [((0, 4), (0, 2), 2, 0.5)], [(*TOP, 0, 0.3)]]), truth)
    assert missed["mask_ap"] == pytest.approx(1 / 3) and missed["count_error"] == pytest.approx(3 / 3)
    assert missed["recall.a"] == 0.0 and missed["recall.c"] == 1.0


def test_a_detection_of_the_wrong_class_does_not_match():
    got = _metrics(_outputs([[(*TOP, 1, 0.9)]]), _truth([[(*TOP, 0)]]))
    assert got["mask_ap50"] == 0.0 and got["box_ap50"] == 0.0 and got["recall.a"] == 0.0
    assert np.isnan(got["mask_iou"])  # no matched pair: no value, not zero


def test_greedy_matching_takes_the_best_iou_in_score_order():
    # Two overlapping truths of one class. The higher-scored detection is the second truth exactly and overlaps the
    # first at IoU 0.6: it takes the one it overlaps most, which leaves the first to the other detection. Taking the
    # first eligible truth instead would pair both at IoU 0.6 and lose every threshold above it.
    truth = _truth([[((0, 4), (0, 4), 0), ((0, 4), (1, 5), 0)]])
    got = _metrics(_outputs([[((0, 4), (1, 5), 0, 0.9), ((0, 4), (0, 4), 0, 0.8)]]), truth)
    assert got["mask_ap"] == 1.0 and got["box_ap"] == 1.0 and got["mask_iou"] == 1.0


def test_ap_over_thresholds_counts_a_partial_match_where_it_holds():
    # The first detection overlaps its truth at IoU 2/3: a hit up to t = 0.65, a miss (ranked first) above.
    truth = _truth([[((0, 4), (0, 4), 0), ((0, 4), (4, 8), 0)]])
    got = _metrics(_outputs([[((0, 4), (2, 8), 0, 0.9), ((0, 4), (0, 4), 0, 0.8)]]), truth)
    assert got["mask_ap50"] == 1.0 and got["mask_iou"] == pytest.approx((2 / 3 + 1) / 2)
    assert got["mask_ap"] == pytest.approx((4 * 1.0 + 6 * 51 * 0.5 / 101) / 10)  # above 0.65: miss then hit, precision 1/2


def test_agreement_with_float_matches_instances_by_class_and_mask():
    ref = _outputs(DETS)
    out = _outputs([[(*TOP, 0, 0.9), (*TOP_RIGHT, 1, 0.8), (*BOTTOM, 2, 0.7)], [(*TOP, 2, 0.6)], []])
    truth = _truth(TRUTH)
    # A: 2 of 3 matched (the class changed), 6 instances; B: 1 of 1, 2 instances; C: both empty, one agreed pair.
    want = 2 * (2 + 1 + 1) / (6 + 2 + 2)
    assert _metrics(out, truth, ref)["agreement"] == pytest.approx(want)
    assert TASK.agreement(TASK.read(ref, _spec(LABELS)), TASK.read(out, _spec(LABELS))) == pytest.approx(want)


def test_targets_from_float_make_float_perfect():
    rng = np.random.default_rng(1)
    n = 5
    corners = np.sort(rng.uniform(0, 1, (n, K, 2, 2)), axis=2)
    ref = {"boxes": np.concatenate([corners[:, :, 0], corners[:, :, 1]], -1).astype(np.float32),
           "scores": np.sort(rng.uniform(0, 1, (n, K)), axis=1)[:, ::-1].astype(np.float32),
           "classes": rng.integers(0, 3, (n, K)).astype(np.float32), "masks": rng.uniform(0, 1, (n, K, M, M)).astype(np.float32),
           "count": np.array([[4], [3], [0], [1], [2]], np.float32)}
    r = TASK.read(ref, _spec(LABELS))
    truth = TASK.targets_from(r)
    assert truth["masks"].shape == (n, K, 4 * M, 4 * M) and (truth["classes"] >= 0).sum(1).tolist() == [4, 3, 0, 1, 2]
    got = _metrics(ref, truth)
    assert got["mask_ap50"] == 1.0 and got["mask_ap"] == 1.0 and got["box_ap"] == 1.0 and got["count_error"] == 0.0


def _reference_ap(iou: np.ndarray, det_cls, scores, gt_cls, t: float) -> float:
    """One image's AP the slow way: COCO's greedy loop and its 101-point interpolation (ties to the first truth)."""
    if len(gt_cls) == 0:
        return float(len(scores) == 0)
    taken, hits = set(), []
    for d in np.argsort(-np.asarray(scores), kind="mergesort"):
        best, best_iou = None, t
        for g in range(len(gt_cls)):
            if g not in taken and gt_cls[g] == det_cls[d] and iou[d, g] >= best_iou and (best is None or iou[d, g] > best_iou):
                best, best_iou = g, iou[d, g]
        if best is not None:
            taken.add(best)
        hits.append(best is not None)
    tp = np.cumsum(hits)
    fp = np.cumsum(np.logical_not(hits))
    rc, pr = tp / len(gt_cls), list(tp / np.maximum(tp + fp, 1))
    for i in range(len(pr) - 1, 0, -1):
        pr[i - 1] = max(pr[i - 1], pr[i])
    inds = np.searchsorted(rc, np.linspace(0, 1, 101), side="left")
    return float(np.mean([pr[i] if i < len(pr) else 0.0 for i in inds]))


def test_ap_equals_the_slow_coco_loop_on_random_images():
    rng = np.random.default_rng(3)
    images_t, images_d = [], []
    for _ in range(40):
        rect = lambda: (tuple(np.sort(rng.choice(S + 1, 2, replace=False))), tuple(np.sort(rng.choice(S + 1, 2, replace=False))))  # noqa: E731
        images_t.append([(*rect(), int(rng.integers(0, 2))) for _ in range(rng.integers(0, 3))])
        scores = rng.permutation(np.arange(1, 10))[: rng.integers(0, K + 1)] / 10
        images_d.append([(*rect(), int(rng.integers(0, 2)), sc) for sc in scores])
    out, truth = _outputs(images_d), _truth(images_t)
    spec = _spec(LABELS)
    o = TASK.read(out, spec)
    stats = TASK.per_image(o, truth, o, labels=LABELS)
    for i in range(40):
        n, g = int(o["count"][i]), int((truth["classes"][i] >= 0).sum())
        pasted = (paste_masks(o["boxes"][i, :n], o["masks"][i, :n], S, S) >= 0.5).reshape(n, S * S).astype(float)
        gm = truth["masks"][i, :g].reshape(g, S * S).astype(float)
        inter = pasted @ gm.T
        union = pasted.sum(1)[:, None] + gm.sum(1)[None] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 1.0)
        for j, t in enumerate(np.linspace(0.5, 0.95, 10)):
            want = _reference_ap(iou, o["classes"][i, :n], o["scores"][i, :n], truth["classes"][i, :g], t)
            assert stats["mask_ap"][i, j] == pytest.approx(want, abs=1e-12), (i, t)


@settings(max_examples=30, deadline=None)
@given(st.permutations(range(K)), st.floats(0, 1), st.integers(0, 2))
def test_metrics_ignore_detection_order_and_padding(perm, junk_score, junk_class):
    # The same detections listed in another order (distinct scores: the task ranks them itself), and padding
    # past count filled with a box, a score and a class: nothing changes.
    truth = _truth(TRUTH)
    base = _outputs(DETS)
    moved = {k: v.copy() for k, v in base.items()}
    valid = int(base["count"][0, 0])
    order = [p for p in perm if p < valid] + list(range(valid, K))
    for name in ("boxes", "scores", "classes", "masks"):
        moved[name][0] = base[name][0][order]
    moved["boxes"][:, valid:], moved["masks"][:, valid:] = _box(*TOP), 1.0
    moved["scores"][:, valid:], moved["classes"][:, valid:] = junk_score, junk_class
    spec = _spec(LABELS)
    a = TASK.per_image(TASK.read(base, spec), truth, TASK.read(base, spec), labels=LABELS)
    b = TASK.per_image(TASK.read(moved, spec), truth, TASK.read(base, spec), labels=LABELS)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_quick_metrics_and_report_through_compare():
    spec, truth = _spec(LABELS), _truth(TRUTH)
    out, ref = TASK.read(_outputs(DETS), spec), TASK.read(_outputs([[(*TOP, 0, 0.9), (*BOTTOM, 1, 0.8)], [], [(*TOP, 0, 0.3)]]), spec)
    quick = TASK.quick_metrics(out, truth, num_classes=3)
    assert set(quick) == {"mask_ap50", "mask_ap", "box_ap50", "box_ap", "mask_iou", "count_error"}
    assert quick["mask_ap50"] == pytest.approx((AP_TP_FP_TP + 2) / 3)
    res = compare("instance_segmentation", out, ref, truth, Bootstrap.draw(3, replicates=20), labels=LABELS)
    rows = res["metrics"]
    assert rows["recall.c"]["float"]["value"] == 0.0 and rows["recall.c"]["artifact"]["value"] == 1.0
    assert rows["count_error"]["drop"]["value"] == pytest.approx(1 / 3 - 2 / 3)  # fewer count errors than float: a negative drop
    lines = TASK.report_lines(res, labels=LABELS)
    assert lines[0] == "| class | float | artifact |" and lines[-1] == "| c | 0.000 | 1.000 |"


# --- data ------------------------------------------------------------------------------------------------------

def test_synthetic_regions_are_five_instances_at_the_evaluation_size():
    spec = _spec()
    assert TASK.synthetic_problem(spec) is None
    assert "forehead, cheek_left" in TASK.synthetic_problem(_spec(LABELS))
    data = task_data(spec, 3, split="test")
    t = data.targets
    assert data.inputs.shape == (3, 320, 320, 3) and t["masks"].shape == (3, 5, 160, 160)
    assert (t["classes"] == np.arange(5)).all() and (t["boxes"] >= 0).all() and (t["boxes"] <= 1).all()
    assert (t["boxes"][..., 2:] > t["boxes"][..., :2]).all() and t["masks"].reshape(3, 5, -1).any(2).all()
    assert (t["masks"].sum(1) <= 1).all()  # regions do not overlap
    with pytest.raises(DataError, match="face regions"):
        TASK.synthetic_target(None, _spec(LABELS))


def test_folder_instance_maps_round_trip_and_refuse_bad_files(tmp_path):
    spec = _spec()
    data = task_data(spec, 2, split="test")
    write_folder(data, spec, tmp_path)
    back = load_folder(spec, tmp_path)
    for field in ("classes", "masks", "boxes"):
        np.testing.assert_array_equal(back.targets[field], data.targets[field], err_msg=field)
    (tmp_path / "instances" / "img_00001.png").unlink()
    with pytest.raises(DataError, match=r"line 3: missing or unreadable instance map .*img_00001.png") as err:
        load_folder(spec, tmp_path)
    assert "1 + class index" in err.value.fix


def test_folder_writes_more_than_the_instance_limit_are_refused(tmp_path):
    import cv2

    spec = _spec(output_size=(64, 64))
    specks = np.zeros((64, 64), np.uint8)
    specks[::4, ::4] = 1  # 256 separate one-pixel forehead instances
    (tmp_path / "instances").mkdir()
    cv2.imwrite(str(tmp_path / "img.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "instances" / "img.png"), specks)
    (tmp_path / "labels.csv").write_text("file,ita,group\nimg.png,40.0,light\n")
    with pytest.raises(DataError, match="holds 256 instances, more than 32"):
        load_folder(spec, tmp_path)


# --- training --------------------------------------------------------------------------------------------------

def test_training_is_the_models_own_loss_and_targets_batch_as_tensors():
    import torch

    class Detector:
        def __call__(self, x):
            return None

        def detection_loss(self, out, targets):
            return torch.tensor(0.0)

    model = Detector()
    assert TASK.loss(_spec(), model) == model.detection_loss
    with pytest.raises(BadInputError, match="trains only models that define detection_loss"):
        TASK.loss(_spec(), object())
    # the loss learns from training_outputs where the model has it; forward stays the post-processed graph
    assert TASK.training_outputs(model, 1) is None and TASK.training_outputs(lambda x: x + 1, 1) == 2
    model.training_outputs = lambda x: {"raw": x}
    assert TASK.training_outputs(model, 1) == {"raw": 1}
    batches = TASK.targets_tensor(_truth(TRUTH))
    assert isinstance(batches, TargetBatches) and len(batches) == 3
    got = batches[np.array([1, 0])]
    assert got["boxes"].shape == (2, 2, 4) and got["boxes"].dtype == torch.float32
    assert got["classes"].tolist() == [[2, -1], [0, 1]] and got["masks"].dtype == torch.uint8 and got["masks"].shape == (2, 2, S, S)


def test_a_model_that_finds_nothing_scores_zero_not_an_error():
    # An 8-bit graph can lose every detection: every metric is defined, AP and agreement are 0.
    spec, task = _spec(), TASK
    data = task_data(spec, 2, split="test")
    k, m = 10, 28
    empty = {"boxes": np.zeros((2, k, 4), np.float32), "scores": np.zeros((2, k), np.float32),
             "classes": np.zeros((2, k), np.float32), "masks": np.zeros((2, k, m, m), np.float32), "count": np.zeros((2, 1), np.float32)}
    o = task.read(empty, spec)
    got = task.quick_metrics(o, data.targets)
    assert got["mask_ap"] == 0.0 and got["box_ap50"] == 0.0 and got["count_error"] == 5.0
