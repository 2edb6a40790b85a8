"""Bring your own model: published-width architectures in plain torch, exported the way a user exports theirs.

    python benchmarks/byo.py [--models resnet50,mtcnn_onet] [--targets onnx:fp32,coreml:fp16] [--n 48] [--json out.json]

Each model is a file of ``benchmarks/byo_models/`` named in a recipe that describes it (task, input size,
normalization, labels, outputs: no ``spec_from``). Weights: MTCNN's P-, R- and O-Net are the trained
weights facenet-pytorch ships (its wheel, from the package registry; nobody here made them); the others
are trained from scratch on the synthetic data with ``skinkit train RECIPE`` (a short schedule: they are
real classifiers/segmenters/upscalers, far from converged), cached under ``benchmarks/.byo/``.

Per model and target, one ``skinkit export`` process: whether it converted, the gate's verdict (or the
conversion error), the conversion seconds (from the manifest), the process's peak memory (its rusage) and
the rewrites the converter needed. MTCNN is judged against its own float decisions (``ground_truth:
float``): the synthetic faces carry no face/non-face labels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "benchmarks" / "byo_models"
CACHE = ROOT / "benchmarks" / ".byo"

ACNE = ["clear", "mild", "moderate", "severe"]
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
MTCNN_NORM = {"pixel_range": "0-255", "mean": 127.5, "std": 128}  # facenet-pytorch: (pixel - 127.5) / 128, RGB
FACENET = "facenet-pytorch==2.6.0"

MODELS: dict[str, dict] = {
    "resnet50": {"ref": "resnet.py:resnet50", "task": "classification", "input_size": 224, "labels": ACNE, "normalization": IMAGENET},
    "efficientnet_b0": {"ref": "efficientnet.py:efficientnet_b0", "task": "classification", "input_size": 224, "labels": ACNE,
                        "normalization": IMAGENET},
    "mobilenetv3_large": {"ref": "mobilenetv3.py:mobilenetv3_large", "task": "classification", "input_size": 224, "labels": ACNE,
                          "normalization": IMAGENET},
    "deit_tiny": {"ref": "deit.py:deit_tiny", "task": "classification", "input_size": 224, "labels": ACNE, "normalization": IMAGENET},
    "convnext_tiny": {"ref": "convnext.py:convnext_tiny", "task": "classification", "input_size": 224, "labels": ACNE,
                      "normalization": IMAGENET},
    "deeplabv3": {"ref": "deeplabv3.py:deeplabv3", "task": "segmentation", "input_size": 224, "labels": ["non_skin", "skin"],
                  "normalization": IMAGENET},
    "espcn": {"ref": "espcn.py:espcn", "task": "super_resolution", "input_size": 64, "output_size": 128,
              "normalization": {"pixel_range": "0-1"}},
    "mtcnn_pnet": {"ref": "mtcnn.py:pnet", "task": "segmentation", "input_size": 48, "labels": ["non_face", "face"],
                   "normalization": MTCNN_NORM, "outputs": ["box", "face_prob"], "task_output": "face_prob", "facenet": "pnet"},
    "mtcnn_rnet": {"ref": "mtcnn.py:rnet", "task": "classification", "input_size": 24, "labels": ["non_face", "face"],
                   "normalization": MTCNN_NORM, "outputs": ["box", "face_prob"], "task_output": "face_prob", "facenet": "rnet"},
    "mtcnn_onet": {"ref": "mtcnn.py:onet", "task": "classification", "input_size": 48, "labels": ["non_face", "face"],
                   "normalization": MTCNN_NORM, "outputs": ["box", "landmarks", "face_prob"], "task_output": "face_prob",
                   "facenet": "onet"},
}
TARGETS = ("onnx:fp32", "tflite:fp32", "tflite:int8", "coreml:fp16", "coreai:fp16")


def recipe_text(name: str, m: dict, checkpoint: Path, targets: list[str], n: int) -> str:
    model = {"name": str(MODELS_DIR / m["ref"].split(":")[0]) + ":" + m["ref"].split(":")[1], "checkpoint": str(checkpoint)}
    model.update({k: m[k] for k in ("task", "input_size", "output_size", "labels", "normalization", "outputs", "task_output") if k in m})
    recipe = {
        "name": name, "model": model,
        "targets": [{"format": t.split(":")[0], "precision": t.split(":")[1]} for t in targets],
        "calibration": {"n": 32},
        "evaluation": {"n": n, **({"ground_truth": "float"} if "facenet" in m else {})},
        "benchmark": {"enabled": False},
    }
    return json.dumps(recipe, indent=1)  # YAML is a superset of JSON


def facenet_weights(which: str) -> Path:
    """MTCNN's trained weights from the facenet-pytorch wheel (downloaded once from the package registry)."""
    out = CACHE / "facenet" / f"{which}.pt"
    if out.exists():
        return out
    wheels = CACHE / "facenet" / "wheel"
    if not any(wheels.glob("*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", FACENET, "-d", str(wheels)],
                       check=True, capture_output=True)
    with zipfile.ZipFile(next(wheels.glob("*.whl"))) as whl:
        for stem in ("pnet", "rnet", "onet"):
            (CACHE / "facenet" / f"{stem}.pt").write_bytes(whl.read(f"facenet_pytorch/data/{stem}.pt"))
    return out


def weights(name: str, m: dict, *, epochs: int, n_train: int, batch_size: int) -> tuple[Path, dict]:
    """The model's checkpoint and where it came from."""
    if "facenet" in m:
        return facenet_weights(m["facenet"]), {"weights": f"{FACENET} (trained by its authors)"}
    ckpt = CACHE / "weights" / f"{name}.safetensors"
    if not ckpt.exists():
        recipe = CACHE / "recipes" / f"{name}_train.yaml"
        recipe.parent.mkdir(parents=True, exist_ok=True)
        recipe.write_text(recipe_text(name, m, ckpt, ["onnx:fp32"], 16))
        proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "train", str(recipe), "--epochs", str(epochs), "--n-train", str(n_train),
                               "--batch-size", str(batch_size), "--lr", "2e-3"],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"training {name} failed: {proc.stderr.strip().splitlines()[-1]}")
    card = json.loads(ckpt.with_suffix(".json").read_text())
    t = card["training"]
    return ckpt, {"weights": f"skinkit train, {t['epochs']} epochs of {card['data']['train']['n']} synthetic images in batches of "
                             f"{t['batch_size']} ({card['seconds']['total']:.0f} s)", "float": card["held_out_float_metrics"]}


def export_one(name: str, m: dict, ckpt: Path, target: str, n: int, timeout: float) -> dict:
    """One ``skinkit export`` of one target in its own process: outcome, conversion seconds, peak memory;
    stopped after ``timeout`` seconds."""
    import shutil

    work = CACHE / "runs" / f"{name}_{target.replace(':', '_')}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    recipe = work / "recipe.yaml"
    recipe.write_text(recipe_text(name, m, ckpt, [target], n))
    t0 = time.perf_counter()
    with open(work / "stdout", "w") as out, open(work / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "export", str(recipe), "--out", str(work / "out"), "--json"],
                                cwd=ROOT, stdout=out, stderr=err)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
            time.sleep(0.5)
    code = os.waitstatus_to_exitcode(status)
    row = {"model": name, "target": target, "exit": code, "wall_s": round(time.perf_counter() - t0, 1),
           "peak_mb": round(usage.ru_maxrss / 1024)}
    if code < 0:
        written = any((work / "out").glob(f".{name}.partial-*/artifacts/*"))
        row.update(converted=written, passed=None if written else False,
                   error=f"stopped after {timeout:.0f} s ({'converted; verification' if written else 'conversion'} still running)")
        return row
    manifest_path = work / "out" / name / "manifest.json"
    if manifest_path.exists():
        art = json.loads(manifest_path.read_text())["artifacts"]
        if art:
            a = art[0]
            v = a["verification"]
            row.update(converted=True, passed=v["passed"], convert_s=a.get("conversion_seconds"), check=v["check"].split(" (")[0],
                       failed=[c["name"] for c in v["criteria"] if not c["passed"]],
                       rewrites=[r["name"] for r in (a.get("rewrites") or a.get("structure", {}).get("rewrites") or [])],
                       size_mb=round(a["size_bytes"] / 1e6, 2))
            return row
    lines = (work / "stderr").read_text().strip().splitlines()
    row.update(converted=False, passed=False, error=(lines[-1] if lines else f"exit {code}")[:400])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--n", type=int, default=48, help="evaluation images per export")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs of the models trained here")
    ap.add_argument("--n-train", type=int, default=480, help="training images of the models trained here")
    ap.add_argument("--batch-size", type=int, default=8, help="training batch of the models trained here (small: more steps)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one export may take")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown models {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    rows, sources = [], {}
    for name in args.models.split(","):
        ckpt, sources[name] = weights(name, MODELS[name], epochs=args.epochs, n_train=args.n_train, batch_size=args.batch_size)
        for target in args.targets.split(","):
            row = export_one(name, MODELS[name], ckpt, target, args.n, args.timeout)
            rows.append(row)
            print(_line(row), flush=True)
            if args.json:  # after every export: an interrupted run keeps what it measured
                args.json.write_text(json.dumps({"rows": rows, "weights": sources}, indent=1))
    print()
    print(table(rows))
    for name, src in sources.items():
        print(f"- {name}: {src['weights']}" + (f"; held-out float {json.dumps(src['float'])}" if "float" in src else ""))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "weights": sources}, indent=1))


def _line(row: dict) -> str:
    verdict = ("pass" if row["passed"] else "FAIL") if row.get("converted") else ("timeout" if row["exit"] < 0 else "no artifact")
    return f"{row['model']:18s} {row['target']:12s} {verdict:11s} {row['wall_s']:7.1f} s  {row['peak_mb']:6d} MB"


def table(rows: list[dict]) -> str:
    head = "| model | target | converted | gate | convert s | export s | peak MB | rewrites | note |\n|---|---|---|---|---:|---:|---:|---|---|"
    lines = [head]
    for r in rows:
        gate = {True: "pass", False: "fail", None: "not reached"}[r["passed"]] if r.get("converted") else "–"
        note = r.get("error", "").removeprefix("skinkit: error: ").split(" — fix:")[0] if r.get("error") else ", ".join(r.get("failed") or [])
        lines.append(f"| {r['model']} | {r['target']} | {'yes' if r.get('converted') else 'no'} | {gate} | "
                     f"{r.get('convert_s') if r.get('convert_s') is not None else '–'} | {r['wall_s']} | {r['peak_mb']} | "
                     f"{', '.join(r.get('rewrites') or []) or '–'} | {note.replace('|', '/')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
