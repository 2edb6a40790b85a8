"""Export and verification cost against model size: seconds per stage, peak memory and artifact bytes of one
``skinkit export`` per model, from a 14 k-parameter segmenter to a full-size ResNet-50.

    python benchmarks/scaling.py [--models acne_mobilenetv2,resnet50] [--targets onnx:fp32,tflite:int8] [--n 32] [--json out.json]

Models: the registered reference models that have a single-model recipe (their shipped weights, their recipe's
input contract) and four full-size architectures in plain torch from ``benchmarks/byo_models/`` (ResNet-50,
EfficientNet-B0, MobileNetV3-Large, DeiT-S = ViT-S/16, each with a 4-class head), trained briefly here with
``benchmarks/byo.py``'s ``weights()`` (``skinkit train``, cached under ``benchmarks/.byo/``). Every model gets the
same targets, evaluation and calibration sizes, and no host benchmark unless ``--benchmark``.

Per model, one ``skinkit export`` process with the conversion cache off (``SKINKIT_CACHE=off``): its wall seconds,
the seconds of each stage (its ``[export] i/6 stage: s`` lines on stderr), its peak resident memory (the export's
and its second conversion process's, summed, sampled every 0.1 s), the
bytes of every artifact it wrote and how many passed their gate. Size: parameters, and FLOPs of one float forward
pass at the model's input size (``torch.utils.flop_counter``: 2 per multiply-add of convolutions, matmuls and
attention; element-wise ops are not counted). The "convert" stage includes the evaluation set and its float
reference, which it computes before converting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.byo import CACHE, MODELS_DIR, ROOT, recipe_text, weights
from benchmarks.byo import MODELS as BYO
from benchmarks.speed import tree_rss_mb

# Registered reference models with a recipe of their own and one network, smallest first.
REFERENCE = ("skin_segmenter", "texture_sr", "lesion_unet", "acne_efficientnet_b0", "acne_mobilenetv2", "hydration_vit",
             "acne_resnet50")
FULL_SIZE = {
    "mobilenetv3_large": BYO["mobilenetv3_large"],
    "efficientnet_b0": BYO["efficientnet_b0"],
    "deit_small": {**BYO["deit_tiny"], "ref": "deit.py:deit_small"},
    "resnet50": BYO["resnet50"],
}
MODELS = (*REFERENCE, *FULL_SIZE)
# Core AI is left out by default: Apple's Linux runtime takes ~0.7 s per MobileNetV2 image and ~20 s per ResNet-50 one.
TARGETS = ("onnx:fp32", "tflite:fp32", "tflite:fp16", "tflite:int8", "coreml:fp16")
STAGES = ("load", "compress", "convert", "verify", "benchmark", "bundle")
STAGE_LINE = re.compile(r"^\[export\] \d+/\d+ (\w+): ([\d.]+) s")
# The targets for a full-size ResNet-50 export.
RESNET50_PEAK_MB, RESNET50_WALL_S = 2048, 90


def recipe(name: str, targets: list[str], *, n: int, calibration_n: int, benchmark: bool, epochs: int, n_train: int,
           batch_size: int) -> tuple[dict, str]:
    """The model's recipe with this run's targets, sizes and benchmark setting, and where its weights came from."""
    if name in FULL_SIZE:
        if not (CACHE / "weights" / f"{name}.safetensors").exists():  # minutes to an hour on two cores: say so
            print(f"{name}: training, {epochs} epochs of {n_train} images …", file=sys.stderr, flush=True)
        ckpt, source = weights(name, FULL_SIZE[name], epochs=epochs, n_train=n_train, batch_size=batch_size)
        r = json.loads(recipe_text(name, FULL_SIZE[name], ckpt, targets, n))
        return _sized(r, n=n, calibration_n=calibration_n, benchmark=benchmark), source["weights"]
    import yaml

    r = yaml.safe_load((ROOT / "export_recipes" / f"{name}.yaml").read_text())
    r["targets"] = [{"format": t.split(":")[0], "precision": t.split(":")[1]} for t in targets]
    card = json.loads((ROOT / "toolkit" / "models" / "weights" / f"{name}.json").read_text())
    t = card["training"]
    source = f"shipped weights (skinkit train, {t['epochs']} epochs of {card['data']['train']['n']} synthetic images)"
    return _sized(r, n=n, calibration_n=calibration_n, benchmark=benchmark), source


def _sized(r: dict, *, n: int, calibration_n: int, benchmark: bool) -> dict:
    r["evaluation"] = {**r.get("evaluation", {}), "n": n}
    r["calibration"] = {**r.get("calibration", {}), "n": calibration_n}
    r["benchmark"] = {**r.get("benchmark", {}), "enabled": benchmark}
    return r


def size(name: str) -> tuple[int, int]:
    """Parameters and FLOPs of one float forward pass of the network as exported (4-class heads for the full-size
    ones), batch 1 at its input size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if name in FULL_SIZE:
        import importlib.util

        file, fn = FULL_SIZE[name]["ref"].split(":")
        spec = importlib.util.spec_from_file_location(f"byo_{Path(file).stem}", MODELS_DIR / file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        net, hw = getattr(module, fn)(), (FULL_SIZE[name]["input_size"],) * 2
    else:
        from toolkit.registry import get_spec

        spec = get_spec(name)
        net, hw = spec.factory(), spec.input_size
    net.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.zeros(1, 3, *hw))
    return sum(p.numel() for p in net.parameters()), counter.get_total_flops()


def export_one(name: str, r: dict, timeout: float) -> dict:
    """One ``skinkit export`` process, conversion cache off; stopped after ``timeout`` seconds."""
    work = CACHE / "scaling" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "recipe.yaml").write_text(json.dumps(r, indent=1))  # YAML is a superset of JSON
    # The checkout's toolkit, whatever the environment has installed.
    env = {**os.environ, "SKINKIT_CACHE": "off", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    peak = 0.0
    with open(work / "stdout", "w") as out, open(work / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "export", str(work / "recipe.yaml"), "--out", str(work / "out"),
                                 "--json"], cwd=ROOT, env=env, stdout=out, stderr=err)
        while proc.poll() is None:  # the export and its second conversion process together
            peak = max(peak, tree_rss_mb(proc.pid))
            if time.perf_counter() - t0 > timeout:
                proc.kill()
            time.sleep(0.1)
    code = proc.returncode
    row = {"exit": code, "wall_s": round(time.perf_counter() - t0, 1), "peak_mb": round(peak)}
    stderr = (work / "stderr").read_text()
    row["stages"] = {m[1]: float(m[2]) for m in map(STAGE_LINE.match, stderr.splitlines()) if m}
    if code < 0:
        row["error"] = f"stopped after {timeout:.0f} s, in stage {STAGES[min(len(row['stages']), len(STAGES) - 1)]}"
        return row
    try:
        summary = json.loads((work / "stdout").read_text())
    except json.JSONDecodeError:
        summary = {}
    arts = summary.get("artifacts") or []
    row.update(artifacts=len(arts), passed=sum(bool(a["passed"]) for a in arts), artifact_bytes=sum(a["size_bytes"] for a in arts),
               failed=[a["path"] for a in arts if not a["passed"]] + [f["key"] for f in summary.get("failed_targets") or []])
    if not arts:
        lines = stderr.strip().splitlines()
        row["error"] = (summary.get("error") or (lines[-1] if lines else f"exit {code}"))[:400]
    return row


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x: y grows as x to this power. None under two distinct sizes."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def growth(rows: list[dict]) -> str:
    done = [r for r in rows if "error" not in r]
    costs = {"convert s": [r["stages"].get("convert") for r in done], "verify s": [r["stages"].get("verify") for r in done],
             "peak MB": [r["peak_mb"] for r in done]}
    parts = []
    for label, ys in costs.items():
        fit = [slope([r[k] for r in done], ys) for k in ("params", "flops")]
        parts.append(f"{label} ∝ params^{_f(fit[0])}, FLOPs^{_f(fit[1])}")
    return f"How each cost grows (log-log least squares over {len(done)} models): " + "; ".join(parts)


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def table(rows: list[dict]) -> str:
    head = ("| model | params | GFLOPs | passed | " + " | ".join(f"{s} s" for s in STAGES) + " | export s | peak MB | artifacts MB | note |\n"
            "|---|---:|---:|---|" + "---:|" * (len(STAGES) + 3) + "---|")
    lines = [head]
    for r in sorted(rows, key=lambda r: r["params"]):
        stages = " | ".join(f"{r['stages'][s]:.1f}" if s in r["stages"] else "–" for s in STAGES)
        passed = f"{r['passed']}/{r['artifacts']}" if "artifacts" in r else "–"
        mb = f"{r['artifact_bytes'] / 1e6:.1f}" if "artifact_bytes" in r else "–"
        note = r.get("error") or (f"gate failed: {', '.join(r['failed'])}" if r.get("failed") else "")
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['flops'] / 1e9:.2f} | {passed} | {stages} | {r['wall_s']} | "
                     f"{r['peak_mb']} | {mb} | {note.replace('|', '/')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--targets", default=",".join(TARGETS), help="format:precision list; add coreai:fp16 for Core AI")
    ap.add_argument("--n", type=int, default=32, help="evaluation images per export")
    ap.add_argument("--calibration-n", type=int, default=32, help="calibration images of the int8 targets")
    ap.add_argument("--benchmark", action="store_true", help="keep the host latency benchmark (off: its stage costs ~0 s)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs of the full-size models trained here")
    ap.add_argument("--n-train", type=int, default=480, help="training images of the full-size models trained here")
    ap.add_argument("--batch-size", type=int, default=8, help="training batch of the full-size models trained here")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds one export may take")
    ap.add_argument("--json", type=Path, help="results, rewritten after every model")
    args = ap.parse_args()
    names, targets = args.models.split(","), args.targets.split(",")
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown models {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    rows = []
    for name in names:
        r, source = recipe(name, targets, n=args.n, calibration_n=args.calibration_n, benchmark=args.benchmark, epochs=args.epochs,
                           n_train=args.n_train, batch_size=args.batch_size)
        params, flops = size(name)
        row = {"model": name, "params": params, "flops": flops, "weights": source, **export_one(name, r, args.timeout)}
        rows.append(row)
        print(f"{name:22s} {params / 1e6:7.2f} M {flops / 1e9:7.2f} GFLOPs {row['wall_s']:7.1f} s {row['peak_mb']:6d} MB  "
              + " ".join(f"{s} {v:.1f}" for s, v in row["stages"].items()) + (f"  {row['error']}" if "error" in row else ""), flush=True)
        if args.json:  # after every model: an interrupted run keeps what it measured
            args.json.write_text(json.dumps({"targets": targets, "n": args.n, "calibration_n": args.calibration_n,
                                             "benchmark": args.benchmark, "rows": rows}, indent=1))
    print(f"\nTargets {', '.join(targets)}; evaluation n={args.n}, calibration n={args.calibration_n}, "
          f"benchmark {'on' if args.benchmark else 'off'}; conversion cache off.\n")
    print(table(rows))
    print()
    print(growth(rows))
    print()
    for row in rows:
        print(f"- {row['model']}: {row['weights']}")
    resnet = next((r for r in rows if r["model"] == "resnet50"), None)
    if resnet:
        stopped = " (stopped)" if "error" in resnet else ""
        print(f"\nFull-size ResNet-50: peak {resnet['peak_mb']} MB (target ≤ {RESNET50_PEAK_MB} MB: "
              f"{'met' if resnet['peak_mb'] <= RESNET50_PEAK_MB else 'missed'}); export {resnet['wall_s']} s{stopped} "
              f"(target ≤ {RESNET50_WALL_S} s: {'met' if resnet['wall_s'] <= RESNET50_WALL_S and not stopped else 'missed'})")


if __name__ == "__main__":
    main()
