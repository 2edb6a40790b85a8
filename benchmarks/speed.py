"""skinkit's speed targets (issue #19), measured side by side in one run and printed with their distance.

    python benchmarks/speed.py [--skip-resnet] [--json out.json]

1. Conversion against the raw converters: the default model's five targets of the issue (ONNX fp32, TFLite fp32 /
   fp16 / int8 with 64 calibration images, Core ML fp16) converted by calling each converter by hand in a fresh
   process (``torch.onnx.export``, ``litert_torch.convert``, ai-edge-quantizer's fp16 and int8 recipes,
   ``coremltools.convert``; each library's import counted, as it is in skinkit's stage), against skinkit's convert
   stage on the same targets (``skinkit export``, cache off; the stage includes the evaluation set and its float
   reference, the calibration images, the static-output check and reading back every artifact). Target ≤ 1.0×.
2. The default export (``export_recipes/acne_mobilenetv2.yaml``: those five and Core AI fp16, 200 images), wall
   seconds of a fresh process with an empty conversion cache, as a new user runs it. Target ≤ 40 s. Also the
   five-target export (the default before Core AI joined it).
3. A re-export with only a tolerance changed (the same cache). Target ≤ 15 s.
4. A full-size ResNet-50 (``benchmarks/byo_models/resnet.py``, weights from ``benchmarks/byo.py``'s short training),
   six targets (ONNX fp32 / int8, TFLite fp32 / fp16 / int8, Core ML fp16), 32 images: wall seconds and peak
   memory (the summed resident memory of the export and its second conversion process, sampled every 0.1 s);
   again converting in one process (``SKINKIT_CONVERT_WORKERS=1``). Targets ≤ 90 s and ≤ 2 GB.

Each measurement runs in its own process, one after the other; nothing else should run on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIVE = ("onnx:fp32", "tflite:fp32", "tflite:fp16", "tflite:int8", "coreml:fp16")
RESNET_TARGETS = ("onnx:fp32", "onnx:int8", "tflite:fp32", "tflite:fp16", "tflite:int8", "coreml:fp16")
STAGE_LINE = re.compile(r"^\[export\] \d+/\d+ (\w+): ([\d.]+) s", re.M)


def raw_converters(out: Path) -> dict:
    """The five targets converted by hand (run in a fresh process by ``--raw``): seconds per converter call, each
    library's import included; preparing the network and the calibration images is not counted."""
    import numpy as np
    import torch

    from toolkit.load.contract import DeviceContract, InputContract
    from toolkit.load.loader import load_model
    from toolkit.tasks.data import task_data

    loaded = load_model("acne_mobilenetv2")
    spec = loaded.spec
    net = DeviceContract(loaded.module, spec, InputContract(layout="nhwc", pixel_range="0-255")).eval()
    h, w = spec.input_size
    sample = torch.rand(1, h, w, 3) * 255
    calibration = task_data(spec, 64, split="calib", labelled=False).inputs.astype(np.float32)
    seconds = {}

    t = time.perf_counter()
    torch.onnx.export(net, (sample,), str(out / "m.onnx"), dynamo=True, opset_version=18, input_names=["image"])
    seconds["onnx:fp32"] = time.perf_counter() - t

    t = time.perf_counter()
    import litert_torch

    litert_torch.convert(net, (sample,)).export(str(out / "m.tflite"))
    seconds["tflite:fp32"] = time.perf_counter() - t

    t = time.perf_counter()
    from ai_edge_quantizer import qtyping, quantizer, recipe

    q = quantizer.Quantizer(str(out / "m.tflite"))
    q.update_quantization_recipe(
        regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING,
        op_config=qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True))
    (out / "m_fp16.tflite").write_bytes(q.quantize().quantized_model)
    seconds["tflite:fp16"] = time.perf_counter() - t

    t = time.perf_counter()
    q = quantizer.Quantizer(str(out / "m.tflite"))
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(out / "m.tflite")).get_signature_list()
    signature = next(iter(signatures))
    input_name = signatures[signature]["inputs"][0]
    stats = q.calibrate({signature: [{input_name: calibration[i:i + 1]} for i in range(len(calibration))]})
    (out / "m_int8.tflite").write_bytes(q.quantize(stats).quantized_model)
    seconds["tflite:int8"] = time.perf_counter() - t

    t = time.perf_counter()
    import coremltools as ct

    traced = torch.jit.trace(net, (sample,))
    ct.convert(traced, inputs=[ct.TensorType(name="image", shape=tuple(sample.shape))], convert_to="mlprogram",
               compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS16).save(str(out / "m.mlpackage"))
    seconds["coreml:fp16"] = time.perf_counter() - t
    return {k: round(v, 2) for k, v in seconds.items()}


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants now, MB (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            parents[int(entry)], rss[int(entry)] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(rss.get(p, 0) for p in tree) / 2**20


def run_measured(cmd: list[str], *, env: dict, stderr_path: Path, timeout: float | None = None) -> tuple[int, float, float]:
    """Run ``cmd``: exit code (negative: stopped at ``timeout``), wall seconds, and the peak of the summed resident
    memory of the process and its children (an export may convert in two processes at once), sampled every 0.1 s."""
    t0, peak = time.perf_counter(), 0.0
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        while proc.poll() is None:
            peak = max(peak, tree_rss_mb(proc.pid))
            if timeout is not None and time.perf_counter() - t0 > timeout:
                proc.kill()
            time.sleep(0.1)
    return proc.returncode, time.perf_counter() - t0, peak


def skinkit_export(recipe: Path, out: Path, cache: str, workers: str = "auto") -> dict:
    """One ``skinkit export`` in a fresh process (``workers``: its ``SKINKIT_CONVERT_WORKERS``): wall seconds, each
    stage's seconds, each conversion's own seconds (the manifest's, wherever it ran), peak memory."""
    env = {**os.environ, "SKINKIT_CACHE": cache, "SKINKIT_CONVERT_WORKERS": workers}
    code, wall, peak = run_measured([sys.executable, "-m", "toolkit.cli", "export", str(recipe), "--out", str(out)], env=env,
                                    stderr_path=out.with_suffix(".stderr"))
    text = out.with_suffix(".stderr").read_text()
    found = list(out.glob("*/manifest.json"))
    manifest = json.loads(found[0].read_text()) if found else {"artifacts": []}
    if code not in (0, 3):
        raise SystemExit(f"skinkit export {recipe} failed ({code}): {text.strip().splitlines()[-1] if text.strip() else ''}")
    return {"wall_s": round(wall, 1), "exit": code, "peak_mb": round(peak),
            "stages": {k: float(v) for k, v in STAGE_LINE.findall(text)},
            "targets": {Path(a["path"]).name: a.get("conversion_seconds") for a in manifest["artifacts"]}}


def default_recipe(folder: Path, name: str, targets: tuple[str, ...] | None, tolerance: float | None = None) -> Path:
    """The default recipe, with other targets or one tolerance added, written beside a copy of it."""
    text = (ROOT / "export_recipes" / "acne_mobilenetv2.yaml").read_text()
    text = text.replace("name: acne_mobilenetv2", f"name: {name}", 1)
    if targets is not None:
        body = "".join(f"  - {{format: {t.split(':')[0]}, precision: {t.split(':')[1]}}}\n" for t in targets)
        text = re.sub(r"targets:\n(  - .*\n)+", "targets:\n" + body, text)
    if tolerance is not None:
        text += f"tolerances:\n  fp16: {{max_metric_drop: {tolerance}}}\n"
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def resnet_recipe(folder: Path) -> Path:
    from benchmarks.byo import MODELS, recipe_text, weights

    ckpt, _ = weights("resnet50", MODELS["resnet50"], epochs=2, n_train=192, batch_size=8)
    recipe = json.loads(recipe_text("resnet50", MODELS["resnet50"], ckpt, list(RESNET_TARGETS), 32))
    recipe["calibration"] = {"n": 64}
    recipe["benchmark"] = {"enabled": True}
    path = folder / "resnet50.yaml"
    path.write_text(json.dumps(recipe, indent=1))
    return path


def verdict(value: float, target: float) -> str:
    return f"met ({value:g} ≤ {target:g})" if value <= target else f"missed by {value - target:.3g} ({value:g} > {target:g}, {value / target:.2f}×)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--raw", type=Path, help=argparse.SUPPRESS)  # the raw converters' process
    args = ap.parse_args()
    if args.raw:
        print(json.dumps(raw_converters(args.raw)))
        return
    work = Path(tempfile.mkdtemp(prefix="skinkit-speed-"))
    cache = work / "cache"
    results: dict = {}
    try:
        t0 = time.perf_counter()
        (work / "raw").mkdir()
        proc = subprocess.run([sys.executable, __file__, "--raw", str(work / "raw")], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"raw converters failed: {proc.stderr.strip().splitlines()[-1]}")
        raw = json.loads(proc.stdout.strip().splitlines()[-1])
        results["raw"] = {"targets": raw, "serial_s": round(sum(raw.values()), 1), "process_s": round(time.perf_counter() - t0, 1)}
        results["five"] = skinkit_export(default_recipe(work, "five", FIVE), work / "five", "off")
        results["default"] = skinkit_export(default_recipe(work, "acne_mobilenetv2", None), work / "default", str(cache))
        results["reexport"] = skinkit_export(default_recipe(work, "acne_mobilenetv2", None, tolerance=0.02), work / "again", str(cache))
        if not args.skip_resnet:
            results["resnet50"] = skinkit_export(resnet_recipe(work), work / "resnet50", "off")
            results["resnet50_one_process"] = skinkit_export(resnet_recipe(work), work / "resnet50_one", "off", workers="1")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(report(results))


def report(r: dict) -> str:
    raw, five = r["raw"], r["five"]
    convert = five["stages"]["convert"]
    per_target = sum(v or 0.0 for v in five["targets"].values())
    lines = ["| measurement | seconds | target | result |", "|---|---:|---|---|",
             f"| raw converters, five targets, serial (one process) | {raw['serial_s']} | | "
             + ", ".join(f"{k} {v}" for k, v in raw["targets"].items()) + " |",
             f"| skinkit convert stage, same five targets | {convert} | ≤ 1.0× raw | {verdict(round(convert / raw['serial_s'], 2), 1.0)} |",
             f"| … the five conversions' own seconds, summed (two processes) | {per_target:.1f} | | {per_target / raw['serial_s']:.2f}× raw |",
             f"| five-target export, wall | {five['wall_s']} | | stages {_stages(five)} |",
             f"| default export (six targets, 200 images, empty cache), wall | {r['default']['wall_s']} | ≤ 40 s | "
             f"{verdict(r['default']['wall_s'], 40)}; stages {_stages(r['default'])} |",
             f"| re-export, only a tolerance changed, wall | {r['reexport']['wall_s']} | ≤ 15 s | "
             f"{verdict(r['reexport']['wall_s'], 15)}; stages {_stages(r['reexport'])} |"]
    if "resnet50" in r:
        res = r["resnet50"]
        lines += [f"| full-size ResNet-50, six targets, 32 images, wall | {res['wall_s']} | ≤ 90 s | {verdict(res['wall_s'], 90)}; "
                  f"stages {_stages(res)} |",
                  f"| full-size ResNet-50, peak memory (MB) | {res['peak_mb']} | ≤ 2048 MB | {verdict(res['peak_mb'], 2048)} |"]
    if "resnet50_one_process" in r:
        one = r["resnet50_one_process"]
        lines += [f"| … converting in one process (SKINKIT_CONVERT_WORKERS=1), wall | {one['wall_s']} | ≤ 90 s | "
                  f"{verdict(one['wall_s'], 90)}; stages {_stages(one)} |",
                  f"| … converting in one process, peak memory (MB) | {one['peak_mb']} | ≤ 2048 MB | {verdict(one['peak_mb'], 2048)} |"]
    return "\n".join(lines)


def _stages(run: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in run["stages"].items())


if __name__ == "__main__":
    main()
