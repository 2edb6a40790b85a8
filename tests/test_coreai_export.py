"""The trained acne MobileNetV2 exports to Core AI at every kind of precision — float (fp32, fp16), int8 weights
and k-means lookup tables (coreai-opt) — and Apple's Core AI runtime (coreai-core's CPU path on Linux) executes
each saved asset for the gate. 4-bit tables fail the gate, as Core ML's do on this model."""

import json

import numpy as np
import pytest

from tests.conftest import run_cli, write_recipe

STORAGE = {"fp32": {"dense f32": 53}, "fp16": {"dense f16": 53},
           # the two weights under 256 elements (depthwise 3x3 convolutions of 16 channels) stay float16, as in Core ML
           "int8_weights": {"dense f16": 2, "quantized si8": 51}, "palettize8": {"dense f16": 2, "lut ui8": 51},
           "palettize4": {"dense f16": 2, "lut ui4": 51}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coreai")
    targets = "\n".join(f"  - {{format: coreai, precision: {p}}}" for p in STORAGE)
    recipe = write_recipe(tmp / "acne_coreai.yaml", f"""
name: acne_coreai
model: {{name: acne_mobilenetv2}}
targets:
{targets}
evaluation: {{n: 24}}
benchmark: {{enabled: false}}
""")
    proc = run_cli("export", str(recipe), "--out", str(tmp / "out"), "--json")
    return proc, tmp / "out" / "acne_coreai"


def test_every_precision_is_stored_as_asked_and_run_by_the_core_ai_runtime(bundle):
    # setup
    proc, path = bundle
    # execute
    manifest = json.loads((path / "manifest.json").read_text())
    # assert
    assert proc.returncode == 3, proc.stderr[-3000:]  # the gate fails: palettize4 only
    assert [a["path"] for a in manifest["artifacts"]] == [f"artifacts/acne_mobilenetv2_{p}.aimodel" for p in STORAGE]
    for a in manifest["artifacts"]:
        v, structure = a["verification"], a["structure"]
        assert v["check"].startswith("Core AI runtime (coreai-core 1.0.0b3)"), v["check"]
        assert structure["weight_storage"] == STORAGE[a["precision"]], a["precision"]
        assert [(i["name"], i["dtype"]) for i in structure["inputs"]] == [("image", "f32")]  # the contract tensor, float32 I/O
        assert [o["name"] for o in structure["outputs"]] == ["logits"]
        want = "f32" if a["precision"] == "fp32" else "f16"
        assert set(structure["weighted_op_dtypes"]) == {want}  # compressed weights expand to float16 for compute
        assert all(c["passed"] for c in v["criteria"] if c["name"].startswith(("compressed weights", "weight tensors", "no float32")))
        asset = json.loads((path / a["path"] / "metadata.json").read_text())
        fields = asset["creatorDefinedMetadata"]
        assert asset["author"] == "skinkit" and fields["skinkit.model"] == "acne_mobilenetv2"
        assert fields["skinkit.precision"] == a["precision"] and fields["skinkit.labels"]


def test_the_gate_passes_float_int8_and_8bit_tables_and_refuses_4bit_tables(bundle):
    # setup
    _, path = bundle
    # execute
    manifest = json.loads((path / "manifest.json").read_text())
    verdicts = {a["precision"]: a["verification"] for a in manifest["artifacts"]}
    # assert
    assert {p: v["passed"] for p, v in verdicts.items()} == {"fp32": True, "fp16": True, "int8_weights": True,
                                                            "palettize8": True, "palettize4": False}
    failed = {c["name"] for c in verdicts["palettize4"]["criteria"] if not c["passed"]}
    assert "cosine vs float" in failed, failed
    errors = {p: v["numerics"]["max_abs_error"] for p, v in verdicts.items()}
    assert errors["fp32"] < 1e-3 < errors["fp16"] < errors["palettize4"], errors


def test_compressed_assets_are_smaller_and_their_weights_read_back(bundle):
    # setup
    from toolkit.backends import get_backend

    _, path = bundle
    manifest = json.loads((path / "manifest.json").read_text())
    size = {a["precision"]: a["size_bytes"] for a in manifest["artifacts"]}
    backend = get_backend("coreai")
    # execute
    float16 = backend.weights(path / "artifacts/acne_mobilenetv2_fp16.aimodel")
    int8 = backend.weights(path / "artifacts/acne_mobilenetv2_int8_weights.aimodel")
    cost = backend.cost(path / "artifacts/acne_mobilenetv2_palettize4.aimodel")
    # assert
    ratios = (size["fp32"] / size["fp16"], size["fp16"] / size["int8_weights"], size["int8_weights"] / size["palettize4"])
    assert ratios[0] > 1.9 and ratios[1] > 1.8 and ratios[2] > 1.8, (ratios, size)
    assert len(float16) == len(int8) == 53
    cosines = [float(a.array.ravel() @ b.array.ravel() / np.linalg.norm(a.array) / np.linalg.norm(b.array)) for a, b in zip(float16, int8)]
    assert min(cosines) > 0.999, min(cosines)
    assert cost.weight_bytes < 0.3 * backend.cost(path / "artifacts/acne_mobilenetv2_fp16.aimodel").weight_bytes


def test_a18_pro_neural_engine_estimate_of_the_assets(bundle):
    # setup
    from toolkit.backends import get_backend
    from toolkit.benchmark import devices

    _, path = bundle
    profile = next(p for p in devices.load_profiles(["apple_a18pro_ane_coreai", "apple_a17pro_ane"]) if p.runtime == "coreai")
    a17 = devices.load_profiles(["apple_a17pro_ane"])[0]
    costs = {p: get_backend("coreai").cost(path / f"artifacts/acne_mobilenetv2_{p}.aimodel") for p in ("fp32", "fp16", "palettize4")}
    # execute
    est = {p: devices.estimate(profile, c, p) for p, c in costs.items()}
    # assert
    assert profile.derived_from.profile == "apple_a17pro_ane" and profile.throughput_tmacs == {"fp16": a17.throughput_tmacs["fp16"]}
    assert est["fp32"]["ms"] is None and "Neural Engine computes float16" in est["fp32"]["reason"]
    fp16 = est["fp16"]
    assert fp16["basis"] == "derived (not fitted)" and fp16["compute_dtype"] == "fp16"
    assert fp16["partitions"] == 0 and fp16["ops_off_unit"] == []  # every MobileNetV2 op is in the derived Core AI table
    want = a17.overhead_ms["fp16"] + costs["fp16"].macs / (a17.throughput_tmacs["fp16"] * 1e12) * 1e3
    assert fp16["ms"] == pytest.approx(want, abs=1e-3)
    assert costs["palettize4"].macs == costs["fp16"].macs and est["palettize4"]["compute_dtype"] == "fp16"
    assert get_backend("coreai").inspect(path / "artifacts/acne_mobilenetv2_fp16.aimodel")["compute_units"]["neural_engine"] == "all ops eligible"


def test_group_size_gives_one_lookup_table_per_channel_group(tmp_path):
    # setup
    import torch

    from toolkit.backends import get_backend
    from toolkit.backends.coreai.program import read_program
    from toolkit.load import load_model
    from toolkit.load.contract import DeviceContract, InputContract

    loaded = load_model("skin_segmenter")
    net = DeviceContract(loaded.module, loaded.spec, InputContract()).eval()
    sample = torch.rand(1, *loaded.spec.input_size, 3) * 255
    # execute
    details = get_backend("coreai").convert(net, sample, loaded.spec, precision="palettize4", path=tmp_path / "s.aimodel",
                                            options={"group_size": 8})
    prog = read_program(tmp_path / "s.aimodel")
    # assert
    assert set(details["weight_storage"]) <= {"lut ui4", "dense f16"} and details["weight_storage"]["lut ui4"] >= 1
    luts = [(prog.tensors[op.operands[0]].shape, prog.constants[op.operands[1]].shape) for op in prog.ops if op.kind == "lut_to_dense"]
    assert luts and all(lut[0] == shape[0] // 8 and lut[-2:] == (16, 1) for shape, lut in luts), luts
    for _, value in prog.weight_values():  # every table entry a weight uses is one of its group's 16 values
        w = prog.stored(value)
        if prog.storage(value)[0] == "lut":
            assert all(len(np.unique(w[g:g + 8])) <= 16 for g in range(0, w.shape[0], 8))
