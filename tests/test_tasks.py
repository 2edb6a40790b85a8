"""Each task plug-in through its interface, and models with several named outputs through the gate."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import onnx_details
from toolkit.backends.base import Runner
from toolkit.convert.base import Artifact
from toolkit.data import skin_tone as subgroups
from toolkit.data.records import TaskData
from toolkit.errors import BadInputError
from toolkit.load.contract import DeviceContract, InputContract
from toolkit.registry import ModelSpec, OutputSpec, Tolerance, TrainingConfig, get_spec
from toolkit.tasks import TASKS, get_task
from toolkit.tasks.data import task_data
from toolkit.verify.gate import DEFAULT_MIN_COSINE, output_criteria, reference_outputs, verify_artifact
from toolkit.verify.stats import Bootstrap

# A registered model of each task, and the metric names the task yields for it.
EXPECTED = {
    "classification": ("acne_mobilenetv2", {"accuracy", "macro_f1", "agreement", "calibration_error", "recall.clear",
                                            "recall.mild", "recall.moderate", "recall.severe"}, {"accuracy", "macro_f1"}),
    "regression": ("hydration_vit", {"mae", *(f"{m}{s}.{o}" for m in ("mae", "rmse", "pearson", "icc") for s in ("", "_vs_float")
                                              for o in ("hydration", "tewl")),
                                     *(f"{b}.{o}" for b in ("ba_bias", "ba_loa_low", "ba_loa_high") for o in ("hydration", "tewl"))},
                   {"mae", "mae_hydration", "mae_tewl"}),
    "segmentation": ("lesion_unet", {"miou", "dice_mean", "pixel_accuracy", "agreement",
                                     *(f"{m}.{c}" for m in ("dice", "iou", "area_error")
                                       for c in ("background", "melanin", "trouble", "wrinkle", "pore"))},
                     {"miou", "dice_mean", "pixel_accuracy"}),
    "super_resolution": ("texture_sr", {"psnr", "ssim", "psnr_vs_float"}, {"psnr"}),
    "instance_segmentation": ("skin_regions_maskrcnn",
                              {"mask_ap50", "mask_ap", "box_ap50", "box_ap", "mask_iou", "count_error", "agreement",
                               *(f"recall.{r}" for r in ("forehead", "cheek_left", "cheek_right", "nose", "chin"))},
                              {"mask_ap50", "mask_ap", "box_ap50", "box_ap", "mask_iou", "count_error"}),
}


def _outputs(spec: ModelSpec, n: int, rng) -> dict[str, np.ndarray]:
    """Plausible float outputs of ``spec``'s network (channel-first), by name."""
    if spec.task == "regression":
        return {o.name: rng.normal(50, 10, (n, 1)).astype(np.float32) for o in spec.outputs}
    if spec.task == "instance_segmentation":  # K detections: boxes, scores, classes, masks, count
        k, m = spec.outputs[0].shape[0], spec.outputs[3].shape[-1]
        corner = rng.uniform(0, 0.5, (n, k, 2))
        return {"boxes": np.concatenate([corner, corner + rng.uniform(0.1, 0.5, (n, k, 2))], -1).astype(np.float32),
                "scores": np.sort(rng.uniform(0, 1, (n, k)), 1)[:, ::-1].astype(np.float32),
                "classes": rng.integers(0, len(spec.labels), (n, k)).astype(np.float32),
                "masks": rng.uniform(0, 1, (n, k, m, m)).astype(np.float32), "count": np.full((n, 1), k / 2, np.float32)}
    if spec.output_size:
        channels = len(spec.labels) or 3
        return {spec.outputs[0].name: rng.uniform(0, 1, (n, channels, *spec.output_size)).astype(np.float32)}
    return {spec.outputs[0].name: rng.normal(0, 1, (n, len(spec.labels))).astype(np.float32)}


def test_every_task_is_registered_and_unknown_names_list_them():
    assert set(TASKS) == set(EXPECTED)
    with pytest.raises(BadInputError) as err:
        get_task("detection")
    assert all(name in err.value.fix for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_metric_names_on_a_tiny_synthetic_case(name):
    # Setup: three synthetic images and noisy float / artifact outputs of the task's shape.
    model, metric_names, quick_names = EXPECTED[name]
    spec, task = get_spec(model), get_task(name)
    data = task_data(spec, 3, split="test")
    rng = np.random.default_rng(0)
    ref = _outputs(spec, 3, rng)
    out = {k: v + rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in ref.items()}

    # Execute: the task's view of the outputs, its per-image statistics and their aggregate.
    o, r = task.read(out, spec), task.read(ref, spec)
    stats = task.per_image(o, data.targets, r, labels=spec.labels)
    sums = {k: np.ones((1, 3)) @ v for k, v in stats.items()}
    got = task.aggregate(sums, labels=spec.labels, output_names=tuple(x.name for x in spec.outputs))
    quick = task.quick_metrics(o, data.targets, num_classes=len(spec.labels), output_names=tuple(x.name for x in spec.outputs))

    # Assert: the metric set, the headline among it, agreement where the task decides, extras.
    assert set(got) == metric_names and all(v.shape == (1,) for v in got.values())
    assert set(quick) == quick_names
    assert task.headline in got and set(task.reads(spec)) <= set(ref)
    assert (task.agreement(r, o) is None) == (task.agreement_label is None) == ("agreement" not in got)
    extras = task.extras(stats, stats, labels=spec.labels)
    assert set(extras) == ({"confusion"} if name == "classification" else set())
    assert bool(task.report_lines(extras, labels=spec.labels)) == (name == "classification")
    assert all(len(all_stats) == 3 for all_stats in stats.values())


def _spec(name: str, task: str, outputs: tuple[str, ...], labels: tuple[str, ...], factory) -> ModelSpec:
    tol = Tolerance(min_agreement=0.9, max_metric_drop=10.0)  # no numeric bounds: the default cosine applies
    return ModelSpec(name=name, task=task, architecture="toy", factory=factory, description="toy", input_size=(16, 16),
                     outputs=tuple(OutputSpec(o, o) for o in outputs), tolerances={t: tol for t in DEFAULT_MIN_COSINE},
                     training=TrainingConfig(n_train=1, n_val=1, epochs=1, batch_size=1, lr=1e-3), labels=labels,
                     metric=get_task(task).headline, higher_is_better=get_task(task).higher_is_better)


class TwoHeads(nn.Module):
    """Logits and an embedding, as a tuple."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        f = self.features(x)
        return self.head(f), f


class DictHeads(nn.Module):
    """Two scalar regressions, as a dict."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.a, self.b = nn.Linear(4, 1), nn.Linear(4, 1)

    def forward(self, x):
        f = self.features(x)
        return {"b_out": self.b(f) + 20.0, "a_out": self.a(f) + 50.0}


def _gate(spec: ModelSpec, module: nn.Module, targets: np.ndarray, perturb) -> tuple[dict, dict]:
    """Float reference and a fake artifact (the reference, perturbed per output) through the gate."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 24
    images = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    wrapped = DeviceContract(module.eval(), spec, InputContract()).eval()
    x = images.astype(np.float32)
    ref = reference_outputs(wrapped, x)
    out = {k: perturb(k, v) for k, v in ref.items()}
    tone = subgroups.measure(images)
    data = TaskData(images, targets, tone.groups, np.full(n, np.nan))
    art = Artifact(format="onnx", precision="int8", path=Path("toy.onnx"), seconds=0.0, details=onnx_details(x, ref))
    res = verify_artifact(art, Runner(lambda _: out, check="fake"), spec=spec, data=data, x=x, ref=ref,
                          tolerance=spec.tolerance("int8"), layout="nhwc", tone=tone, boot=Bootstrap.draw(n, replicates=50))
    return ref, res


def test_tuple_model_every_output_verified_and_named():
    spec = _spec("toy_tuple", "classification", ("logits", "embedding"), ("a", "b", "c"), TwoHeads)
    targets = np.arange(24) % 3
    ref, res = _gate(spec, TwoHeads(), targets, lambda k, v: v)
    assert list(ref) == ["logits", "embedding"] and ref["logits"].shape == (24, 3) and ref["embedding"].shape == (24, 8)
    crit = {c["name"]: c for c in res["criteria"]}
    for o in ("logits", "embedding"):
        assert crit[f"outputs finite (no NaN/Inf) [{o}]"]["passed"] and crit[f"output shape [{o}]"]["passed"]
    # The task reads the logits; the embedding, which it does not read, is held to the tier's default cosine.
    assert crit["cosine vs float [embedding]"]["bound"] == DEFAULT_MIN_COSINE["int8"]
    assert "cosine vs float [logits]" not in crit and "top-1 agreement with float" in crit
    assert set(res["numerics_by_output"]) == {"logits", "embedding"} and res["passed"]

    # A broken embedding fails the gate on its own, even though every decision agrees.
    _, res = _gate(spec, TwoHeads(), targets, lambda k, v: -v if k == "embedding" else v)
    failed = [c["name"] for c in res["criteria"] if not c["passed"]]
    assert failed == ["cosine vs float [embedding]"] and not res["passed"]


def test_dict_model_outputs_named_in_spec_order_and_each_gated():
    spec = _spec("toy_dict", "regression", ("a_out", "b_out"), (), DictHeads)
    targets = np.stack([np.full(24, 50.0), np.full(24, 20.0)], axis=1).astype(np.float32)
    ref, res = _gate(spec, DictHeads(), targets, lambda k, v: v + (0.01 if k == "a_out" else 0.0))
    assert list(ref) == ["a_out", "b_out"] and all(v.shape == (24, 1) for v in ref.values())
    crit = {c["name"]: c for c in res["criteria"]}
    assert {"output shape [a_out]", "output shape [b_out]"} <= set(crit)
    assert "cosine vs float [a_out]" not in crit, "outputs the task reads follow the tier's bounds (none here)"
    assert {"mae.a_out", "mae.b_out", "ba_bias.a_out"} <= set(res["metrics"])
    assert res["metrics"]["ba_bias.a_out"]["artifact"]["value"] == pytest.approx(0.01, abs=1e-5)
    assert res["numerics_by_output"]["b_out"]["max_abs_error"] == 0.0 and res["passed"]


def test_a_missing_output_fails_by_name():
    spec = _spec("toy_tuple", "classification", ("logits", "embedding"), ("a", "b", "c"), TwoHeads)
    module = TwoHeads()
    wrapped = DeviceContract(module.eval(), spec, InputContract()).eval()
    ref = reference_outputs(wrapped, np.zeros((2, 16, 16, 3), np.float32))
    crit = {c["name"]: c for c in output_criteria(ref, {"logits": ref["logits"]})}
    assert crit["output shape [logits]"]["passed"] and not crit["output shape [embedding]"]["passed"]


def test_device_contract_returns_a_tuple_with_image_outputs_channel_last():
    class ImageAndScore(nn.Module):
        def forward(self, x):
            return x[:, :2] * 2, x.mean((1, 2, 3))[:, None]

    spec = _spec("toy_dense", "segmentation", ("mask", "score"), ("bg", "fg"), ImageAndScore)
    x = torch.rand(2, 16, 16, 3) * 255
    nhwc = DeviceContract(ImageAndScore(), spec, InputContract(layout="nhwc"))(x)
    nchw = DeviceContract(ImageAndScore(), spec, InputContract(layout="nchw"))(x.permute(0, 3, 1, 2))
    assert isinstance(nhwc, tuple) and nhwc[0].shape == (2, 16, 16, 2) and nhwc[1].shape == (2, 1)
    assert nchw[0].shape == (2, 2, 16, 16) and torch.allclose(nhwc[0].permute(0, 3, 1, 2), nchw[0])
    with pytest.raises(BadInputError, match="returns 2 values but declares 1 outputs"):
        DeviceContract(ImageAndScore(), _spec("one", "segmentation", ("mask",), ("bg", "fg"), ImageAndScore),
                       InputContract())(x)
