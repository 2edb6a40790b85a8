"""Quantized and compressed targets: what the file must contain, and the errors when it cannot."""

import pytest
import torch

from tests.conftest import run_cli, write_recipe
from toolkit.backends.coreml import convert as coreml
from toolkit.backends.tflite import convert as tflite
from toolkit.backends.tflite.flatbuffer import read_metadata
from toolkit.backends.tflite.graph import runner as tflite_runner
from toolkit.errors import ConversionError
from toolkit.load import load_model
from toolkit.load.contract import DeviceContract, InputContract
from toolkit.recipe import parse_recipe
from toolkit.tasks.data import task_data
from toolkit.verify.gate import contract_inputs


@pytest.fixture(scope="module")
def segmenter():
    loaded = load_model("skin_segmenter")
    wrapped = DeviceContract(loaded.module, loaded.spec, InputContract()).eval()
    return loaded.spec, wrapped, torch.rand(1, 224, 224, 3) * 255


def test_tflite_int8_has_pixel_exact_int8_input_signature_and_metadata(segmenter, tmp_path):
    spec, wrapped, sample = segmenter
    calib = contract_inputs(task_data(spec, 16, split="calib"), "0-255", "nhwc")
    path = tmp_path / "seg_int8.tflite"
    d = tflite.convert(wrapped, sample, spec, precision="int8", path=path,
                       options={"calibration": calib, "metadata": {"model": spec.name, "labels": list(spec.labels)}})
    # The input quantization covers the whole pixel range: int8 = pixel - 128, exactly.
    assert d["inputs"][0]["dtype"] == "int8"
    assert d["inputs"][0]["quantization"] == {"scale": 1.0, "zero_point": -128}
    assert d["signatures"] == {"segmentation": {"inputs": ["image"], "outputs": ["logits"]}}
    assert d["transpose_count"] == 0 and d["tensor_dtypes"]["int8"] > 0 and "float32" not in d["tensor_dtypes"]
    meta = read_metadata(path)
    assert meta["labels"] == ["non_skin", "skin"] and meta["precision"] == "int8" and meta["signature"] == "segmentation"

    test = task_data(spec, 8, split="test")
    x = contract_inputs(test, "0-255", "nhwc")
    with torch.no_grad():
        ref = wrapped(torch.from_numpy(x)).numpy()
    out = tflite_runner(path).run(x)["logits"]
    assert (out.argmax(-1) == ref.argmax(-1)).mean() > 0.98


def test_quantization_that_did_not_happen_is_an_error(segmenter, tmp_path, monkeypatch):
    spec, wrapped, sample = segmenter
    monkeypatch.setattr(tflite, "_quantize", lambda *a, **k: tflite._float_flatbuffer(wrapped, sample, spec))
    with pytest.raises(ConversionError, match="dynamic_int8 was requested but the TFLite file is not quantized as asked"):
        tflite.convert(wrapped, sample, spec, precision="dynamic_int8", path=tmp_path / "x.tflite", options={})
    assert not list(tmp_path.iterdir()), "nothing half-written is left behind"


def test_full_integer_without_calibration_data_is_an_error(segmenter, tmp_path):
    spec, wrapped, sample = segmenter
    with pytest.raises(ConversionError, match="needs calibration images") as e:
        tflite.convert(wrapped, sample, spec, precision="int16x8", path=tmp_path / "x.tflite", options={"calibration": None})
    assert "calibration:" in e.value.fix


def test_coreml_deployment_target_is_raised_only_where_needed():
    assert coreml.deployment_target("fp16", {}) == ("iOS16", None)
    assert coreml.deployment_target("palettize4", {"group_size": None}) == ("iOS16", None)
    target, note = coreml.deployment_target("int4_block", {})
    assert target == "iOS18" and "int4 block-wise" in note
    assert coreml.deployment_target("palettize6", {"group_size": 8})[0] == "iOS18"
    assert coreml.deployment_target("int8", {}) == ("iOS17", "raised from the default iOS16: int8 activations (quantize / dequantize ops) need iOS17")
    assert coreml.deployment_target("int8", {"deployment_target": "iOS18"}) == ("iOS18", None)
    with pytest.raises(ConversionError, match="int4 block-wise weights need iOS18, but the recipe sets deployment_target iOS17"):
        coreml.deployment_target("int4_block", {"deployment_target": "iOS17"})


def test_coreml_w8a8_without_calibration_data_is_an_error(segmenter, tmp_path):
    spec, wrapped, sample = segmenter
    with pytest.raises(ConversionError, match="coreml int8 needs calibration images"):
        coreml.convert(wrapped, sample, spec, precision="int8", path=tmp_path / "x.mlpackage", options={})
    assert not list(tmp_path.iterdir())


def test_coreml_sparse_without_zeros_names_pruning(segmenter, tmp_path):
    spec, wrapped, sample = segmenter
    with pytest.raises(ConversionError, match="no constexpr_sparse_to_dense ops") as e:
        coreml.convert(wrapped, sample, spec, precision="sparse", path=tmp_path / "x.mlpackage", options={})
    assert "compress.pruning" in e.value.fix
    assert not list(tmp_path.iterdir())


def test_coreml_image_input_honours_zero_to_one_pixels(tmp_path):
    """An image input always carries 0-255 pixels; with a 0-1 contract the ImageType scale (1/255)
    must be applied inside the program, or fp32 verification fails by a factor of 255."""
    recipe = write_recipe(tmp_path / "sr.yaml", """
name: sr01
model: {name: texture_sr}
input: {pixel_range: "0-1"}
targets: [{format: coreml, precision: fp32}]
evaluation: {n: 8}
benchmark: {enabled: false}
""")
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json
    manifest = json.loads((tmp_path / "out" / "sr01" / "manifest.json").read_text())
    art = manifest["artifacts"][0]
    assert art["structure"]["inputs"][0]["type"] == "imageType"
    assert art["verification"]["numerics"]["max_abs_error"] < 1e-4


@pytest.mark.parametrize("target, message", [
    ({"format": "tflite", "precision": "palettize4"}, "no lookup-table weight type in the TFLite schema"),
    ({"format": "coreml", "precision": "int16x8"}, "Core ML has no int16 activation type"),
    ({"format": "tflite", "precision": "int8", "group_size": 8}, "group_size applies to coreml targets and coreai targets only"),
    ({"format": "coreml", "precision": "int8_weights", "group_size": 8}, "group_size applies to palettize4/6/8 only"),
])
def test_recipe_rejects_unsupported_targets_with_the_reason(target, message):
    from toolkit.errors import RecipeError

    with pytest.raises(RecipeError, match=message):
        parse_recipe({"name": "x", "model": {"name": "acne_mobilenetv2"}, "targets": [target]})


def test_sparse_target_needs_pruning():
    from toolkit.errors import RecipeError

    with pytest.raises(RecipeError, match="it needs compress.pruning with method: magnitude"):
        parse_recipe({"name": "x", "model": {"name": "acne_mobilenetv2"}, "targets": [{"format": "coreml", "precision": "sparse"}]})
    r = parse_recipe({"name": "x", "model": {"name": "acne_mobilenetv2"}, "compress": {"pruning": {"sparsity": 0.5}},
                      "targets": [{"format": "coreml", "precision": "sparse"}]})
    assert r.targets[0].precision == "sparse"



_ODD_NET = '''
import torch
from torch import nn


class Odd(nn.Module):
    def forward(self, x):
        return torch.special.i0(x)  # Bessel function: no Core ML or LiteRT lowering


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.odd = Odd()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.odd(self.conv(x)).mean((2, 3)))


def build():
    return Net()
'''


@pytest.mark.parametrize("fmt, op, call", [("coreml", "special_i0", "special_i0"),  # the node Core ML was converting
                                           ("tflite", "i0", "aten.special_i0.default"),  # found by exporting the module
                                           ("coreai", "i0", "aten.special_i0.default")])
def test_unsupported_op_names_the_op_and_the_module(tmp_path, fmt, op, call):
    (tmp_path / "odd.py").write_text(_ODD_NET)
    import importlib.util

    spec_ = importlib.util.spec_from_file_location("odd", tmp_path / "odd.py")
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    torch.save(mod.build().state_dict(), tmp_path / "odd.pt")
    recipe = write_recipe(tmp_path / "r.yaml", f"""
name: odd
model: {{name: 'odd.py:build', checkpoint: odd.pt, spec_from: acne_mobilenetv2}}
targets: [{{format: {fmt}, precision: fp32}}]
evaluation: {{n: 4}}
""")
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{fmt} conversion of odd failed" in proc.stderr
    assert f"unsupported op: {op}" in proc.stderr
    assert f"model.odd (Odd) calls {call}" in proc.stderr
    assert "fix: replace" in proc.stderr and "in model.odd (Odd)" in proc.stderr
    assert not (tmp_path / "out" / "odd").exists()


def test_grouped_palettization_beside_per_tensor_raises_ios_target(tmp_path):
    import json

    recipe = write_recipe(tmp_path / "seg.yaml", """
name: seg_lut
model: {name: skin_segmenter}
targets:
  - {format: coreml, precision: palettize6}
  - {format: coreml, precision: palettize6, group_size: 8}
evaluation: {n: 8}
benchmark: {enabled: false}
""")
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    arts = json.loads((tmp_path / "out" / "seg_lut" / "manifest.json").read_text())["artifacts"]
    assert [a["path"] for a in arts] == ["artifacts/skin_segmenter_palettize6.mlpackage", "artifacts/skin_segmenter_palettize6_g8.mlpackage"]
    assert [a["structure"]["deployment_target"] for a in arts] == ["iOS16", "iOS18"]
    assert all(a["structure"]["compressed_weight_ops"]["constexpr_lut_to_dense"] > 0 for a in arts)
