import numpy as np
import pytest

from toolkit.errors import DataError
from toolkit.registry import get_spec
from toolkit.tasks.data import load_folder, task_data, write_folder


@pytest.mark.parametrize("name", ["acne_mobilenetv2", "hydration_vit", "skin_segmenter"])
def test_roundtrip(tmp_path, name):
    spec = get_spec(name)
    data = task_data(spec, 4, split="val")
    write_folder(data, spec, tmp_path)
    back = load_folder(spec, tmp_path)
    assert np.array_equal(back.inputs, data.inputs)  # PNG is lossless
    assert back.groups == data.groups
    np.testing.assert_allclose(back.targets, data.targets, atol=1e-4)


def test_missing_labels_and_bad_label(tmp_path):
    spec = get_spec("acne_mobilenetv2")
    write_folder(task_data(spec, 2, split="val"), spec, tmp_path)
    text = (tmp_path / "labels.csv").read_text().splitlines()
    (tmp_path / "labels.csv").write_text("\n".join([text[0], text[1].replace(text[1].split(",")[1], "terrible", 1)]) + "\n")
    with pytest.raises(DataError, match="line 2: label 'terrible' is not one of clear, mild, moderate, severe"):
        load_folder(spec, tmp_path)
    (tmp_path / "labels.csv").unlink()
    with pytest.raises(DataError, match="has 2 images but no labels.csv"):
        load_folder(spec, tmp_path)


def test_unreadable_image_named(tmp_path):
    spec = get_spec("acne_mobilenetv2")
    write_folder(task_data(spec, 2, split="val"), spec, tmp_path)
    (tmp_path / "img_00001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="unreadable image: .*img_00001.png"):
        load_folder(spec, tmp_path)
