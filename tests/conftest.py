import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("SKINKIT_CACHE", "off")  # each test converts for itself; the cache tests name their own
# The suite keeps both cores busy with its own workers: each export converts in its own process (the second-process
# tests ask for two).
os.environ.setdefault("SKINKIT_CONVERT_WORKERS", "1")


def run_cli(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``skinkit`` as a user would, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def onnx_details(x, ref: dict) -> dict:
    """What an ONNX file of a network with input ``x`` and outputs ``ref`` reads back as (``inspect``), so a fake
    artifact in a gate test passes the ONNX backend's structural checks (fp32: float initializers; int8: a QDQ graph
    with per-channel int8 weights) and the test judges what it means to."""
    from toolkit.backends.onnx.convert import INPUT_NAME, OPSET

    return {"opset": OPSET, "inputs": [{"name": INPUT_NAME, "shape": [1, *x.shape[1:]]}],
            "outputs": [{"name": k, "shape": [1, *v.shape[1:]]} for k, v in ref.items()], "weight_dtypes": {"FLOAT": 4},
            "op_histogram": {"QuantizeLinear": 2, "DequantizeLinear": 4},
            "quantization": {"format": "QDQ", "weighted_ops": 2, "weight_dtypes": {"INT8": 2}, "per_channel_weights": 2,
                             "convs": 1, "per_channel_convs": 1, "activation_dtypes": {"UINT8": 2}}}


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def default_bundle(tmp_path_factory):
    """One real export of the trained default model to every format (a reduced evaluation set keeps it quick)."""
    tmp = tmp_path_factory.mktemp("export")
    recipe = write_recipe(tmp / "acne.yaml", """
name: acne_test
model: {name: acne_mobilenetv2}
targets:
  - {format: onnx, precision: fp32}
  - {format: tflite, precision: fp32}
  - {format: tflite, precision: fp16}
  - {format: coreml, precision: fp16}
evaluation: {n: 48}
benchmark: {warmup: 1, repeats: 3}
""")
    proc = run_cli("export", str(recipe), "--out", str(tmp / "out"), "--json")
    return tmp / "out", proc


# The smallest bring-your-own network there is: a strided conv and a linear layer, four acne grades (``build``).
TINY_NET = '''
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


def build():
    return Net()
'''
