"""Calibration sets from manifests: hashes checked, bad images named, overlap with evaluation refused."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, run_cli
from toolkit.data.calibration import check_disjoint, load_calibration, pixel_sha256, read_manifest, skin_crop
from toolkit.data.synthetic import make_sample
from toolkit.errors import DataError
from toolkit.registry import get_spec
from toolkit.tasks.data import task_data

SPEC = get_spec("acne_mobilenetv2")


def test_shipped_synthetic_manifest_loads_with_every_hash_checked():
    images, report = load_calibration(ROOT / "calibration" / "acne_synthetic_calib.yaml", SPEC, limit=8)
    assert images.shape == (8, 224, 224, 3) and images.dtype == np.uint8
    assert np.array_equal(images[3], make_sample(0, "calib", 3).image)
    assert report["images"] == 8 and report["skipped"] == [] and "consent" in report
    assert len(read_manifest(ROOT / "calibration" / "acne_synthetic_calib.yaml").images) == 64


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), cv2.cvtColor(make_sample(0, "val", i).image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "set.yaml"
    proc = run_cli("calibration", "--out", str(out), "--folder", str(folder), "--name", "photos", "--provenance", "test",
                   "--consent", "synthetic, none needed")
    assert proc.returncode == 0, proc.stderr
    return folder, out


def test_folder_manifest_round_trip(photo_folder):
    folder, manifest = photo_folder
    images, report = load_calibration(manifest, SPEC)
    assert images.shape == (3, 224, 224, 3)
    assert np.array_equal(images[1], make_sample(0, "val", 1).image)  # PNG is lossless; same pixels back


def test_changed_and_unreadable_images_are_named_or_skipped_when_allowed(photo_folder):
    folder, manifest = photo_folder
    (folder / "p1.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="calibration image p1.png of set.yaml changed"):
        load_calibration(manifest, SPEC)
    images, report = load_calibration(manifest, SPEC, allow_unreadable=True)
    assert len(images) == 2 and [s["id"] for s in report["skipped"]] == ["p1.png"]
    (folder / "p0.png").unlink()
    (folder / "p2.png").unlink()
    with pytest.raises(DataError, match="has no usable images"):
        load_calibration(manifest, SPEC, allow_unreadable=True)


def test_overlap_with_evaluation_is_refused():
    calib = task_data(SPEC, 4, split="calib").inputs
    evaluation = task_data(SPEC, 6, split="test").inputs
    check_disjoint(calib, evaluation)  # disjoint splits pass
    leaked = evaluation.copy()
    leaked[4] = calib[2]
    with pytest.raises(DataError, match=r"1 image\(s\) are in both .*calibration #2 = evaluation #4"):
        check_disjoint(calib, leaked)


def test_skin_crop_keeps_the_face():
    img = make_sample(0, "test", 0).image
    big = cv2.copyMakeBorder(img, 100, 100, 100, 100, cv2.BORDER_CONSTANT, value=(20, 60, 200))
    crop = skin_crop(big)
    assert crop.shape[0] == crop.shape[1] and crop.shape[0] < big.shape[0] * 0.8
    assert pixel_sha256(img) != pixel_sha256(crop)


def test_manifest_recipe_source(tmp_path):
    from toolkit.recipe import parse_recipe

    r = parse_recipe({"name": "x", "model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "tflite", "precision": "int8"}],
                      "calibration": {"source": "manifest", "manifest": "calibration/acne_synthetic_calib.yaml", "n": 16}})
    assert r.calibration.manifest == Path("calibration/acne_synthetic_calib.yaml")
    with pytest.raises(Exception, match="source 'manifest' needs calibration.manifest"):
        parse_recipe({"name": "x", "model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "onnx"}],
                      "calibration": {"source": "manifest"}})


def test_export_records_the_calibration_set_and_refuses_a_leaked_one(tmp_path):
    import json

    from toolkit.data.calibration import write_manifest

    recipe = tmp_path / "r.yaml"
    manifest = ROOT / "calibration" / "acne_synthetic_calib.yaml"
    recipe.write_text(f"""
name: seg_int8
model: {{name: skin_segmenter}}
targets: [{{format: tflite, precision: int8}}]
calibration: {{source: manifest, manifest: {manifest}, n: 8}}
evaluation: {{n: 16}}
benchmark: {{enabled: false}}
""")
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cal = json.loads((tmp_path / "out" / "seg_int8" / "manifest.json").read_text())["calibration"]
    assert (cal["name"], cal["images"], cal["disjoint_from_evaluation"], cal["skipped"]) == ("acne_synthetic_calib", 8, True, [])

    # A set made of the evaluation split's own images is refused before anything is converted.
    leaked = write_manifest(tmp_path / "leak.yaml", name="leak", provenance="test", consent="synthetic", source="synthetic",
                            ids=["0", "1"], hashes=[pixel_sha256(make_sample(0, "test", i).image) for i in range(2)],
                            generator={"split": "test", "seed": 0, "size": 224})
    recipe.write_text(recipe.read_text().replace(str(manifest), str(leaked)))
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out2"))
    assert proc.returncode == 1 and "2 image(s) are in both the calibration and the evaluation set" in proc.stderr
    assert not (tmp_path / "out2" / "seg_int8").exists()
