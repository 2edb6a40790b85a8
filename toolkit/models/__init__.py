"""The reference skin models, each registered with its spec.

Widths are reduced from the published architectures so that each model trains on a 2-core CPU in
minutes and ships as a checkpoint of a few MB; the block structure (and so the conversion and
quantization behaviour) is the published one.
"""

from __future__ import annotations

from toolkit.data.synthetic import ACNE_GRADES, SEGMENTATION_CLASSES
from toolkit.registry import ModelSpec, OutputSpec, Tolerance, TrainingConfig, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_CLS_TOL = {
    "fp32": Tolerance(max_abs=1e-3, min_cosine=0.99999, min_agreement=0.995, max_metric_drop=0.005),
    # Logits span about ±20: float16 keeps ~3 significant digits, so 0.25 is ~1 % of the range.
    "fp16": Tolerance(max_abs=0.25, min_cosine=0.9995, min_agreement=0.98, max_metric_drop=0.01),
    # Quantized tiers: elementwise error is not meaningful at 8 bits; agreement and macro-F1 are.
    # Margins are judged on the upper end of the drop's 95 % CI: on 200 images that end sits about
    # 1.5 points above a drop of zero once a few decisions differ (published w8a8 MobileNetV2: −1.8 top-1).
    "int8": Tolerance(min_cosine=0.98, min_agreement=0.95, max_metric_drop=0.03),
    "lowbit": Tolerance(min_cosine=0.95, min_agreement=0.90, max_metric_drop=0.05),
}
_CLS_OUT = (OutputSpec("logits", "unnormalized log-probabilities over acne grades"),)
_CLS_TRAIN = TrainingConfig(n_train=2400, n_val=300, epochs=5, batch_size=32, lr=3e-3)


def _acne(name: str, architecture: str, factory, description: str, training: TrainingConfig = _CLS_TRAIN) -> ModelSpec:
    return register_model(ModelSpec(
        name=name, task="classification", architecture=architecture, factory=factory, description=description,
        input_size=(224, 224), outputs=_CLS_OUT, labels=ACNE_GRADES, tolerances=_CLS_TOL, training=training,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, metric="macro_f1",
    ))


def _mobilenetv2():
    from toolkit.models.mobilenetv2 import MobileNetV2
    return MobileNetV2(num_classes=len(ACNE_GRADES), width_mult=0.5)


def _efficientnet_b0():
    from toolkit.models.efficientnet import EfficientNetB0
    return EfficientNetB0(num_classes=len(ACNE_GRADES), width_mult=0.35)


def _resnet50():
    from toolkit.models.resnet import ResNet50
    return ResNet50(num_classes=len(ACNE_GRADES), base_width=16)


def _vit():
    from toolkit.models.vit import SkinPriorViT
    # Standardize targets inside the graph: hydration ~ 55 ± 23 a.u., TEWL ~ 22 ± 7 g/m²/h.
    return SkinPriorViT(num_outputs=2, img_size=224, patch=16, dim=128, depth=4, heads=4,
                        mean=IMAGENET_MEAN, std=IMAGENET_STD, output_scale=(23.0, 7.0), output_shift=(55.0, 22.0))


def _unet():
    from toolkit.models.unet import UNet
    return UNet(num_classes=len(SEGMENTATION_CLASSES), base=8, depth=4)


def _segmenter():
    from toolkit.models.segmenter import SkinSegmenter
    return SkinSegmenter(base=16)


def _sr():
    from toolkit.models.srgan import SRGenerator
    return SRGenerator(scale=2, channels=32, blocks=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


_acne("acne_mobilenetv2", "MobileNetV2 (width 0.5)", _mobilenetv2,
      "Acne severity grade from a face image (default reference model).")
_acne("acne_efficientnet_b0", "EfficientNet-B0 (width 0.35; SiLU, squeeze-excite)", _efficientnet_b0,
      "Acne severity grade from a face image.",
      # SE + SiLU at width 0.35 sits at chance for ~3 epochs before it learns: 6 epochs, 2,400 images.
      TrainingConfig(n_train=2400, n_val=300, epochs=6, batch_size=32, lr=3e-3))
_acne("acne_resnet50", "ResNet-50 (bottlenecks 3-4-6-3, base width 16)", _resnet50,
      "Acne severity grade from a face image.",
      TrainingConfig(n_train=2000, n_val=300, epochs=4, batch_size=32, lr=2e-3))

register_model(ModelSpec(
    name="hydration_vit", task="regression", architecture="skin-prior adaptive ViT (patch 16, dim 128, depth 4)",
    factory=_vit, description="Skin hydration and transepidermal water loss from a face crop.",
    input_size=(224, 224),
    outputs=(OutputSpec("hydration", "skin hydration (corneometer-like)", "a.u."),
             OutputSpec("tewl", "transepidermal water loss", "g/m²/h")),
    tolerances={
        "fp32": Tolerance(max_abs=0.01, min_cosine=0.99999, max_metric_drop=0.05),
        "fp16": Tolerance(max_abs=0.5, min_cosine=0.9999, max_metric_drop=0.2),
        "int8": Tolerance(min_cosine=0.995, max_metric_drop=1.0),
        "lowbit": Tolerance(min_cosine=0.99, max_metric_drop=2.0),
    },
    training=TrainingConfig(n_train=2400, n_val=300, epochs=6, batch_size=32, lr=1e-3),
    mean=IMAGENET_MEAN, std=IMAGENET_STD, metric="mae", higher_is_better=False,
))

register_model(ModelSpec(
    name="lesion_unet", task="segmentation", architecture="U-Net (4 levels, base 8, bilinear up)",
    factory=_unet, description="Melanin, trouble (acne/inflammation), wrinkle and pore regions, plus background.",
    input_size=(192, 192), output_size=(192, 192), labels=SEGMENTATION_CLASSES,
    outputs=(OutputSpec("logits", "per-pixel class scores, channel-last like the input"),),
    tolerances={
        "fp32": Tolerance(max_abs=1e-3, min_cosine=0.99999, min_agreement=0.999, max_metric_drop=0.002),
        "fp16": Tolerance(max_abs=0.25, min_cosine=0.9995, min_agreement=0.995, max_metric_drop=0.01),
        "int8": Tolerance(min_cosine=0.98, min_agreement=0.97, max_metric_drop=0.02),
        "lowbit": Tolerance(min_cosine=0.95, min_agreement=0.95, max_metric_drop=0.04),
    },
    training=TrainingConfig(n_train=1200, n_val=200, epochs=6, batch_size=16, lr=3e-3),
    mean=IMAGENET_MEAN, std=IMAGENET_STD, metric="miou",
))

register_model(ModelSpec(
    name="skin_segmenter", task="segmentation", architecture="depthwise-separable encoder, bilinear decoder",
    factory=_segmenter, description="Skin / non-skin mask; filters the input of the acne classifier.",
    input_size=(224, 224), output_size=(224, 224), labels=("non_skin", "skin"),
    outputs=(OutputSpec("logits", "per-pixel class scores, channel-last like the input"),),
    tolerances={
        "fp32": Tolerance(max_abs=1e-3, min_cosine=0.99999, min_agreement=0.999, max_metric_drop=0.002),
        "fp16": Tolerance(max_abs=0.25, min_cosine=0.9995, min_agreement=0.995, max_metric_drop=0.01),
        "int8": Tolerance(min_cosine=0.98, min_agreement=0.97, max_metric_drop=0.02),
        "lowbit": Tolerance(min_cosine=0.95, min_agreement=0.95, max_metric_drop=0.04),
    },
    training=TrainingConfig(n_train=1500, n_val=200, epochs=3, batch_size=32, lr=5e-3),
    mean=IMAGENET_MEAN, std=IMAGENET_STD, metric="miou", extra={"target": "skin_mask"},
))

register_model(ModelSpec(
    name="texture_sr", task="super_resolution", architecture="SRGAN generator (×2, 4 residual blocks, 32 ch)",
    factory=_sr, description="×2 super-resolution of skin texture patches (64×64 → 128×128).",
    input_size=(64, 64), output_size=(128, 128),
    outputs=(OutputSpec("hr_image", "high-resolution RGB, channel-last like the input", "[0, 1]"),),
    tolerances={
        "fp32": Tolerance(max_abs=1e-3, min_cosine=0.99999, max_metric_drop=0.05),
        "fp16": Tolerance(max_abs=0.02, min_cosine=0.9999, max_metric_drop=0.3),
        "int8": Tolerance(min_cosine=0.999, max_metric_drop=0.5),
        "lowbit": Tolerance(min_cosine=0.998, max_metric_drop=1.0),
    },
    training=TrainingConfig(n_train=1500, n_val=200, epochs=4, batch_size=16, lr=2e-3),
    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), metric="psnr",
))
