"""`skinkit inspect` reads any artifact — .onnx, .tflite, .mlpackage, .aimodel — in a fresh process in under 3 s,
from the file alone: no converter or ML framework is imported (coremltools' import alone took 13-31 s, which
made an .mlpackage take that long)."""

import json
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT, TINY_NET, run_cli, write_recipe

LIMIT_S = 3.0


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """One small export to every format: the tiny bring-your-own network (a strided conv and a linear layer)."""
    tmp = tmp_path_factory.mktemp("inspect")
    (tmp / "tiny.py").write_text(TINY_NET)
    namespace: dict = {}
    exec(TINY_NET, namespace)
    torch.manual_seed(0)
    torch.save(namespace["build"]().state_dict(), tmp / "tiny.pt")
    recipe = write_recipe(tmp / "tiny.yaml", """
name: tiny_all
model: {name: 'tiny.py:build', checkpoint: tiny.pt, spec_from: acne_mobilenetv2}
targets:
  - {format: onnx, precision: fp32}
  - {format: onnx, precision: int8}
  - {format: tflite, precision: int8}
  - {format: coreml, precision: fp16}
  - {format: coreai, precision: fp32}
calibration: {n: 8}
evaluation: {n: 8, bootstrap: 100}
benchmark: {enabled: false}
""")
    proc = run_cli("export", str(recipe), "--out", str(tmp / "out"), "--quiet")
    assert proc.returncode in (0, 3), proc.stderr[-2000:]  # a random-weight net may miss a gate: the files are what count
    return tmp / "out" / "tiny_all" / "artifacts"


def _inspect(path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "inspect", str(path), "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    return time.perf_counter() - start, proc


def test_onnx_fp32(artifacts):
    # execute
    seconds, proc = _inspect(artifacts / "tiny_fp32.onnx")
    # assert
    assert proc.returncode == 0, proc.stderr
    assert seconds < LIMIT_S, f"inspect took {seconds:.2f} s"
    d = json.loads(proc.stdout)
    assert d["format"] == "onnx" and d["opset"] == 18
    assert d["inputs"] == [{"name": "image", "dtype": "float", "shape": [1, 224, 224, 3]}]
    assert d["outputs"] == [{"name": "logits", "dtype": "float", "shape": [1, 4]}]
    assert d["op_histogram"]["Conv"] == 1 and d["op_histogram"]["Gemm"] == 1
    assert "quantization" not in d


def test_onnx_int8(artifacts):
    # execute
    seconds, proc = _inspect(artifacts / "tiny_int8.onnx")
    # assert
    assert proc.returncode == 0, proc.stderr
    assert seconds < LIMIT_S, f"inspect took {seconds:.2f} s"
    d = json.loads(proc.stdout)
    assert d["inputs"] == [{"name": "image", "dtype": "float", "shape": [1, 224, 224, 3]}]  # float I/O: the contract
    assert d["quantization"] == {"format": "QDQ", "weighted_ops": 2, "weight_dtypes": {"INT8": 2}, "per_channel_weights": 2,
                                 "convs": 1, "per_channel_convs": 1, "activation_dtypes": {"UINT8": d["op_histogram"]["QuantizeLinear"]}}


def test_tflite(artifacts):
    # execute
    seconds, proc = _inspect(artifacts / "tiny_int8.tflite")
    # assert
    assert proc.returncode == 0, proc.stderr
    assert seconds < LIMIT_S, f"inspect took {seconds:.2f} s"
    d = json.loads(proc.stdout)
    assert d["format"] == "tflite"
    (inp,) = d["inputs"]
    assert inp["shape"] == [1, 224, 224, 3] and inp["dtype"] == "int8" and inp["quantization"] == {"scale": 1.0, "zero_point": -128}
    assert d["op_histogram"]["CONV_2D"] == 1 and d["op_histogram"]["FULLY_CONNECTED"] == 1
    assert d["metadata"]["model"] == "tiny" and d["metadata"]["precision"] == "int8"


def test_coreml_mlpackage(artifacts):
    # execute
    seconds, proc = _inspect(artifacts / "tiny_fp16.mlpackage")
    # assert
    assert proc.returncode == 0, proc.stderr
    assert seconds < LIMIT_S, f"inspect took {seconds:.2f} s"
    d = json.loads(proc.stdout)
    assert d["format"] == "coreml" and d["classifier"] is True
    assert d["inputs"] == [{"name": "image", "type": "imageType", "shape": [1, 3, 224, 224], "color_space": "RGB"}]
    assert d["op_histogram"]["conv"] == 1 and d["op_histogram"]["linear"] == 1
    assert d["weight_dtypes"] == {"FLOAT16": 2}
    assert d["metadata"]["model"] == "tiny" and d["metadata"]["labels"] == ["clear", "mild", "moderate", "severe"]
    assert d["compute_units"]["neural_engine"] in ("all ops eligible", "partial")


def test_coreml_human_output(artifacts):
    # execute
    proc = run_cli("inspect", str(artifacts / "tiny_fp16.mlpackage"), timeout=120)
    # assert
    assert proc.returncode == 0, proc.stderr
    assert "input  image: imageType [1, 3, 224, 224]" in proc.stdout
    assert "weights FLOAT16×2" in proc.stdout and "Neural Engine (static" in proc.stdout


def test_coreai_aimodel(artifacts):
    # execute
    seconds, proc = _inspect(artifacts / "tiny_fp32.aimodel")
    # assert
    assert proc.returncode == 0, proc.stderr
    assert seconds < LIMIT_S, f"inspect took {seconds:.2f} s"
    d = json.loads(proc.stdout)
    assert d["format"] == "coreai"
    assert d["inputs"] == [{"name": "image", "dtype": "f32", "shape": [1, 224, 224, 3]}]
    assert d["op_histogram"]["conv2d"] == 1 and d["weight_dtypes"] == {"f32": 2}
    assert d["metadata"]["model"] == "tiny"
