"""ONNX int8: the trained acne MobileNetV2 exported as a QDQ model (per-channel int8 weights, uint8 activations
calibrated on the recipe's calibration images) passes its gate; the file says so; ONNX Runtime runs it; the culprit
finder reads its weights back dequantized; `skinkit bench` times it as the int8 baseline instead of building one."""

import json

import numpy as np
import pytest

from tests.conftest import run_cli, write_recipe
from toolkit.backends import BACKENDS
from toolkit.errors import ConversionError


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx_int8")
    recipe = write_recipe(tmp / "acne_onnx.yaml", """
name: acne_onnx
model: {name: acne_mobilenetv2}
targets:
  - {format: onnx, precision: fp32}
  - {format: onnx, precision: int8}
calibration: {source: synthetic, n: 64}   # the shipped recipes' set
evaluation: {n: 200}   # the default gate: the upper end of the paired 95 % CI of the drop
benchmark: {enabled: false}
""")
    proc = run_cli("export", str(recipe), "--out", str(tmp / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "out" / "acne_onnx"


def _artifact(bundle, precision: str) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return next(a for a in manifest["artifacts"] if a["precision"] == precision)


def test_int8_passes_its_gate_and_the_file_is_qdq_per_channel(bundle):
    # execute
    a, f = _artifact(bundle, "int8"), _artifact(bundle, "fp32")
    # assert
    assert a["path"] == "artifacts/acne_mobilenetv2_int8.onnx" and a["format"] == "onnx"
    v = a["verification"]
    assert v["passed"] and v["check"] == "onnxruntime (CPU)", [c for c in v["criteria"] if not c["passed"]]
    criteria = {c["name"]: c for c in v["criteria"]}
    for name in ("QDQ graph (QuantizeLinear / DequantizeLinear)", "every conv / linear / matmul weight stored int8",
                 "per-channel weight scales on every conv", "int8 activations (quantized by QuantizeLinear)"):
        assert criteria[name]["passed"], criteria[name]
    q = a["structure"]["quantization"]
    assert {k: v for k, v in q.items() if k != "activation_dtypes"} == {
        "format": "QDQ", "weighted_ops": 53, "weight_dtypes": {"INT8": 53}, "per_channel_weights": 53, "convs": 52, "per_channel_convs": 52}
    assert set(q["activation_dtypes"]) == {"UINT8"}
    assert a["structure"]["inputs"] == [{"name": "image", "dtype": "float", "shape": [1, 224, 224, 3]}]  # the float contract
    assert a["size_bytes"] < 0.4 * f["size_bytes"]
    assert v["numerics"]["cosine"] >= 0.99


def test_int8_runs_in_onnxruntime_and_agrees_with_float(bundle):
    # setup
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from toolkit.load.stage import contract_images
    from toolkit.registry import get_spec
    from toolkit.tasks.data import task_data

    x = contract_images(task_data(get_spec("acne_mobilenetv2"), 16, split="test", seed=1, labelled=False).inputs, "0-255", "nhwc")
    sessions = {p: ort.InferenceSession(str(bundle / _artifact(bundle, p)["path"]), providers=["CPUExecutionProvider"])
                for p in ("fp32", "int8")}
    # execute
    out = {p: np.concatenate([s.run(["logits"], {"image": x[i:i + 1].astype(np.float32)})[0] for i in range(len(x))])
           for p, s in sessions.items()}
    # assert
    assert out["int8"].shape == (16, 4) and np.isfinite(out["int8"]).all()
    assert (out["int8"].argmax(1) == out["fp32"].argmax(1)).mean() >= 15 / 16
    model = onnx.load(str(bundle / _artifact(bundle, "int8")["path"]))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    # the pixels, quantized over the whole 0-255 range: exactly (scale 1, zero point 0), never saturated
    assert float(inits[first_q.input[1]]) == 1.0 and int(inits[first_q.input[2]]) == 0


def test_weights_read_back_dequantized_within_half_a_step(bundle):
    # setup
    onnx_backend = BACKENDS["onnx"]
    # execute
    w32 = onnx_backend.weights(bundle / _artifact(bundle, "fp32")["path"])
    w8 = onnx_backend.weights(bundle / _artifact(bundle, "int8")["path"])
    # assert: the float weights rounded to int8 with a symmetric scale per output channel (axis 0)
    assert len(w32) == len(w8) == 53
    for a, b in zip(w32, w8):
        assert a.array.shape == b.array.shape and b.array.dtype == np.float32
        step = np.abs(a.array).reshape(len(a.array), -1).max(1) / 127
        err = np.abs(a.array - b.array).reshape(len(a.array), -1).max(1)
        assert (err <= step / 2 * 1.01 + 1e-12).all(), (a.name, float((err / step).max()))


def test_cost_counts_int8_storage_and_hides_qdq_pairs(bundle):
    # execute
    c32 = BACKENDS["onnx"].cost(bundle / _artifact(bundle, "fp32")["path"])
    c8 = BACKENDS["onnx"].cost(bundle / _artifact(bundle, "int8")["path"])
    # assert
    assert c8.macs == c32.macs > 0
    assert c8.weight_bytes < 0.35 * c32.weight_bytes
    assert "QuantizeLinear" not in c8.op_sequence and "DequantizeLinear" not in c8.op_sequence
    assert c8.op_sequence.count("Conv") == 52


def test_bench_times_the_bundles_int8_as_the_baseline(bundle):
    # execute
    proc = run_cli("bench", str(bundle), "--threads", "1", "--warmup", "1", "--repeats", "3", "--json")
    # assert
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["artifact"]: r for r in json.loads(proc.stdout)["artifacts"]}
    assert set(rows) == {"artifacts/acne_mobilenetv2_fp32.onnx", "artifacts/acne_mobilenetv2_int8.onnx"}  # no quantized copy
    assert rows["artifacts/acne_mobilenetv2_int8.onnx"]["host"]["1"]["p50_ms"] > 0


def test_int8_without_calibration_images_is_one_error_naming_the_fix(tmp_path):
    # execute
    with pytest.raises(ConversionError) as exc:
        BACKENDS["onnx"].convert(None, None, None, precision="int8", path=tmp_path / "m.onnx", options={"calibration": None})
    # assert
    assert "onnx int8 needs calibration images" in str(exc.value) and "calibration:" in exc.value.fix


def test_culprit_finder_matches_every_layer_of_the_int8_graph(bundle):
    # setup
    from toolkit.load import load_model
    from toolkit.tasks.data import task_data
    from toolkit.verify import culprit

    loaded = load_model("acne_mobilenetv2")
    images = task_data(loaded.spec, 4, split="test").inputs
    # execute
    r = culprit.locate(loaded.module, images, loaded.spec, fmt="onnx", path=bundle / _artifact(bundle, "int8")["path"], precision="int8")
    # assert
    assert r["layers_matched"] == r["layers_total"] == 53 and r["unmatched"] == []
    assert "fake-quantized to 8 bits" in r["method"]
    assert min(row["match_cosine"] for row in r["ranking"]) > 0.999
    assert 30.0 < min(row["weight_sqnr_db"] for row in r["ranking"]) < 99.0  # int8, not the float weights
