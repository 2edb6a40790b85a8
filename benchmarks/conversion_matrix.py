"""Export every reference model through the conversion matrix and print one table.

    python benchmarks/conversion_matrix.py [--models a,b] [--n 100] [--json out.json]

Per model and target: size ratio to the model's fp32 TFLite, max abs error and top-1 / pixel
agreement (or the task metric's drop) against the float model, TRANSPOSE ops in the graph,
conversion seconds, the gate's verdict and the check that ran. Recipes: export_recipes/matrix/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(recipe_path: Path, n: int) -> dict:
    from toolkit.errors import IncompleteBundle, VerificationFailed
    from toolkit.pipeline import export
    from toolkit.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    recipe = recipe.model_copy(update={"evaluation": recipe.evaluation.model_copy(update={"n": n})})
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        try:
            manifest = export(recipe, recipe_path=recipe_path, out_dir=Path(out)).manifest
        except (VerificationFailed, IncompleteBundle) as exc:  # written: its rows say which targets failed
            manifest = json.loads((Path(exc.bundle_dir) / "manifest.json").read_text())
        manifest["_seconds"] = round(time.perf_counter() - t0, 1)
    return manifest


def rows(manifest: dict) -> list[dict]:
    arts = manifest["artifacts"]
    base = next((a["size_bytes"] for a in arts if a["format"] == "tflite" and a["precision"] == "fp32"), None)
    out = []
    for a in arts:
        v = a["verification"]
        tm = v.get("task_metric", {})
        out.append({
            "model": manifest["model"]["name"], "format": a["format"], "precision": a["precision"],
            "size_mb": round(a["size_bytes"] / 1e6, 3), "size_ratio": round(a["size_bytes"] / base, 3) if base else None,
            "max_abs": v.get("numerics", {}).get("max_abs_error"), "cosine": v.get("numerics", {}).get("cosine"),
            "agreement": v.get("agreement"), "metric": tm.get("name"), "metric_drop": tm.get("drop"),
            "transposes": a["structure"].get("transpose_count"), "convert_s": a["conversion_seconds"],
            "passed": v["passed"], "check": v["check"].split(";")[0].split(" (")[0],
            "failed": [c["name"] for c in v["criteria"] if not c["passed"]],
        })
    for f in manifest.get("failed_targets", []):  # no artifact: no figures, the conversion error instead
        out.append({"model": manifest["model"]["name"], "format": f["format"], "precision": f["precision"], "size_mb": None,
                    "size_ratio": None, "max_abs": None, "cosine": None, "agreement": None, "metric": None, "metric_drop": None,
                    "transposes": None, "convert_s": None, "passed": False, "check": "not converted",
                    "failed": [f"not converted: {f['error']}"]})
    return out


def fmt(x, nd=4):
    return "–" if x is None else (f"{x:.{nd}g}" if isinstance(x, float) else str(x))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--pruned", action="store_true", help="also run the *_pruned recipes (sparse Core ML)")
    args = ap.parse_args()
    recipes = sorted((ROOT / "export_recipes" / "matrix").glob("*.yaml"))
    recipes = [r for r in recipes if args.pruned or not r.stem.endswith("_pruned")]
    if args.models:
        keep = set(args.models.split(","))
        recipes = [r for r in recipes if r.stem.removesuffix("_pruned") in keep]
    table = []
    for r in recipes:
        m = run(r, args.n)
        print(f"# {r.name}: {m['_seconds']} s", file=sys.stderr, flush=True)
        table += rows(m)
        if args.json:
            args.json.write_text(json.dumps(table, indent=1))
    print("| model | format | precision | MB | size / fp32 | max abs err | agreement | metric drop | transposes | convert s | gate |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for t in table:
        gate = "pass" if t["passed"] else "FAIL: " + ", ".join(t["failed"])
        print(f"| {t['model']} | {t['format']} | {t['precision']} | {fmt(t['size_mb'], 6)} | {fmt(t['size_ratio'], 3)} | {fmt(t['max_abs'], 3)} "
              f"| {fmt(t['agreement'], 4)} | {fmt(t['metric_drop'], 3)} ({t['metric'] or '–'}) | {fmt(t['transposes'])} | "
              f"{fmt(t['convert_s'], 6)} | {gate} |")


if __name__ == "__main__":
    main()
