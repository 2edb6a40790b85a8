"""Every reference model through the four compression recipes: one table of size, accuracy and latency.

    python benchmarks/compression.py [--models a,b] [--bundles DIR] [--threads 2] [--repeats 40] [--json out.json]

Per model, two bundles from export_recipes/compress/ (exported into --bundles when missing, with the recipes'
own 200-image gates): ``<model>.yaml`` (fp32, int8, mixed int8 to an accuracy budget, 4-bit palettized Core ML)
and ``<model>_channels50_int8.yaml`` (50 % of channels removed, distilled, then fp32 and int8). Per artifact:

- size and its ratio to the unpruned fp32 TFLite;
- the headline metric's change against the *original* float model on the same images (for pruned artifacts:
  pruning and quantization together), with the 95 % CI where one exists, and the worst skin-tone group's
  change (groups of at least the recipe's min_group_size images);
- the gate's verdict and, for a failure, the criteria that failed;
- host latency (TFLite, XNNPACK) as a ratio to the unpruned fp32 TFLite, every TFLite artifact of the model
  timed round-robin in one process so that the machine's drift hits all of them alike.
Core ML runs only on macOS; on Linux its latency cell says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RECIPES = ROOT / "export_recipes" / "compress"
LABELS = {"int8_mixed": "mixed int8", "palettize4_g16": "palettize4 g16"}  # file variant -> table label (else the variant)


def ensure(recipe_name: str, out: Path) -> Path:
    """The recipe's bundle in ``out``, exported if missing (a bundle whose gate fails is still written)."""
    from toolkit.errors import VerificationFailed
    from toolkit.pipeline import export
    from toolkit.recipe import load_recipe

    path = RECIPES / f"{recipe_name}.yaml"
    recipe = load_recipe(path)
    bundle = out / recipe.name
    if not (bundle / "manifest.json").is_file():
        t0 = time.perf_counter()
        try:
            export(recipe, recipe_path=path, out_dir=out)
        except VerificationFailed:
            pass
        print(f"  exported {recipe.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return bundle


def _worst_group(groups: dict[str, tuple[int, float]], min_n: int) -> tuple[str, float] | None:
    """(group, change) with the largest loss among groups of at least ``min_n`` images."""
    gated = {g: d for g, (n, d) in groups.items() if n >= min_n and g != "unknown" and np.isfinite(d)}
    return max(gated.items(), key=lambda kv: kv[1]) if gated else None


def rows_for(model: str, bundles: Path) -> list[dict]:
    """One row per artifact of the model's two compression bundles, changes against the original float model."""
    from toolkit.verify.stage import compression_passed, pruning_criteria

    rows = []
    for name, pruned in ((model, False), (f"{model}_channels50_int8", True)):
        if pruned and not (RECIPES / f"{name}.yaml").exists():  # a model without a channel-pruning recipe
            continue
        bundle = ensure(name, bundles)
        m = json.loads((bundle / "manifest.json").read_text())
        min_n = m["recipe"]["resolved"]["evaluation"]["min_group_size"]
        original = (m.get("compression") or {}).get("against_original")
        for a in m["artifacts"]:
            v = a["verification"]
            variant = Path(a["path"]).stem.removeprefix(m["model"]["name"] + "_")
            label = LABELS.get(variant, variant)
            if "task_metric" not in v:  # the runtime refused it: a failed gate with the reason, nothing to time
                rows.append({"model": model, "recipe": ("50% channels + " if pruned else "") + label, "format": "not executed",
                             "size_bytes": a["size_bytes"], "passed": False, "failed": [v.get("error", v["check"])],
                             "metric": None, "worst_group": None, "kept_float": None, "macs_ratio": None})
                continue
            tm = v["task_metric"]
            sign = 1.0 if tm["higher_is_better"] else -1.0  # a loss is positive
            metric = tm["name"]
            if pruned:  # artifact against the original float: pruning + quantization on the same images
                base = original["float"]["value"]
                change, ci = sign * (base - tm["artifact"]), None
                groups = {g: (r["n"], sign * (original["by_group"][g]["float"]["value"] - r["metrics"][metric]["artifact"]["value"]))
                          for g, r in v["by_group"].items() if g in original.get("by_group", {})}
            else:
                base = tm["float"]
                change, ci = tm["drop"], tm.get("drop_ci95")
                groups = {g: (r["n"], r["metrics"][metric]["drop"]["value"]) for g, r in v["by_group"].items()}
            mixed = a["structure"].get("mixed_precision")
            rows.append({
                "model": model, "recipe": ("50% channels + " if pruned else "") + label, "format": a["format"],
                "path": str(bundle / a["path"]),
                "size_bytes": a["size_bytes"], "metric": metric, "original_float": base, "artifact": tm["artifact"],
                "change": change, "change_ci95": ci, "worst_group": _worst_group(groups, min_n),
                # a pruned artifact also carries its bundle's pruning budget (pruned float vs the original)
                "passed": v["passed"] and compression_passed(m.get("compression")),
                "failed": [c["name"] for c in v["criteria"] if not c["passed"]]
                          + [f"pruning: {c['name']}" for c in pruning_criteria(m.get("compression")) if not c["passed"]],
                "kept_float": None if mixed is None else (len(mixed["kept_float"]) if mixed["met"] else f">{mixed['searched_up_to']}"),
                "macs_ratio": (m.get("compression") or {}).get("macs", {}).get("ratio") if pruned else None,
            })
    fp32 = next(r for r in rows if r["recipe"] == "fp32")
    for r in rows:
        r["size_ratio"] = r["size_bytes"] / fp32["size_bytes"]
    return rows


def time_side_by_side(rows: list[dict], x: np.ndarray, *, threads: int, warmup: int, repeats: int) -> None:
    """p50 of every TFLite artifact, timed round-robin in this process; ratios to the fp32 row."""
    from toolkit.backends import get_backend

    tfl = [r for r in rows if r["format"] == "tflite"]
    runners = [get_backend("tflite").runner(Path(r["path"]), threads=threads) for r in tfl]
    for run in runners:
        for _ in range(warmup):
            run.run(x)
    times = np.zeros((repeats, len(runners)))
    for i in range(repeats):
        for j in np.random.default_rng(i).permutation(len(runners)):  # order shuffled each round
            t0 = time.perf_counter()
            runners[j].run(x)
            times[i, j] = (time.perf_counter() - t0) * 1e3
    p50 = np.median(times, axis=0)
    ref = p50[[r["recipe"] for r in tfl].index("fp32")]
    for r, p in zip(tfl, p50):
        r["p50_ms"], r["latency_ratio"] = float(p), float(p / ref)


def _fmt_change(r: dict) -> str:
    """float → artifact (loss; loss CI): fractions (F1, IoU) as points, MAE in its units, PSNR in dB."""
    scale, unit, digits = {"mae": (1.0, "", 2), "psnr": (1.0, " dB", 2)}.get(r["metric"], (100.0, " pt", 1))
    s = f"{r['original_float']:.3f} → {r['artifact']:.3f} (loss {scale * r['change']:.{digits}f}{unit}"
    if r["change_ci95"]:
        lo, hi = (scale * v for v in r["change_ci95"])
        s += f", CI [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s + ")"


def _fmt_group(r: dict) -> str:
    if not r["worst_group"]:
        return "—"
    g, loss = r["worst_group"]
    scale, unit, digits = {"mae": (1.0, "", 2), "psnr": (1.0, " dB", 2)}.get(r["metric"], (100.0, " pt", 1))
    return f"{g} {scale * loss:.{digits}f}{unit}"


def main() -> None:
    from toolkit._io import captured_quietly
    from toolkit.registry import get_spec, list_models
    from toolkit.tasks.data import task_data
    from toolkit.verify.gate import contract_inputs

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(s.name for s in list_models()))
    ap.add_argument("--bundles", type=Path, default=ROOT / "bundles" / "compress")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.bundles.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models.split(","):
        print(f"{model}:", flush=True)
        with captured_quietly():
            r = rows_for(model, args.bundles)
        x = contract_inputs(task_data(get_spec(model), 1, split="test", seed=0), "0-255", "nhwc")
        time_side_by_side(r, x, threads=args.threads, warmup=args.warmup, repeats=args.repeats)
        rows += r
    head = ["model", "recipe", "MB", "size / fp32", "metric: float → artifact (change)", "worst group (loss)",
            f"host p50 ms ({args.threads} thr)", "latency / fp32", "gate"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        recipe = r["recipe"] + (f" ({r['kept_float']} float)" if r["kept_float"] is not None else "")
        recipe += f", MACs {r['macs_ratio']:.2f}×" if r["macs_ratio"] and r["recipe"].endswith("fp32") else ""
        cells = [r["model"], recipe, f"{r['size_bytes'] / 1e6:.3f}", f"{r['size_ratio']:.2f}",
                 f"{r['metric']} {_fmt_change(r)}" if r["metric"] else "—", _fmt_group(r),
                 f"{r['p50_ms']:.2f}" if "p50_ms" in r else ("macOS only" if r["format"] == "coreml" else "—"),
                 f"{r['latency_ratio']:.2f}" if "latency_ratio" in r else "—",
                 "pass" if r["passed"] else "FAIL: " + "; ".join(r["failed"])[:160]]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
