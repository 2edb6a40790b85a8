"""Mixed precision: the fewest layers kept float, found by search; the kept layers really float in the file."""

from pathlib import Path

import pytest
import torch

from toolkit.compress.mixed import Probe, search_keep_float
from toolkit.convert.base import convert_target
from toolkit.errors import ConversionError
from toolkit.load import load_model
from toolkit.load.contract import DeviceContract, InputContract
from toolkit.recipe import parse_recipe
from toolkit.tasks.data import task_data
from toolkit.verify.gate import contract_inputs


def _fake(threshold: int, calls: list):
    def evaluate(keep):
        calls.append(len(keep))
        return Probe(keep=keep, passed=len(keep) >= threshold, failed=() if len(keep) >= threshold else ("x",), size_bytes=100 + len(keep))
    return evaluate


@pytest.mark.parametrize("threshold, probes", [(0, [0]), (1, [0, 16, 1]), (5, [0, 16, 1, 2, 4, 8, 6, 5]), (13, [0, 16, 1, 2, 4, 8, 12, 14, 13])])
def test_search_finds_the_fewest_layers(threshold, probes):
    ranking = [f"l{i}" for i in range(20)]
    calls: list = []
    r = search_keep_float(ranking, _fake(threshold, calls), max_layers=16)
    assert r["met"] and r["kept_float"] == ranking[:threshold]
    assert calls == probes  # each k probed once: none, the cap, then doubling and bisecting


def test_search_reports_an_unmet_budget():
    r = search_keep_float([f"l{i}" for i in range(20)], _fake(30, []), max_layers=8)
    assert r["met"] is False and r["kept_float"] is None and r["searched_up_to"] == 8
    assert [p["k"] for p in r["probes"]] == [0, 8] and not any(p["passed"] for p in r["probes"])  # the cap fails: stop
    assert "diagnosis" not in r  # no losses recorded, no claim


@pytest.mark.parametrize("loss_at_cap, diagnosed", [(0.9, True), (0.4, False)])
def test_unmet_budget_that_float_layers_barely_help_is_diagnosed(loss_at_cap, diagnosed):
    def evaluate(keep):
        return Probe(keep=keep, passed=False, failed=("x",), size_bytes=1, loss=1.0 if not keep else loss_at_cap)

    r = search_keep_float([f"l{i}" for i in range(20)], evaluate, max_layers=12)
    assert r["met"] is False and [p["loss"] for p in r["probes"]] == [1.0, loss_at_cap]
    if diagnosed:
        assert r["diagnosis"].startswith("keeping the 12 noisiest weighted layers float removed 10% of the headline loss (1 → 0.9)")
        assert "int16x8" in r["diagnosis"]
    else:
        assert "diagnosis" not in r


def test_keep_float_only_for_tflite_integer_targets():
    base = {"name": "x", "model": {"name": "acne_mobilenetv2"}}
    ok = parse_recipe({**base, "targets": [{"format": "tflite", "precision": "int8", "keep_float": ["head.fc"]}]})
    assert ok.targets[0].key == "tflite_int8_mixed"
    with pytest.raises(Exception, match="keep_float applies to tflite int8 and int16x8 targets only"):
        parse_recipe({**base, "targets": [{"format": "tflite", "precision": "fp16", "keep_float": "auto"}]})


def test_named_layers_stay_float_in_the_file(tmp_path):
    loaded = load_model("skin_segmenter")
    wrapped = DeviceContract(loaded.module, loaded.spec, InputContract(layout="nhwc", pixel_range="0-255")).eval()
    calib = contract_inputs(task_data(loaded.spec, 4, split="calib"), "0-255", "nhwc")
    sample = torch.rand(1, *loaded.spec.input_size, 3) * 255
    convs = [n for n, m in loaded.module.named_modules() if isinstance(m, torch.nn.Conv2d)]
    keep = (convs[0], convs[-1])
    opts = {"calibration": calib, "keep_float": keep}
    a = convert_target(wrapped, sample, loaded.spec, fmt="tflite", precision="int8", out_dir=tmp_path, stem="s", options=opts, variant="int8_mixed")
    assert a.details["kept_float"]["weight_dtypes"] == {keep[0]: ["float32"], keep[1]: ["float32"]}
    assert a.details["op_histogram"].get("DEQUANTIZE", 0) >= 1 and a.details["inputs"][0]["dtype"] == "int8"
    with pytest.raises(ConversionError, match="not found: no.such.layer"):
        convert_target(wrapped, sample, loaded.spec, fmt="tflite", precision="int8", out_dir=tmp_path, stem="s",
                       options={**opts, "keep_float": ("no.such.layer",)}, variant="bad")
    assert not any(p.name.startswith("s_bad") or p.name.startswith(".s_bad") for p in Path(tmp_path).iterdir()), "nothing half-written"


def test_layers_litert_names_after_a_parent_are_found_by_their_weights(tmp_path):
    """A ModuleList's children (U-Net ``downs.0.1.0``) and a model's last Linear (the ViT's ``head``) get
    weight tensors named after a parent scope; they are found by matching weight values instead."""
    for name, keep in (("lesion_unet", ("downs.0.1.0", "inc.0")), ("hydration_vit", ("head",))):
        loaded = load_model(name)
        wrapped = DeviceContract(loaded.module, loaded.spec, InputContract(layout="nhwc", pixel_range="0-255")).eval()
        calib = contract_inputs(task_data(loaded.spec, 2, split="calib"), "0-255", "nhwc")
        sample = torch.rand(1, *loaded.spec.input_size, 3) * 255
        a = convert_target(wrapped, sample, loaded.spec, fmt="tflite", precision="int8", out_dir=tmp_path, stem=name,
                           options={"calibration": calib, "keep_float": keep}, variant="int8_mixed")
        assert a.details["kept_float"]["weight_dtypes"] == {k: ["float32"] for k in keep}
        assert a.details["tensor_dtypes"].get("int8", 0) > 0  # the rest is quantized
