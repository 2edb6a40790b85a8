"""Beyond one process, measured side by side in one run: ``skinkit batch`` against the same recipes exported one by
one, and ``skinkit verify`` of a large evaluation set sharded over workers.

    python benchmarks/scale_out.py [--recipes skin_segmenter,texture_sr,lesion_unet] [--n 60] [--verify-n 2000]
                                   [--workers 1,2] [--no-ray] [--json out.json]

1. Batch: copies of the reference recipes (evaluation ``--n`` images) exported one by one (``skinkit export``'s
   pipeline, no conversion cache), then as a batch on 1..N local processes and on a private Ray cluster (each with
   an empty conversion cache); wall time per run and its ratio to one by one, and whether every recipe's verdicts
   and metrics equal the one-by-one run's.
2. Sharded verification: a bundle of the default model (ONNX fp32, TFLite int8) verified on ``--verify-n``
   synthetic images in this process, then sharded over 1..N local processes and over Ray; wall time and whether
   every metric and bootstrap interval is identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _judged(manifest: dict) -> list:
    """What a bundle concludes: per artifact its verdict, headline metric with its interval, every criterion."""
    return [(a["path"], a["verification"]["passed"], a["verification"].get("task_metric"),
             [(c["name"], c["value"], c["passed"]) for c in a["verification"]["criteria"]]) for a in manifest["artifacts"]]


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _agree(a: list, b: list) -> tuple[bool, float]:
    """Verdicts, headline metrics and their intervals equal, every criterion's verdict equal, and the largest relative
    difference of a criterion's value (float noise: a worker with one thread sums in another order than two)."""
    if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b):
        return _same(a, b), 0.0
    worst = 0.0
    for (pa, va, ta, ca), (pb, vb, tb, cb) in zip(a, b):
        if (pa, va) != (pb, vb) or not _same(ta, tb) or [(n, ok) for n, _, ok in ca] != [(n, ok) for n, _, ok in cb]:
            return False, worst
        for (_, x, _), (_, y, _) in zip(ca, cb):
            if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x != y:
                worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-12))
            elif x != y:
                return False, worst
    return True, worst


def batch_rows(recipes: list[str], n: int, workers: list[int], ray: bool) -> list[dict]:
    from toolkit.errors import SkinkitError
    from toolkit.pipeline import export
    from toolkit.recipe import load_recipe, read_yaml
    from toolkit.scale.batch import run_batch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for name in recipes:
            data = read_yaml(ROOT / "export_recipes" / f"{name}.yaml")
            data["evaluation"] = {**(data.get("evaluation") or {}), "n": n}
            paths.append(tmp / f"{name}.yaml")
            paths[-1].write_text(json.dumps(data))
        t0 = time.perf_counter()
        alone = {}
        for p in paths:
            try:
                alone[p.stem] = _judged(export(load_recipe(p), recipe_path=p, out_dir=tmp / "alone", cache=False).manifest)
            except SkinkitError as exc:
                alone[p.stem] = _judged(json.loads((Path(exc.bundle_dir) / "manifest.json").read_text())) \
                    if getattr(exc, "bundle_dir", None) else exc.cause
        serial = time.perf_counter() - t0
        rows.append({"run": "one by one (skinkit export each)", "seconds": round(serial, 1), "ratio": 1.0, "same": True,
                     "criterion_rel_diff": 0.0})
        runs = [(f"batch, {w} local process{'es' if w > 1 else ''}", None, w) for w in workers]
        if ray:
            runs.append((f"batch, Ray local ({max(workers)} CPUs)", "local", max(workers)))
        for i, (label, address, w) in enumerate(runs):
            out = tmp / f"batch{i}"
            t0 = time.perf_counter()
            result = run_batch(paths, out=out, ray=address, workers=w, cache=tmp / f"cache{i}")
            seconds = time.perf_counter() - t0
            agreed = [_agree(_judged(json.loads((out / p.stem / "manifest.json").read_text())), alone[p.stem])
                      if (out / p.stem / "manifest.json").is_file() else (False, 0.0) for p in paths]
            rows.append({"run": label, "seconds": round(seconds, 1), "ratio": round(seconds / serial, 2),
                         "same": all(ok for ok, _ in agreed), "criterion_rel_diff": max(d for _, d in agreed),
                         "exit_codes": [r.exit_code for r in result.results]})
            print(f"  {label}: {seconds:.1f} s", file=sys.stderr)
    return rows


def verify_rows(n: int, workers: list[int], ray: bool) -> list[dict]:
    from toolkit.pipeline import export
    from toolkit.recipe import load_recipe
    from toolkit.scale.executor import executor
    from toolkit.scale.shards import ShardedRunners
    from toolkit.verify.bundle import verify_bundle

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "acne_large.yaml"
        path.write_text(json.dumps({"name": "acne_large", "model": {"name": "acne_mobilenetv2"},
                                    "targets": [{"format": "onnx", "precision": "fp32"}, {"format": "tflite", "precision": "int8"}],
                                    "evaluation": {"n": n}, "benchmark": {"enabled": False}}))
        bundle = export(load_recipe(path), recipe_path=path, out_dir=Path(tmp) / "out", cache=False).bundle_dir
        t0 = time.perf_counter()
        base = verify_bundle(bundle)
        alone = time.perf_counter() - t0
        judged = [(a["path"], a["passed"], a["task_metric"], a["metrics"], a["by_group"]) for a in base["artifacts"]]
        rows.append({"run": "in this process", "images": base["evaluation"]["n"], "seconds": round(alone, 1), "ratio": 1.0,
                     "identical": True, "bootstrap": base["evaluation"]["bootstrap"]})
        runs = [(f"{w} local process{'es' if w > 1 else ''}", None, w) for w in workers]
        if ray:
            runs.append((f"Ray local ({max(workers)} CPUs)", "local", max(workers)))
        for label, address, w in runs:
            ex = executor(address, w)
            try:
                t0 = time.perf_counter()
                s = verify_bundle(bundle, runner_factory=ShardedRunners(ex))
                seconds = time.perf_counter() - t0
            finally:
                ex.close()
            same = _same([(a["path"], a["passed"], a["task_metric"], a["metrics"], a["by_group"]) for a in s["artifacts"]], judged)
            rows.append({"run": label, "images": s["evaluation"]["n"], "seconds": round(seconds, 1),
                         "ratio": round(seconds / alone, 2), "identical": same})
            print(f"  verify, {label}: {seconds:.1f} s", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="skin_segmenter,texture_sr,lesion_unet")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--verify-n", type=int, default=2000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--skip-batch", action="store_true")
    ap.add_argument("--skip-verify", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    workers = [int(w) for w in args.workers.split(",")]
    from toolkit import progress

    with progress.reporting(None):
        batch = [] if args.skip_batch else batch_rows(args.recipes.split(","), args.n, workers, not args.no_ray)
        verify = [] if args.skip_verify else verify_rows(args.verify_n, workers, not args.no_ray)
    if args.json:
        args.json.write_text(json.dumps({"batch": batch, "verify": verify}, indent=2))
    print(f"machine: {os.cpu_count()} CPUs\n")
    if batch:
        print(f"Batch of {args.recipes} (evaluation n={args.n} each), each run with an empty conversion cache:\n")
        print("| run | wall s | ratio to one by one | verdicts, metrics and intervals equal one by one | largest relative "
              "difference of a criterion value |\n|---|---|---|---|---|")
        for r in batch:
            print(f"| {r['run']} | {r['seconds']} | {r['ratio']:.2f} | {'yes' if r['same'] else 'NO'} | "
                  f"{r['criterion_rel_diff']:.1e} |")
        print()
    if not verify:
        return
    print(f"Verification of {verify[0]['images']} images (acne_mobilenetv2: ONNX fp32, TFLite int8; {verify[0]['bootstrap']} "
          "bootstrap replicates), shards of 250:\n")
    print("| run | wall s | ratio to one process | every metric and interval identical |\n|---|---|---|---|")
    for r in verify:
        print(f"| {r['run']} | {r['seconds']} | {r['ratio']:.2f} | {'yes' if r['identical'] else 'NO'} |")


if __name__ == "__main__":
    main()
