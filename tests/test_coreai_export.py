"""The trained acne MobileNetV2 exports to Core AI fp32 and fp16, and Apple's Core AI runtime (coreai-core's CPU
path on Linux) executes each saved asset for the gate."""

import json

from tests.conftest import run_cli, write_recipe


def test_acne_mobilenetv2_to_core_ai_passes_its_gate_run_by_the_core_ai_runtime(tmp_path):
    # setup
    recipe = write_recipe(tmp_path / "acne_coreai.yaml", """
name: acne_coreai
model: {name: acne_mobilenetv2}
targets:
  - {format: coreai, precision: fp32}
  - {format: coreai, precision: fp16}
evaluation: {n: 24}
benchmark: {enabled: false}
""")
    # execute
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"), "--json")
    # assert
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = tmp_path / "out" / "acne_coreai"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [a["path"] for a in manifest["artifacts"]] == ["artifacts/acne_mobilenetv2_fp32.aimodel", "artifacts/acne_mobilenetv2_fp16.aimodel"]
    for a in manifest["artifacts"]:
        v, structure = a["verification"], a["structure"]
        assert v["passed"], (a["path"], [c for c in v["criteria"] if not c["passed"]])
        assert v["check"].startswith("Core AI runtime (coreai-core 1.0.0b3)"), v["check"]
        assert [o["name"] for o in structure["outputs"]] == ["logits"]
        assert [(i["name"], i["dtype"]) for i in structure["inputs"]] == [("image", "f32")]  # the contract tensor, float32 I/O
        want = "f32" if a["precision"] == "fp32" else "f16"
        assert set(structure["weight_dtypes"]) == {want} and set(structure["weighted_op_dtypes"]) == {want}
        assert sum(structure["weight_dtypes"].values()) == 53  # every conv (52) and the classifier, large ones stored as blobs
        asset = json.loads((bundle / a["path"] / "metadata.json").read_text())
        fields = asset["creatorDefinedMetadata"]
        assert asset["author"] == "skinkit" and fields["skinkit.model"] == "acne_mobilenetv2"
        assert fields["skinkit.precision"] == a["precision"] and fields["skinkit.labels"]
    errors = {a["precision"]: a["verification"]["numerics"]["max_abs_error"] for a in manifest["artifacts"]}
    assert errors["fp32"] < 1e-3 < errors["fp16"] < 0.5, errors
