"""Instance segmentation end to end: skin_regions_maskrcnn's static graph (fast NMS and RoIAlign as matrix
products, checked against the reference kernels), its bundle with the app contract, ``skinkit run`` drawing the
instances, and a user's detector with data-dependent post-processing refused in one line naming op and module."""

import json
import textwrap

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import run_cli, write_recipe
from toolkit.load import vision_ops
from toolkit.models import maskrcnn


def test_matrix_roi_align_equals_the_reference_kernel_inside_the_map():
    # aligned=True, sampling 2: the C++ kernel's semantics (toolkit.load.vision_ops) for boxes inside the map.
    torch.manual_seed(0)
    feature = torch.randn(2, 5, 20, 24)
    lo = torch.rand(2, 6, 2) * 0.5
    boxes = torch.cat([lo, lo + 0.05 + torch.rand(2, 6, 2) * 0.4], -1)
    k = maskrcnn.Constants(earlier=(), bins=(7,), index=(20, 24))
    got = maskrcnn.roi_align(feature, boxes, 7, k).reshape(2, 6, 5, 7, 7)
    scale = torch.tensor([24.0, 20.0, 24.0, 20.0])
    for i in range(2):
        rois = torch.cat([torch.zeros(6, 1), boxes[i] * scale], 1)
        want = vision_ops.roi_align(feature[i:i + 1], rois, 1.0, 7, 7, 2, True)
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-5)


def test_fast_nms_drops_what_a_better_box_overlaps_and_keeps_the_rest():
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.45], [0.5, 0.5, 1.0, 1.0], [0.01, 0.0, 0.5, 0.5]]])
    earlier = torch.ones(4, 4).triu(1)
    assert maskrcnn.fast_nms(boxes, 0.7, earlier).tolist() == [[1.0, 0.0, 1.0, 0.0]]
    # Per class: a box of another class is never suppressed.
    assert maskrcnn.fast_nms(boxes, 0.7, earlier, torch.tensor([[0, 1, 0, 0]])).tolist() == [[1.0, 1.0, 1.0, 0.0]]


def test_box_codec_round_trips():
    ref = torch.tensor([[0.1, 0.2, 0.4, 0.6], [0.5, 0.5, 0.9, 0.7]])
    boxes = torch.tensor([[0.15, 0.1, 0.5, 0.55], [0.45, 0.52, 0.95, 0.8]])
    torch.testing.assert_close(maskrcnn.decode(maskrcnn.encode(boxes, ref), ref), boxes)


def test_every_output_has_a_fixed_size_and_padding_scores_zero():
    model = maskrcnn.MaskRCNN().eval()
    torch.manual_seed(1)
    with torch.inference_mode():
        out = model(torch.randn(3, 3, maskrcnn.INPUT, maskrcnn.INPUT))
    k = maskrcnn.DETECTIONS
    assert {n: tuple(v.shape) for n, v in out.items()} == {
        "boxes": (3, k, 4), "scores": (3, k), "classes": (3, k), "masks": (3, k, maskrcnn.MASK, maskrcnn.MASK), "count": (3, 1)}
    count = out["count"][:, 0].long()
    for i in range(3):
        assert (out["scores"][i, count[i]:] == 0).all() and (out["scores"][i, :count[i]] >= maskrcnn.SCORE_THRESHOLD).all()
    assert float(out["boxes"].min()) >= 0.0 and float(out["boxes"].max()) <= 1.0


DETECTOR = textwrap.dedent('''
    import torch
    from torch import nn


    class Head(nn.Module):
        def forward(self, scores, boxes):
            keep = scores > 0.5
            return boxes[keep], scores[keep]


    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 5, 3, stride=8, padding=1)
            self.head = Head()

        def forward(self, x):
            y = self.conv(x).flatten(2).transpose(1, 2)
            boxes, scores = self.head(y[0, :, 0].sigmoid(), y[0, :, 1:].sigmoid())
            k = boxes.shape[0]
            return {"boxes": boxes[None], "scores": scores[None], "classes": torch.zeros_like(scores)[None],
                    "masks": torch.ones(1, k, 8, 8) * scores[None, :, None, None], "count": torch.ones(1, 1) * k}


    def build():
        return Detector()
''')


def test_data_dependent_post_processing_is_one_line_naming_the_op_and_module(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "detector.py").write_text(DETECTOR)
    namespace: dict = {}
    exec(DETECTOR, namespace)
    save_file(namespace["build"]().state_dict(), str(tmp_path / "det.safetensors"))
    r = write_recipe(tmp_path / "r.yaml", textwrap.dedent("""
        name: dyn
        model:
          name: detector.py:build
          checkpoint: det.safetensors
          spec_from: skin_regions_maskrcnn
          input_size: [64, 64]
          outputs: [{name: boxes}, {name: scores}, {name: classes}, {name: masks}, {name: count}]
        targets: [{format: tflite, precision: fp32}]
        evaluation: {source: synthetic, n: 4, ground_truth: float}
    """))
    proc = run_cli("export", str(r), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("skinkit: error:")]
    assert len(lines) == 1
    assert ("detector makes a tensor whose size depends on the picture ([u0, 4]): aten.index.Tensor in head (Head) at "
            "detector.py:9 `return boxes[keep], scores[keep]`") in lines[0]
    assert "fix: make the post-processing static: keep a fixed number of detections (torch.topk)" in lines[0]
    assert list((tmp_path / "out").iterdir()) == []


@pytest.fixture(scope="module")
def instance_bundle(tmp_path_factory):
    """One real export of the trained Mask R-CNN (ONNX fp32 and TFLite int8 on a few faces: quick)."""
    tmp = tmp_path_factory.mktemp("instances")
    r = write_recipe(tmp / "regions.yaml", textwrap.dedent("""
        name: regions_test
        model: {name: skin_regions_maskrcnn}
        targets:
          - {format: onnx, precision: fp32}
          - {format: tflite, precision: int8}
        calibration: {n: 16}
        evaluation: {n: 16}
        benchmark: {enabled: false}
    """))
    proc = run_cli("export", str(r), "--out", str(tmp / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "out" / "regions_test"


def test_the_bundle_states_the_app_contract_and_passes_its_mask_ap_gate(instance_bundle):
    m = json.loads((instance_bundle / "manifest.json").read_text())
    assert m["schema_version"] == "1.4" and m["labels"] == ["forehead", "cheek_left", "cheek_right", "nose", "chin"]
    post = m["postprocess"]
    assert post["kind"] == "instances" and post["detections"] == 10 and post["mask_size"] == 28
    assert "masks[0, :, :, k]" in post["masks"] and "separable bilinear" in post["paste"]
    for a in m["artifacts"]:
        v = a["verification"]
        assert v["passed"], (a["path"], [c for c in v["criteria"] if not c["passed"]])
        assert v["task_metric"]["name"] == "mask_ap" and v["task_metric"]["float"] > 0.9
        assert v["metrics"]["agreement"]["artifact"]["value"] >= 0.85
    int8 = next(a for a in m["artifacts"] if a["precision"] == "int8")
    assert int8["structure"]["float_postprocess"].startswith("the network's own ops outside its layers kept float")
    assert run_cli("verify", str(instance_bundle)).returncode == 0


def test_skinkit_run_lists_and_draws_the_instances(instance_bundle, tmp_path):
    from toolkit.data.synthetic import make_sample

    face = make_sample(0, "test", 3, size=480).image  # a photo larger than the input: center-cropped, resized
    cv2.imwrite(str(tmp_path / "face.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    proc = run_cli("run", str(instance_bundle), str(tmp_path / "face.png"), "--json", "--overlay", str(tmp_path / "ov"),
                   "--variant", "tflite_int8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads(proc.stdout)
    found = rec["outputs"]["instances"]
    assert found["count"] == 5
    assert sorted(i["class"] for i in found["instances"]) == ["cheek_left", "cheek_right", "chin", "forehead", "nose"]
    assert all(i["score"] > 0.5 and 0.01 < i["fraction_of_picture"] < 0.2 for i in found["instances"])
    forehead = next(i for i in found["instances"] if i["class"] == "forehead")
    chin = next(i for i in found["instances"] if i["class"] == "chin")
    assert forehead["box"][3] < chin["box"][1]  # the forehead above the chin
    overlay = cv2.imread(rec["overlay"])
    assert overlay.shape[:2] == (480, 480) and not np.array_equal(overlay[..., ::-1], face)
    plain = run_cli("run", str(instance_bundle), str(tmp_path / "face.png"), "--variant", "onnx_fp32")
    assert plain.returncode == 0, plain.stderr[-2000:]
    text = " ".join(plain.stderr.split())  # the human-readable report goes to the terminal (stderr)
    assert "instances: 5 found: " in text and "forehead 1.00 (" in text
