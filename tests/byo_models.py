"""The bring-your-own architectures of ``benchmarks/byo_models/`` as tests use them: loaded by file path as a
recipe names them, given weights that make every layer matter, and wrapped in the device contract."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from toolkit.load.contract import DeviceContract, InputContract
from toolkit.registry import ModelSpec, OutputSpec, Tolerance, TrainingConfig

ROOT = Path(__file__).resolve().parent.parent
BYO = ROOT / "benchmarks" / "byo_models"


@dataclass(frozen=True)
class Case:
    """One architecture at a test-sized input: ``file.py:factory`` with keyword arguments, and the contract
    a recipe would give it (task, named outputs)."""

    ref: str
    size: int
    task: str
    outputs: tuple[str, ...]
    kwargs: dict = field(default_factory=dict)
    target: str | None = None  # the Core ML deployment target, where not the default

    @property
    def labels(self) -> tuple[str, ...]:
        return {"classification": ("clear", "mild", "moderate", "severe"), "segmentation": ("non_skin", "skin")}.get(self.task, ())


# Inputs as small as each architecture allows while every layer still sees more than one pixel: DeepLab's
# 3 x 3 atrous branches (rates 6, 12, 18 on a 1/16 map) need 128 px to reach past their centre tap.
CASES = {
    "resnet50": Case("resnet.py:resnet50", 64, "classification", ("logits",)),
    "efficientnet_b0": Case("efficientnet.py:efficientnet_b0", 64, "classification", ("logits",)),
    "mobilenetv3_large": Case("mobilenetv3.py:mobilenetv3_large", 64, "classification", ("logits",)),
    "deit_tiny": Case("deit.py:deit_tiny", 64, "classification", ("logits",), {"img_size": 64}),
    # timm-style fused attention: iOS18 programs keep it as one scaled_dot_product_attention op.
    "deit_tiny_sdpa": Case("deit.py:deit_tiny", 64, "classification", ("logits",), {"img_size": 64, "fused_attention": True}, "iOS18"),
    # Layer scale at its 1e-6 initialisation would hide every block behind the residual; 0.1 lets them show.
    "convnext_tiny": Case("convnext.py:convnext_tiny", 64, "classification", ("logits",), {"layer_scale": 0.1}),
    "deeplabv3": Case("deeplabv3.py:deeplabv3", 128, "segmentation", ("logits",)),
    "espcn": Case("espcn.py:espcn", 32, "super_resolution", ("hr_image",)),
    "pnet": Case("mtcnn.py:pnet", 24, "regression", ("box", "face_probability")),
    "rnet": Case("mtcnn.py:rnet", 24, "regression", ("box", "face_probability")),
    "onet": Case("mtcnn.py:onet", 48, "regression", ("box", "landmarks", "face_probability")),
}


def factory(ref: str):
    """The callable ``benchmarks/byo_models/<file>.py:<name>`` names, imported from its file as skinkit's
    loader imports a user's factory."""
    file, _, name = ref.rpartition(":")
    path = BYO / file
    spec = importlib.util.spec_from_file_location(f"byo_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def trained_like(net: nn.Module, size: int, *, seed: int = 0) -> nn.Module:
    """Weights that exercise every op as a trained network would: PReLU slopes differ per channel (at their
    shared 0.25 initialisation coremltools emits a leaky_relu instead), batch norms get a random affine and
    running statistics from one batch of noise, so activations stay near unit scale through 50 layers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.45 + 0.05)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: after one batch, that batch's statistics
        net.train()
        net(torch.randn(4, 3, size, size, generator=g))
    return net.eval()


def spec_for(name: str, case: Case, net: nn.Module) -> ModelSpec:
    tol = Tolerance(min_cosine=0.99999)
    return ModelSpec(name=name, task=case.task, architecture=case.ref, factory=lambda: net, description=f"{name} (benchmarks/byo_models)",
                     input_size=(case.size, case.size), outputs=tuple(OutputSpec(o, o) for o in case.outputs),
                     tolerances={"fp32": tol, "fp16": tol}, training=TrainingConfig(n_train=1, n_val=1, epochs=1, batch_size=1, lr=1e-3),
                     labels=case.labels)


def build(name: str, *, seed: int = 0) -> tuple[nn.Module, ModelSpec, DeviceContract]:
    """The network (eval mode, trained-like weights), its spec, and the device contract around it."""
    case = CASES[name]
    torch.manual_seed(seed)
    net = trained_like(factory(case.ref)(**case.kwargs), case.size, seed=seed)
    spec = spec_for(name, case, net)
    return net, spec, DeviceContract(net, spec, InputContract()).eval()
