"""A user's model with several outputs — returned as a tuple, or as a dict — exports to ONNX, TFLite and
Core ML with every output named in each artifact and verified on its own (the trained acne MobileNetV2,
extended to return its pooled features or its probabilities beside its logits)."""

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_recipe
from toolkit.load.loader import shipped_checkpoint

HEADS = '''
import torch
from torch.nn import functional as F

from toolkit.data.synthetic import ACNE_GRADES
from toolkit.models.mobilenetv2 import MobileNetV2


class TupleHeads(MobileNetV2):
    """The grade logits and the pooled features the classifier head reads."""

    def forward(self, x):
        f = self.features(x)
        return self.head(f), F.adaptive_avg_pool2d(f, 1).flatten(1)


class DictHeads(MobileNetV2):
    """The grade probabilities and logits, as a dict (keys not in the declared order)."""

    def forward(self, x):
        logits = self.head(self.features(x))
        return {"grade_probs": torch.softmax(logits, dim=-1), "logits": logits}


def build_tuple():
    return TupleHeads(num_classes=len(ACNE_GRADES), width_mult=0.5)


def build_dict():
    return DictHeads(num_classes=len(ACNE_GRADES), width_mult=0.5)
'''

CASES = {
    "tuple": ("build_tuple", "[logits, {name: features, description: pooled features the head reads, unit: a.u.}]",
              ("logits", "features")),
    "dict": ("build_dict", "[logits, grade_probs]", ("logits", "grade_probs")),
}


def _recipe(tmp_path: Path, case: str, outputs: str | None = None) -> Path:
    (tmp_path / "heads.py").write_text(HEADS)
    factory, declared, _ = CASES[case]
    return write_recipe(tmp_path / f"{case}.yaml", f"""
name: heads_{case}
model: {{name: 'heads.py:{factory}', checkpoint: {shipped_checkpoint('acne_mobilenetv2')}, spec_from: acne_mobilenetv2,
         outputs: {outputs or declared}}}
targets:
  - {{format: onnx, precision: fp32}}
  - {{format: tflite, precision: fp32}}
  - {{format: tflite, precision: int8}}
  - {{format: coreml, precision: fp16}}
calibration: {{n: 16}}
evaluation: {{n: 24}}
benchmark: {{enabled: false}}
""")


@pytest.mark.parametrize("case", list(CASES))
def test_every_output_is_named_in_every_artifact_and_verified(tmp_path, case):
    names = CASES[case][2]
    proc = run_cli("export", str(_recipe(tmp_path, case)), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / f"heads_{case}" / "manifest.json").read_text())
    assert [o["name"] for o in manifest["outputs"]] == list(names)
    if case == "tuple":
        assert manifest["outputs"][1] == {"name": "features", "description": "pooled features the head reads", "unit": "a.u."}
    assert [a["path"] for a in manifest["artifacts"]] == [  # named after the model's file, heads.py
        "artifacts/heads_fp32.onnx", "artifacts/heads_fp32.tflite", "artifacts/heads_int8.tflite", "artifacts/heads_fp16.mlpackage"]
    for a in manifest["artifacts"]:
        v, structure = a["verification"], a["structure"]
        assert v["passed"], (a["path"], [c for c in v["criteria"] if not c["passed"]])
        # Each artifact names its outputs as declared, in order (Core ML: no classifier with two outputs).
        if a["format"] == "tflite":  # named in its signature, which keeps them sorted by name
            assert [o for sig in structure["signatures"].values() for o in sig["outputs"]] == sorted(names)
        else:
            assert [o["name"] for o in structure["outputs"]] == list(names), a["path"]
        assert list(v["numerics_by_output"]) == list(names)
        criteria = {c["name"]: c for c in v["criteria"]}
        for name in names:
            shape = criteria[f"output shape [{name}]"]
            assert criteria[f"outputs finite (no NaN/Inf) [{name}]"]["passed"] and shape["passed"]
            assert shape["value"] == shape["bound"] == ([4] if name != "features" else [shape["bound"][0]])
        # The task reads the logits; the second output is gated on its own numerics.
        second = [c for c in v["criteria"] if c["name"].endswith(f"[{names[1]}]") and c["name"].startswith(("cosine", "max abs"))]
        assert second and all(c["passed"] for c in second)
        assert v["task_metric"]["name"] == "macro_f1"
    fp32 = {a["format"]: a["verification"]["numerics_by_output"] for a in manifest["artifacts"] if a["precision"] == "fp32"}
    for fmt in ("onnx", "tflite"):
        for name in names:
            assert fp32[fmt][name]["cosine"] > 0.99999, (fmt, name)


def test_declared_outputs_that_do_not_match_what_the_model_returns_are_one_line(tmp_path):
    proc = run_cli("export", str(_recipe(tmp_path, "tuple", outputs="[logits]")), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "the model returns 2 values but declares 1 outputs (logits)" in proc.stderr
    assert "fix: declare one output per returned value, in order" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out" / "heads_tuple").exists()


def test_outputs_describe_only_a_users_model(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: acne_mobilenetv2, outputs: [a, b]}\n"
                                               "targets: [{format: onnx}]\n")
    proc = run_cli("export", str(recipe), "--dry-run")
    assert proc.returncode == 1 and "the registered model 'acne_mobilenetv2' declares its own outputs" in proc.stderr
    recipe = write_recipe(tmp_path / "r.yaml", "name: x\nmodel: {name: 'm.py:f', spec_from: acne_mobilenetv2, "
                                               "outputs: [a, a]}\ntargets: [{format: onnx}]\n")
    proc = run_cli("export", str(recipe), "--dry-run")
    assert proc.returncode == 1 and "model.outputs names a more than once" in proc.stderr


def test_a_list_of_per_image_detection_dicts_is_named_for_what_it_is():
    # torchvision's detection models in eval mode: one dict per image, as many detections as the picture has.
    import torch

    from toolkit.errors import BadInputError
    from toolkit.outputs import name_outputs

    result = [{"boxes": torch.zeros(3, 4), "labels": torch.zeros(3), "scores": torch.zeros(3), "masks": torch.zeros(3, 1, 8, 8)}]
    with pytest.raises(BadInputError) as err:
        name_outputs(result, ("boxes", "scores", "classes", "masks", "count"))
    assert err.value.cause == ("the model returns a list of 1 dict(s) (boxes, labels, scores, masks), one per image, as torchvision's "
                               "detection models do in eval mode: each holds as many detections as the picture has, a size no "
                               "on-device format can hold")
    assert err.value.fix.startswith("wrap the model so that it returns fixed-size tensors: the top K detections (torch.topk)")
