"""A user's model described by its recipe alone (issue 13): task, input size, channel order, normalization,
labels and outputs, with no registered model to borrow from; and the one forward pass that checks the model
against that description before anything converts.

The described models are the trained acne MobileNetV2 under other preprocessing contracts: trained on BGR
with mean/std in pixel units, or normalizing inside its own forward. Described right, each must give the
registered model's outputs exactly on the same photos."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import run_cli, write_recipe
from toolkit.context import Context
from toolkit.data.synthetic import ACNE_GRADES
from toolkit.errors import BadInputError, RecipeError
from toolkit.load import stage as load_stage
from toolkit.load.contract import DeviceContract, InputContract
from toolkit.load.loader import load_model, shipped_checkpoint
from toolkit.models._specs import IMAGENET_MEAN, IMAGENET_STD
from toolkit.recipe import parse_recipe
from toolkit.tasks.data import task_data

VARIANTS = '''
import torch

from toolkit.models.mobilenetv2 import MobileNetV2


def build():
    return MobileNetV2(num_classes=4, width_mult=0.5)


class NormalizesItself(MobileNetV2):
    """Takes raw 0-255 RGB pixels and applies ImageNet normalization in its own forward."""

    def __init__(self):
        super().__init__(num_classes=4, width_mult=0.5)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, x):
        return super().forward((x - self.mean) / self.std)
'''

LABELS = "[" + ", ".join(ACNE_GRADES) + "]"
BGR_MEAN = [round(m * 255, 4) for m in IMAGENET_MEAN[::-1]]
BGR_STD = [round(s * 255, 4) for s in IMAGENET_STD[::-1]]
DESCRIPTIONS = {
    # Trained on BGR: the first conv's input channels reversed; mean and std in BGR order and pixel units.
    "bgr": ("build", f"channel_order: BGR, normalization: {{pixel_range: 0-255, mean: {BGR_MEAN}, std: {BGR_STD}}}"),
    "in_model": ("NormalizesItself", "normalization: {pixel_range: 0-255}"),
}


def _files(tmp_path: Path, variant: str) -> Path:
    (tmp_path / "variants.py").write_text(VARIANTS)
    state = load_file(str(shipped_checkpoint("acne_mobilenetv2")))
    if variant == "bgr":
        state["features.0.0.weight"] = state["features.0.0.weight"].flip(1).contiguous()
    save_file(state, str(tmp_path / f"{variant}.safetensors"))
    factory, contract = DESCRIPTIONS[variant]
    return write_recipe(tmp_path / f"{variant}.yaml", f"""
name: described_{variant}
model:
  name: 'variants.py:{factory}'
  checkpoint: {variant}.safetensors
  task: classification
  input_size: 224
  labels: {LABELS}
  outputs: [{{name: grade_logits, description: acne grade scores, shape: [4]}}]
  {contract.replace(", normalization", chr(10) + "  normalization")}
targets:
  - {{format: onnx, precision: fp32}}
  - {{format: tflite, precision: fp32}}
evaluation: {{n: 24}}
benchmark: {{enabled: false}}
""")


def _context(recipe_path: Path) -> Context:
    from toolkit.recipe import load_recipe

    return Context(recipe=load_recipe(recipe_path), recipe_path=recipe_path, staging=recipe_path.parent, log_path=recipe_path.with_suffix(".log"))


@pytest.mark.parametrize("variant", list(DESCRIPTIONS))
def test_described_contract_reproduces_the_registered_model_exactly(tmp_path, variant):
    ctx = _context(_files(tmp_path, variant))
    loaded = load_stage.run(ctx, ctx.recipe.model)
    registered = load_model("acne_mobilenetv2")
    assert loaded.spec.task == "classification" and loaded.spec.labels == ACNE_GRADES and loaded.spec.metric == "macro_f1"
    assert loaded.provenance["described_by"] == "recipe"
    images = task_data(registered.spec, 6, split="test").inputs
    x = torch.from_numpy(images.astype(np.float32))  # the app's RGB 0-255 pixels, NHWC
    contract = InputContract()
    with torch.inference_mode():
        ours = DeviceContract(loaded.module, loaded.spec, contract)(x)
        theirs = DeviceContract(registered.module, registered.spec, contract)(x)
    assert theirs.abs().max() > 1.0  # real logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_described_bgr_model_exports_and_passes_with_its_contract_in_the_manifest(tmp_path):
    recipe = _files(tmp_path, "bgr")
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = tmp_path / "out" / "described_bgr"
    manifest = json.loads((bundle / "manifest.json").read_text())
    norm = manifest["input"]["normalization"]
    assert manifest["input"]["color_order"] == "RGB" and norm["network_color_order"] == "BGR"
    assert norm["mean"] == pytest.approx([m / 255 for m in BGR_MEAN]) and norm["std"] == pytest.approx([s / 255 for s in BGR_STD])
    assert manifest["labels"] == list(ACNE_GRADES)
    assert manifest["outputs"] == [{"name": "grade_logits", "description": "acne grade scores", "unit": ""}]
    assert manifest["model"]["described_by"] == "recipe" and manifest["model"]["metric"] == "macro_f1"
    assert [a["verification"]["passed"] for a in manifest["artifacts"]] == [True, True]

    import onnxruntime as ort

    registered = load_model("acne_mobilenetv2")
    images = task_data(registered.spec, 4, split="test").inputs.astype(np.float32)
    session = ort.InferenceSession(str(bundle / manifest["artifacts"][0]["path"]))
    got = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[None]})[0] for x in images])
    with torch.inference_mode():
        want = DeviceContract(registered.module, registered.spec, InputContract())(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


# --- the recipe's description, validated as it parses ------------------------------------------------------

def _parse(model: dict, **rest):
    return parse_recipe({"name": "x", "model": model, "targets": [{"format": "onnx"}], **rest})


USER = {"name": "net.py:build", "checkpoint": "w.safetensors"}


def test_full_description_parses_with_shorthands():
    model = _parse({**USER, "task": "classification", "input_size": 48, "labels": ["face", "no_face"],
                    "normalization": {"pixel_range": "0-255", "mean": 127.5, "std": 128}}).model
    assert model.input_size == (48, 48)
    assert model.normalization.mean == (127.5,) * 3 and model.normalization.std == (128.0,) * 3
    mean, std = model.normalization.unit_scale()
    assert mean == pytest.approx((0.5,) * 3) and std == pytest.approx((128 / 255,) * 3)


@pytest.mark.parametrize("model, message", [
    (USER, "model 'net.py:build' borrows no spec (spec_from), so the recipe must give model.task, model.input_size, model.normalization"),
    ({**USER, "task": "segmentation", "input_size": 64, "normalization": {}},
     "so the recipe must give model.labels"),
    ({**USER, "task": "regression", "input_size": 64, "normalization": {}}, "so the recipe must give model.outputs"),
    ({"name": "acne_mobilenetv2", "labels": ["a"]}, "model.labels describes your own model ('file.py:factory' or '.pt2'); "
                                                    "the registered model 'acne_mobilenetv2' declares its own labels"),
    ({**USER, "spec_from": "acne_mobilenetv2", "task": "detection"}, "model.task: unknown task 'detection'; use one of classification"),
    ({**USER, "spec_from": "acne_mobilenetv2", "labels": ["a", "b", "a"]}, "model.labels: labels names a more than once"),
    ({**USER, "spec_from": "acne_mobilenetv2", "normalization": {"std": [1, 0, 1]}}, "model.normalization.std: std must be > 0"),
    ({**USER, "spec_from": "acne_mobilenetv2", "normalization": {"mean": [1, 2]}},
     "model.normalization.mean: mean is one number or one per channel (three), got 2"),
    ({**USER, "spec_from": "acne_mobilenetv2", "input_size": [4, 4]}, "model.input_size: sizes are 8 to 8192 pixels"),
    ({**USER, "spec_from": "acne_mobilenetv2", "outputs": [{"name": "x", "shape": [0]}]}, "shape sizes must be >= 1 or null"),
])
def test_description_errors_name_the_key_and_the_cause(model, message):
    with pytest.raises(RecipeError) as info:
        _parse(model)
    assert message in str(info.value)


def test_unset_description_leaves_every_existing_recipes_hash_unchanged():
    recipe = _parse({"name": "acne_mobilenetv2"})
    assert '"model":{"checkpoint":null,"name":"acne_mobilenetv2","spec_from":null}' in recipe.canonical_json()


# --- the model checked against its description before anything converts ----------------------------------

MISFITS = '''
import torch
from torch import nn


class PNetLike(nn.Module):
    """Returns (box regression, face probability), as MTCNN's P-Net does."""

    def __init__(self):
        super().__init__()
        self.conv, self.box, self.prob = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1), nn.Conv2d(8, 2, 1)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.box(h), torch.softmax(self.prob(h), dim=1)


class RNetLike(nn.Module):
    """Returns (box regression, face probability) per crop, as MTCNN's R-Net does."""

    def __init__(self):
        super().__init__()
        self.conv, self.box, self.prob = nn.Conv2d(3, 8, 3, stride=2), nn.Linear(8, 4), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean((2, 3))
        return self.box(h), torch.softmax(self.prob(h), dim=1)


class Detector(nn.Module):
    """Returns a list of dicts, as torchvision's detection models do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        h = self.conv(x).mean((2, 3))
        return [{"boxes": h[i:i + 1], "scores": h[i, :1]} for i in range(len(x))]


class Upscale3(nn.Module):
    """A ×3 upscaler."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 27, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(nn.functional.pixel_shuffle(self.conv(x), 3))


class NaNs(nn.Module):
    """A classifier whose weights diverged: every score is NaN."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3)) * float("nan")


def raises():
    raise ValueError("build() needs a config file")


def not_a_module():
    return {"conv.weight": torch.zeros(2, 3, 3, 3)}


class Fixed(nn.Module):
    """Takes 24 x 24 inputs only (a flatten into a fixed Linear)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 2, 3, stride=2), nn.Linear(2 * 11 * 11, 4)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))
'''


def _misfit(tmp_path: Path, factory: str, model_yaml: str) -> Path:
    import importlib.util

    (tmp_path / "misfits.py").write_text(MISFITS)
    spec = importlib.util.spec_from_file_location("misfits", tmp_path / "misfits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)  # untrained on purpose: these models only have to be refused
    built = getattr(module, factory)() if factory not in ("raises", "not_a_module") else torch.nn.Conv2d(3, 2, 3)
    save_file(built.state_dict(), str(tmp_path / f"{factory}.safetensors"))
    return write_recipe(tmp_path / f"{factory}.yaml", f"""
name: misfit
model: {{name: 'misfits.py:{factory}', checkpoint: {factory}.safetensors, {model_yaml}}}
targets: [{{format: onnx}}, {{format: tflite}}, {{format: coreml}}]
evaluation: {{n: 8}}
benchmark: {{enabled: false}}
""")


ACNE = f"task: classification, labels: {LABELS}, normalization: {{}}"
REFUSALS = {
    "tuple_undeclared": ("PNetLike", "spec_from: acne_mobilenetv2, input_size: 12",
                         "the model returns 2 values but declares 1 outputs (logits) — fix: declare one output per returned value"),
    "wrong_task_output": ("PNetLike", "spec_from: acne_mobilenetv2, input_size: 12, outputs: [box, prob]",
                          "the classification task reads output 'box' as class scores over the labels of shape [4] per image, "
                          "but it has shape [4, 10, 10] — fix: name the output that holds class scores over the labels in model.task_output"),
    "declared_shape": ("PNetLike", "task: segmentation, labels: [face, background], normalization: {}, input_size: 12, "
                       "outputs: [{name: box, shape: [4, 1, 1]}, prob]",
                       "output 'box' has shape [4, 10, 10] per image, but model.outputs declares [4, 1, 1] — "
                       "fix: declare shape [4, 10, 10] for 'box'"),
    "list_of_dicts": ("Detector", f"{ACNE}, input_size: 32",
                      "output 'logits' of the model is a dict, not a tensor — fix: return tensors only"),
    "x3_under_x2": ("Upscale3", "spec_from: texture_sr",
                    "the super_resolution task reads output 'hr_image' as an RGB image of shape [3, 128, 128] per image, "
                    "but it has shape [3, 192, 192]"),
    "input_size": ("Fixed", f"{ACNE}, input_size: 32",
                   "the model fails on one input of the declared size [1, 3, 32, 32]: RuntimeError: mat1 and mat2 shapes cannot "
                   "be multiplied"),
    "factory_raises": ("raises", f"{ACNE}, input_size: 32",
                       "the model factory misfits.py:raises raised ValueError: build() needs a config file — "
                       "fix: make the factory build the model with no arguments"),
    "factory_not_module": ("not_a_module", f"{ACNE}, input_size: 32",
                           "the model factory misfits.py:not_a_module returned dict, not a torch.nn.Module — "
                           "fix: return the network itself (an nn.Module), not its class, weights or outputs"),
    "synthetic_labels": ("Fixed", "task: classification, labels: [a, b, c, d], normalization: {}, input_size: 24",
                         "evaluation uses the synthetic generator, but the synthetic images are labelled with the acne grades "
                         "clear, mild, moderate, severe, not a, b, c, d — fix: evaluate on your own labelled images"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_model_that_does_not_fit_its_description_is_refused_at_load_in_one_line(tmp_path, case):
    factory, model_yaml, message = REFUSALS[case]
    recipe = _misfit(tmp_path, factory, model_yaml)
    ctx = _context(recipe)
    with pytest.raises(BadInputError) as info:
        load_stage.run(ctx, ctx.recipe.model)
    assert message in info.value.one_line()


def test_a_float_model_that_outputs_nan_is_named_as_such_before_anything_converts(tmp_path):
    recipe = _misfit(tmp_path, "NaNs", f"{ACNE}, input_size: 32")
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "skinkit: error: the float PyTorch model itself outputs NaN or Inf in 'logits' on 8 of 8 images (first: image 0); "
        "no artifact can be judged against it — fix: check the checkpoint (did training diverge?) and the input contract "
        "(normalization, pixel range) with `skinkit describe RECIPE`")
    assert not (tmp_path / "out" / "misfit").exists()


def test_the_task_reads_the_output_task_output_names(tmp_path):
    recipe = _misfit(tmp_path, "RNetLike", "task: classification, labels: [non_face, face], input_size: 24, "
                                           "normalization: {pixel_range: 0-255, mean: 127.5, std: 128}, "
                                           "outputs: [{name: box, shape: [4]}, {name: face_prob, shape: [2]}], task_output: face_prob")
    ctx = _context(recipe.parent / recipe.name)
    ctx = Context(recipe=ctx.recipe.model_copy(update={"evaluation": ctx.recipe.evaluation.model_copy(update={"ground_truth": "float"})}),
                  recipe_path=ctx.recipe_path, staging=ctx.staging, log_path=ctx.log_path)
    spec = load_stage.run(ctx, ctx.recipe.model).spec
    from toolkit.tasks import get_task

    task = get_task("classification")
    assert spec.task_output == "face_prob" and task.reads(spec) == ("face_prob",)
    outputs = {"box": np.zeros((3, 4)), "face_prob": np.ones((3, 2))}
    assert task.read(outputs, spec) is outputs["face_prob"]
    with pytest.raises(RecipeError, match=r"model.task_output 'prob' is not one of model.outputs \(box, face_prob\)"):
        _parse({**USER, "spec_from": "acne_mobilenetv2", "outputs": ["box", "face_prob"], "task_output": "prob"})


def test_refusal_through_the_cli_converts_nothing(tmp_path):
    recipe = _misfit(tmp_path, "Upscale3", "spec_from: texture_sr")
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "convert" not in proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("skinkit: error: the super_resolution task reads output 'hr_image'")
    assert last.endswith("but it has shape [3, 192, 192] — fix: set model.output_size: [192, 192] if that is what the model makes, "
                         "or give the model the contract's output size [128, 128]")
    assert not (tmp_path / "out" / "misfit").exists()


def test_a_dense_outputs_size_and_unnamed_classes_come_from_the_model(tmp_path):
    (tmp_path / "seg.py").write_text("from toolkit.models.segmenter import SkinSegmenter\n\n"
                                     "def build():\n    return SkinSegmenter(base=16)\n")
    recipe = write_recipe(tmp_path / "seg.yaml", f"""
name: seg
model: {{name: 'seg.py:build', checkpoint: {shipped_checkpoint('skin_segmenter')}, task: segmentation, input_size: 160,
         labels: [non_skin, skin], normalization: {{mean: {list(IMAGENET_MEAN)}, std: {list(IMAGENET_STD)}}}}}
targets: [{{format: onnx}}]
""")
    ctx = _context(recipe)
    spec = load_stage.run(ctx, ctx.recipe.model).spec
    assert spec.input_size == (160, 160) and spec.output_size == (160, 160)
    assert [o.name for o in spec.outputs] == ["logits"] and spec.metric == "miou"
    assert spec.tolerances["int8"].min_agreement == 0.97  # the segmentation task's defaults


# --- no labels: the float model's decisions stand for the truth --------------------------------------------

def test_unlabelled_folder_and_labels_synthetic_data_cannot_annotate(tmp_path):
    """The trained classifier under class names of the user's own, on a folder of photos with no labels.csv."""
    import cv2

    recipe = _files(tmp_path, "in_model")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(task_data(load_model("acne_mobilenetv2").spec, 20, split="val").inputs):
        cv2.imwrite(str(photos / f"p{i:02d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    text = recipe.read_text().replace(LABELS, "[none, few, some, many]")
    text = text.replace("evaluation: {n: 24}", "evaluation: {source: folder, folder: photos, ground_truth: float}")
    text = text.replace("  - {format: tflite, precision: fp32}", "  - {format: tflite, precision: int8}\ncalibration: {n: 16}")
    recipe.write_text(text)
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = tmp_path / "out" / "described_in_model"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["evaluation"]["ground_truth"] == "float" and manifest["evaluation"]["n"] == 20
    assert manifest["labels"] == ["none", "few", "some", "many"]
    onnx, int8 = manifest["artifacts"]
    # Against float's own decisions, float scores 1 and the fp32 artifact matches it exactly.
    assert onnx["verification"]["task_metric"]["float"] == 1.0 and onnx["verification"]["task_metric"]["artifact"] == 1.0
    assert int8["verification"]["task_metric"]["artifact"] == pytest.approx(int8["verification"]["agreement"], abs=0.2)
    assert "the float model's own decisions stand for the ground truth" in (bundle / "report.md").read_text()

    labelled = text.replace("ground_truth: float", "ground_truth: labels")
    recipe.write_text(labelled)
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out2"))
    assert proc.returncode == 1 and "has 20 images but no labels.csv" in proc.stderr


def test_regression_outputs_synthetic_data_does_not_annotate_are_judged_against_float(tmp_path):
    """The trained classifier's four logits as four named scalars of a regression model."""
    ctx = _context(_files(tmp_path, "in_model"))
    names = [f"score_{g}" for g in ACNE_GRADES]
    recipe = ctx.recipe.model_copy(update={
        "model": ctx.recipe.model.model_copy(update={"task": "regression", "labels": None,
                                                     "outputs": tuple(ctx.recipe.model.outputs[0].model_copy(update={"name": n, "shape": None})
                                                                      for n in names)}),
        "evaluation": ctx.recipe.evaluation.model_copy(update={"ground_truth": "float"})})
    ctx = Context(recipe=recipe, recipe_path=ctx.recipe_path, staging=ctx.staging, log_path=ctx.log_path)
    from toolkit.compress import stage as compress_stage
    from toolkit.verify import evaluation

    loaded = load_stage.run(ctx, recipe.model)
    assert [o.name for o in loaded.spec.outputs] == names and loaded.spec.metric == "mae"
    evaluated = evaluation.run(ctx, compress_stage.run(ctx, loaded))
    ref = np.concatenate([evaluated.reference[n] for n in names], axis=1)
    np.testing.assert_array_equal(evaluated.data.targets, ref.astype(np.float32))

    with pytest.raises(BadInputError, match="the synthetic data annotates hydration, tewl, not score_clear"):
        load_stage.run(Context(recipe=recipe.model_copy(update={"evaluation": ctx.recipe.evaluation.model_copy(
            update={"ground_truth": "labels"})}), recipe_path=ctx.recipe_path, staging=ctx.staging, log_path=ctx.log_path), recipe.model)


# --- skinkit train on a recipe: your own architecture, trained on the synthetic data ------------------------

SMALL = '''
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))
'''


def test_train_a_described_model_then_export_it(tmp_path):
    (tmp_path / "small.py").write_text(SMALL)
    recipe = write_recipe(tmp_path / "small.yaml", f"""
name: small
model: {{name: 'small.py:build', checkpoint: weights/small.safetensors, task: classification, input_size: 64,
         labels: {LABELS}, normalization: {{mean: {list(IMAGENET_MEAN)}, std: {list(IMAGENET_STD)}}}}}
targets: [{{format: onnx}}, {{format: tflite, precision: int8}}]
calibration: {{n: 16}}
evaluation: {{n: 32}}
benchmark: {{enabled: false}}
""")
    proc = run_cli("train", str(recipe), "--epochs", "3", "--n-train", "320")
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((tmp_path / "weights" / "small.json").read_text())
    assert card["command"] == "skinkit train small.yaml --epochs 3 --n-train 320 --lr 0.001 --batch-size 32 --seed 0"
    assert card["data"]["train"]["n"] == 320
    assert len(card["training"]["loss_per_epoch"]) == 3 and card["training"]["loss_per_epoch"][-1] < card["training"]["loss_per_epoch"][0]
    assert set(load_file(str(tmp_path / "weights" / "small.safetensors"))) == set(_small_state_keys(tmp_path))

    proc = run_cli("train", str(recipe), "--epochs", "1", "--n-train", "32")
    assert proc.returncode == 1 and "weights/small.safetensors exists: training would replace those weights" in proc.stderr

    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "small" / "manifest.json").read_text())
    assert manifest["model"]["training_card"]["command"] == card["command"]


def _small_state_keys(tmp_path: Path) -> list[str]:
    namespace: dict = {}
    exec((tmp_path / "small.py").read_text(), namespace)
    return list(namespace["build"]().state_dict())


@pytest.mark.parametrize("model_yaml, message", [
    ("checkpoint: null, spec_from: acne_mobilenetv2", "model.checkpoint is not set, so the trained weights have nowhere to go"),
    ("checkpoint: w.pt, spec_from: acne_mobilenetv2", "model.checkpoint w.pt is not a .safetensors file, which training writes"),
    ("checkpoint: w.safetensors, task: classification, input_size: 64, normalization: {}, labels: [a, b, c, d]",
     "training uses the synthetic generator, but the synthetic images are labelled with the acne grades"),
])
def test_train_refuses_what_it_cannot_train(tmp_path, model_yaml, message):
    (tmp_path / "small.py").write_text(SMALL)
    recipe = write_recipe(tmp_path / "r.yaml", f"name: r\nmodel: {{name: 'small.py:build', {model_yaml}}}\ntargets: [{{format: onnx}}]\n")
    proc = run_cli("train", str(recipe))
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_skinkit_describe_prints_the_contract_the_model_would_be_exported_with(tmp_path):
    proc = run_cli("describe", str(_files(tmp_path, "bgr")))
    assert proc.returncode == 0, proc.stderr[-2000:]
    described = json.loads(proc.stdout)
    assert described["task"] == "classification" and described["metric"] == "macro_f1"
    assert described["architecture"] == "user model (variants.py:build)"
    assert described["input"]["shape"] == [1, 224, 224, 3] and described["input"]["normalization"]["network_color_order"] == "BGR"
    assert described["outputs"] == [{"name": "grade_logits", "description": "acne grade scores", "unit": "", "shape": [4],
                                     "read_by_task": True}]
    assert described["tolerances"]["int8"] == {"min_cosine": 0.98, "min_agreement": 0.95, "max_metric_drop": 0.03}
    assert described["provenance"]["described_by"] == "recipe"

    proc = run_cli("describe", str(_misfit(tmp_path, "Upscale3", "spec_from: texture_sr")))
    assert proc.returncode == 1 and "but it has shape [3, 192, 192]" in proc.stderr and "Traceback" not in proc.stderr
