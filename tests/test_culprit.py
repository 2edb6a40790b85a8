"""Culprit localisation: weights read back from each artifact format and matched to their PyTorch layers."""

import numpy as np
import pytest

from toolkit.backends.base import ArtifactWeight
from toolkit.backends.weights import match_weights
from toolkit.load import load_model
from toolkit.tasks.data import task_data
from toolkit.verify import culprit


@pytest.fixture(scope="module")
def reference():
    loaded = load_model("acne_mobilenetv2")
    return loaded, task_data(loaded.spec, 4, split="test")


@pytest.mark.parametrize("name, fmt, precision, min_weight_sqnr", [
    ("acne_mobilenetv2_fp32.onnx", "onnx", "fp32", 99.0),
    ("acne_mobilenetv2_fp16.tflite", "tflite", "fp16", 60.0),
    ("acne_mobilenetv2_fp16.mlpackage", "coreml", "fp16", 60.0),
])
def test_every_layer_is_found_in_the_artifact(default_bundle, reference, name, fmt, precision, min_weight_sqnr):
    out, proc = default_bundle
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded, data = reference
    r = culprit.locate(loaded.module, data.inputs, loaded.spec, fmt=fmt, path=out / "acne_test" / "artifacts" / name, precision=precision)
    assert r["layers_matched"] == r["layers_total"] == 53 and r["unmatched"] == []
    assert min(row["match_cosine"] for row in r["ranking"]) > 0.9999
    assert min(row["weight_sqnr_db"] for row in r["ranking"]) > min_weight_sqnr
    assert r["output_sqnr_db"] > (99.0 if fmt == "onnx" else 50.0)
    assert [row["position"] for row in sorted(r["ranking"], key=lambda row: row["position"])] == list(range(53))


def test_matching_undoes_axis_order_and_refuses_strangers():
    rng = np.random.default_rng(0)
    import torch.nn as nn

    layers = {"a": nn.Conv2d(3, 8, 3), "b": nn.Conv2d(8, 8, 3, groups=8), "c": nn.Linear(64, 16)}
    w = {k: m.weight.detach().numpy() for k, m in layers.items()}
    weights = [
        ArtifactWeight("ohwi", np.transpose(w["a"], (0, 2, 3, 1)).copy()),  # TFLite CONV_2D layout
        ArtifactWeight("1hwo", np.transpose(w["b"], (1, 2, 3, 0)).copy()),  # TFLite DEPTHWISE layout
        ArtifactWeight("noise", rng.normal(size=(16, 64)).astype(np.float32)),  # unrelated, same shape as c
    ]
    matched = match_weights(layers, weights)
    assert set(matched) == {"a", "b"}
    assert np.array_equal(matched["a"][1], w["a"]) and np.array_equal(matched["b"][1], w["b"])
