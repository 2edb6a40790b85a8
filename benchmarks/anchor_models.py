"""The architectures of the published latency figures in ``benchmarks/devices/anchors.yaml``, in plain torch.

Each is built at the input size its figure was measured at, with random weights (MACs and element counts do not
depend on them), exported to ONNX and read by skinkit's own ONNX cost reader, so that an anchor's op-class breakdown
is counted exactly as an artifact's is. Where the publisher states a parameter count, ``PUBLISHED_PARAMS`` holds it
and ``describe`` checks the reconstruction against it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.models._blocks import ConvBNAct
from toolkit.models.mobilenetv2 import InvertedResidual, MobileNetV2
from toolkit.models.resnet import ResNet50


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN general x4v3 (xinntao/Real-ESRGAN ``srvgg_arch``): 64 features, 32 convs, PReLU, pixel shuffle,
    plus the nearest-upsampled input."""

    def __init__(self, feat: int = 64, convs: int = 32, scale: int = 4):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, feat, 3, 1, 1), nn.PReLU(feat)]
        for _ in range(convs):
            layers += [nn.Conv2d(feat, feat, 3, 1, 1), nn.PReLU(feat)]
        layers += [nn.Conv2d(feat, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale)]
        self.body, self.scale = nn.Sequential(*layers), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


class XLSR(nn.Module):
    """XLSR x4 (Ayazoglu 2021; quic/aimet-model-zoo ``XLSRRelease``): three grouped-conv G-blocks, a 16-channel
    residual conv, depth-to-space and a clipped ReLU."""

    def __init__(self, scale: int = 4):
        super().__init__()

        def gblock() -> nn.Module:
            return nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1, groups=4), nn.ReLU(), nn.Conv2d(32, 32, 1))

        self.residual = nn.Conv2d(3, 16, 3, 1, 1)
        self.cnn = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 32, 1), gblock(), gblock(), gblock())
        self.tail = nn.Sequential(nn.Conv2d(48, 32, 1), nn.ReLU(), nn.Conv2d(32, 3 * scale * scale, 3, 1, 1))
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tail(torch.cat([self.cnn(x), self.residual(x)], 1))
        return torch.clamp(self.shuffle(y), 0, 1)


class _DilatedInvertedResidual(InvertedResidual):
    """An inverted residual whose depthwise conv is dilated (DeepLab's output stride 16)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, dilation: int):
        super().__init__(cin, cout, stride, expand)
        dw = self.block[-2][0]
        dw.dilation, dw.padding = (dilation, dilation), (dilation, dilation)


class DeepLabV3PlusMobileNet(nn.Module):
    """DeepLabV3+ on MobileNetV2 (jfzhang95/pytorch-deeplab-xception, ``backbone='mobilenet'``, output stride 16):
    low-level features after the 24-channel stage, ASPP (rates 1, 6, 12, 18 and image pooling, 256 channels),
    decoder 48 + 256 → two 3×3 convs → classes, bilinear upsampling to the input."""

    _SETTINGS = ((1, 16, 1, 1, 1), (6, 24, 2, 2, 1), (6, 32, 3, 2, 1), (6, 64, 4, 2, 1), (6, 96, 3, 1, 1),
                 (6, 160, 3, 1, 2), (6, 320, 1, 1, 2))

    def __init__(self, classes: int = 21):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s, d in self._SETTINGS:
            for i in range(n):
                block = _DilatedInvertedResidual if d > 1 else InvertedResidual
                layers.append(block(cin, c, s if i == 0 else 1, t, d) if d > 1 else block(cin, c, s if i == 0 else 1, t))
                cin = c
        self.low, self.high = nn.Sequential(*layers[:4]), nn.Sequential(*layers[4:])
        self.aspp = nn.ModuleList([ConvBNAct(320, 256, 1, act=nn.ReLU)] + [self._atrous(r) for r in (6, 12, 18)])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNAct(320, 256, 1, act=nn.ReLU))
        self.project = ConvBNAct(5 * 256, 256, 1, act=nn.ReLU)
        self.reduce = ConvBNAct(24, 48, 1, act=nn.ReLU)
        self.decode = nn.Sequential(ConvBNAct(304, 256, 3, act=nn.ReLU), ConvBNAct(256, 256, 3, act=nn.ReLU), nn.Conv2d(256, classes, 1))

    @staticmethod
    def _atrous(rate: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(320, 256, 3, 1, rate, dilation=rate, bias=False), nn.BatchNorm2d(256), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.low(x)
        high = self.high(low)
        pooled = F.interpolate(self.pool(high), size=high.shape[2:], mode="bilinear", align_corners=True)
        y = self.project(torch.cat([b(high) for b in self.aspp] + [pooled], 1))
        y = F.interpolate(y, size=low.shape[2:], mode="bilinear", align_corners=True)
        y = self.decode(torch.cat([y, self.reduce(low)], 1))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=True)


# name -> (builder, input height × width, what it is)
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int], str]] = {
    "mobilenetv2": (lambda: MobileNetV2(num_classes=1000), (224, 224), "MobileNetV2 1.0, 224²"),
    "resnet50": (lambda: ResNet50(num_classes=1000), (224, 224), "ResNet-50, 224²"),
    "real_esrgan_general_x4v3": (SRVGGNetCompact, (128, 128), "Real-ESRGAN general x4v3 (SRVGGNetCompact), 128² → 512²"),
    "xlsr": (XLSR, (128, 128), "XLSR x4, 128² → 512²"),
    "deeplabv3_plus_mobilenet": (DeepLabV3PlusMobileNet, (513, 513), "DeepLabV3+ MobileNetV2, output stride 16, 513²"),
}
# Parameter counts their publishers state (millions): a check that the reconstruction is the published network.
PUBLISHED_PARAMS = {"mobilenetv2": 3.50, "resnet50": 25.6, "deeplabv3_plus_mobilenet": 5.80}


def describe(name: str) -> dict:
    """An anchor model's cost as skinkit's ONNX reader counts it: GMACs, parameters (M), op-class breakdown."""
    import onnx
    import onnxsim

    from toolkit.backends.onnx.graph import cost

    build, (h, w), _ = MODELS[name]
    module = build().eval()
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        path = Path(tmp) / f"{name}.onnx"
        torch.onnx.export(module, (torch.zeros(1, 3, h, w),), str(path), dynamo=False, opset_version=18)
        simplified, ok = onnxsim.simplify(onnx.load(str(path)))  # folds shape arithmetic, so every shape is known
        if ok:
            onnx.save(simplified, str(path))
        c = cost(path)
    params_m = sum(p.numel() for p in module.parameters()) / 1e6
    if name in PUBLISHED_PARAMS and abs(params_m - PUBLISHED_PARAMS[name]) > 0.02 * PUBLISHED_PARAMS[name]:
        raise ValueError(f"{name}: {params_m:.2f} M parameters, published {PUBLISHED_PARAMS[name]} M")
    return {"gmacs": round(c.macs / 1e9, 4), "params_m": round(params_m, 3),
            **{k: round(v / 1e9 if k in ("conv", "depthwise", "matmul") else v / 1e6, 4) for k, v in c.op_classes.items()}}
