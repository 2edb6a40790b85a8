"""Export every reference model with its default recipe, then time `skinkit verify` on 200 images.

    python benchmarks/verification.py [--models a,b] [--n 200] [--bundles DIR] [--json out.json]

Per artifact: the headline metric, float → artifact, and the 95 % CI of its drop; agreement with float;
the worst skin-tone group's drop; the gate's verdict. Per bundle: wall seconds of the whole `verify`
as CI pays it (integrity, reference model, every artifact, bootstrap CIs, groups). Existing bundles in
--bundles are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_bundle(model: str, out: Path) -> Path:
    """The model's default bundle in ``out``, exported if missing. The export's own verification runs on 32
    images and its host benchmark is off: both scripts measure those themselves, on the bundle."""
    from toolkit.errors import VerificationFailed
    from toolkit.pipeline import export
    from toolkit.recipe import load_recipe

    recipe_path = ROOT / "export_recipes" / f"{model}.yaml"
    recipe = load_recipe(recipe_path)
    bundle = out / recipe.name
    if not (bundle / "manifest.json").is_file():
        recipe = recipe.model_copy(update={"evaluation": recipe.evaluation.model_copy(update={"n": 32}),
                                           "benchmark": recipe.benchmark.model_copy(update={"enabled": False})})
        try:
            export(recipe, recipe_path=recipe_path, out_dir=out)
        except VerificationFailed:
            pass  # the bundle is written; verify reports the failure
    return bundle


def rows(summary: dict) -> list[dict]:
    out = []
    for a in summary["artifacts"]:
        tm = a.get("task_metric") or {}
        groups = {g: d["metrics"][tm["name"]]["drop"]["value"] for g, d in (a.get("by_group") or {}).items() if tm}
        worst = max(groups, key=groups.get) if groups else None
        out.append({"model": summary["model"], "artifact": Path(a["path"]).name, "check": a["check"].split(" (")[0],
                    "metric": tm.get("name"), "float": tm.get("float"), "artifact_value": tm.get("artifact"),
                    "drop_ci95": tm.get("drop_ci95"), "agreement": a.get("agreement"),
                    "worst_group": worst, "worst_group_drop": groups.get(worst) if worst else None, "passed": a["passed"]})
    return out


def main() -> None:
    from toolkit._io import captured_quietly
    from toolkit.registry import list_models
    from toolkit.verify.bundle import verify_bundle

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(s.name for s in list_models()))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--bundles", type=Path, default=ROOT / "bundles")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.bundles.mkdir(parents=True, exist_ok=True)
    table, timings = [], {}
    for model in args.models.split(","):
        with captured_quietly():
            bundle = ensure_bundle(model, args.bundles)
            t0 = time.perf_counter()
            summary = verify_bundle(bundle, n=args.n)
        timings[model] = {"seconds": round(time.perf_counter() - t0, 1), "artifacts": len(summary["artifacts"]), "n": args.n}
        table += rows(summary)
        print(f"{model}: verify {timings[model]['seconds']} s for {args.n} images × {len(summary['artifacts'])} artifacts", flush=True)
    print("\n| model | artifact | executed by | metric: float → artifact | drop 95 % CI | agreement | worst group (drop) | gate |")
    print("|---|---|---|---|---|---|---|---|")
    for r in table:
        ci = f"[{r['drop_ci95'][0]:+.4f}, {r['drop_ci95'][1]:+.4f}]" if r["drop_ci95"] else "—"
        agree = f"{r['agreement']:.4f}" if r["agreement"] is not None else "—"
        worst = f"{r['worst_group']} ({r['worst_group_drop']:+.4f})" if r["worst_group"] else "—"
        fig = f"{r['metric']} {r['float']:.4f} → {r['artifact_value']:.4f}" if r["metric"] else "—"
        print(f"| {r['model']} | {r['artifact']} | {r['check']} | {fig} | {ci} | {agree} | {worst} | {'pass' if r['passed'] else 'FAIL'} |")
    print("\n| model | artifacts | images | verify seconds |\n|---|---|---|---|")
    for m, t in timings.items():
        print(f"| {m} | {t['artifacts']} | {t['n']} | {t['seconds']} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": table, "timings": timings}, indent=2))


if __name__ == "__main__":
    main()
