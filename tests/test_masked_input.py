"""A spec whose network sees the photo masked to the skin (``extra["masked_input"]``): its synthetic and folder
data, the training split's jittered mask, the folder that lacks skin masks, and the shipped gated classifier."""

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from toolkit.data.masking import MAX_JITTER_PX, input_mask, jitter_mask, masked_fill
from toolkit.errors import BadInputError, DataError
from toolkit.registry import get_spec
from toolkit.tasks.data import load_folder, task_data, write_folder

GATED = "acne_gated_mobilenetv2"
WHOLE = "acne_mobilenetv2"  # the same contract on whole photos: the same synthetic images, unmasked


def _ellipse(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def test_evaluation_input_is_the_photo_times_the_exact_skin_mask():
    # setup
    gated, whole = task_data(get_spec(GATED), 8, split="test"), task_data(get_spec(WHOLE), 8, split="test")
    skin = gated.skin_masks.astype(bool)
    # assert: outside the skin black, inside untouched; same targets and skin masks
    assert skin.any(axis=(1, 2)).all() and (~skin).any(axis=(1, 2)).all()
    assert (gated.inputs[~skin] == 0).all()
    np.testing.assert_array_equal(gated.inputs[skin], whole.inputs[skin])
    np.testing.assert_array_equal(gated.inputs, whole.inputs * gated.skin_masks[..., None])
    np.testing.assert_array_equal(gated.targets, whole.targets)
    np.testing.assert_array_equal(gated.skin_masks, whole.skin_masks)
    assert (whole.inputs[~skin] != 0).any(), "a spec without masked_input sees the whole photo"


def test_training_mask_is_jittered_within_bounds_and_deterministic():
    # setup
    spec, n = get_spec(GATED), 24
    gated, whole = task_data(spec, n, split="train"), task_data(get_spec(WHOLE), n, split="train")
    again = task_data(spec, 4, split="train", start=5)
    grown = shrunk = 0
    for i in range(n):
        exact = whole.skin_masks[i]
        used = input_mask(exact, seed=0, split="train", index=i)
        # assert: the input is the photo under the jittered mask; the jitter stays within MAX_JITTER_PX
        np.testing.assert_array_equal(gated.inputs[i], whole.inputs[i] * used[..., None])
        assert (used <= cv2.dilate(exact, _ellipse(MAX_JITTER_PX))).all()
        assert (used >= cv2.erode(exact, _ellipse(MAX_JITTER_PX))).all()
        grown += int(used.sum() > exact.sum())
        shrunk += int(used.sum() < exact.sum())
        np.testing.assert_array_equal(used, jitter_mask(exact, seed=0, split="train", index=i))
    assert grown > 0 and shrunk > 0, "the training masks both grow and shrink"
    np.testing.assert_array_equal(again.inputs, gated.inputs[5:9])  # same seed, split, index: same input
    exact = whole.skin_masks[0]
    assert input_mask(exact, seed=0, split="test", index=0) is exact
    assert not all(np.array_equal(jitter_mask(exact, seed=s, split="train", index=0), jitter_mask(exact, seed=0, split="train", index=0))
                   for s in range(1, 6)), "the jitter depends on the seed"


def test_folder_with_skin_masks_reads_back_masked_and_without_them_is_refused(tmp_path):
    # setup
    spec = get_spec(GATED)
    data = task_data(spec, 4, split="test")
    write_folder(data, spec, tmp_path / "with_skin")
    write_folder(replace(data, skin_masks=None), spec, tmp_path / "no_skin")
    # execute / assert
    back = load_folder(spec, tmp_path / "with_skin")
    np.testing.assert_array_equal(back.inputs, data.inputs)
    np.testing.assert_array_equal(back.targets, data.targets)
    for labelled in (True, False):
        with pytest.raises(DataError) as e:
            load_folder(spec, tmp_path / "no_skin", labelled=labelled)
        assert str(tmp_path / "no_skin") in str(e.value) and "masked to the skin" in str(e.value)
        assert "skin/<image stem>.png" in e.value.fix
    load_folder(get_spec(WHOLE), tmp_path / "no_skin")  # a whole-photo model needs no skin masks


@pytest.mark.parametrize("declared", [{"fil": 0}, {"fill": 300}, {"fill": [0, 0]}, 0])
def test_malformed_declaration_is_refused(declared):
    spec = replace(get_spec(WHOLE), extra={"masked_input": declared})
    with pytest.raises(BadInputError, match="masked_input"):
        masked_fill(spec)


def test_fill_colour_is_applied_outside_the_skin():
    spec = replace(get_spec(WHOLE), extra={"masked_input": {"fill": [10, 20, 30]}})
    data = task_data(spec, 2, split="val")
    np.testing.assert_array_equal(data.inputs[data.skin_masks == 0], np.broadcast_to([10, 20, 30], data.inputs[data.skin_masks == 0].shape))


def test_shipped_gated_classifier_grades_masked_images():
    from toolkit.load.loader import load_model
    from toolkit.train import evaluate

    spec = get_spec(GATED)
    assert spec.extra["masked_input"] == {"fill": 0}
    metrics = evaluate(load_model(GATED).module, spec, task_data(spec, 64, split="test"))
    assert metrics["macro_f1"] >= 0.85, metrics


def test_a_masked_model_is_not_calibrated_on_whole_photos_of_a_manifest():
    from toolkit.data.calibration import load_calibration

    with pytest.raises(DataError, match="acne_gated_mobilenetv2 sees photos masked to the skin, but the calibration manifest "
                                        "acne_synthetic_calib.yaml holds whole photos") as err:
        load_calibration(Path(__file__).resolve().parent.parent / "calibration" / "acne_synthetic_calib.yaml", get_spec("acne_gated_mobilenetv2"))
    assert "a folder with skin/ masks" in err.value.fix
