"""Core AI against Core ML at the same precisions, per reference model: each exported and gated by skinkit.

    python benchmarks/core_ai.py [--models a,b] [--precisions fp16,int8_weights] [--n 48] [--json out.json]

Per model and precision: the max abs error against the float model and the gate's verdict of the Core AI
asset (run by coreai-core's runtime, its CPU path on Linux) and of the Core ML package (macOS: Core ML;
Linux: skinkit's MIL reference interpreter), each conversion's seconds, and Core AI's seconds per image in
verification. One recipe per model, built here from the model's registered contract.
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


def run(model: str, precisions: list[str], n: int) -> list[dict]:
    from toolkit.errors import IncompleteBundle, VerificationFailed
    from toolkit.pipeline import export
    from toolkit.recipe import load_recipe

    targets = [{"format": f, "precision": p} for p in precisions for f in ("coreai", "coreml")]
    with tempfile.TemporaryDirectory() as out:
        path = Path(out) / f"{model}_coreai.yaml"
        path.write_text(json.dumps({"name": f"{model}_coreai", "model": {"name": model}, "targets": targets,
                                    "evaluation": {"n": n}, "benchmark": {"enabled": False}}))
        try:
            manifest = export(load_recipe(path), recipe_path=path, out_dir=Path(out) / "bundles").manifest
        except (VerificationFailed, IncompleteBundle) as exc:
            manifest = json.loads((Path(exc.bundle_dir) / "manifest.json").read_text())
    rows = []
    for p in precisions:
        row = {"model": model, "precision": p}
        for a in manifest["artifacts"]:
            if a["precision"] == p:
                v = a["verification"]
                row[a["format"]] = {"max_abs": v["numerics"]["max_abs_error"], "passed": v["passed"],
                                    "convert_s": a["conversion_seconds"], "check": v["check"].split(":")[0]}
        for f in manifest.get("failed_targets", []):
            if f["precision"] == p:
                row[f["format"]] = {"error": f["error"][:120]}
        rows.append(row)
    return rows


def main() -> None:
    from toolkit.registry import list_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(s.name for s in list_models()))
    ap.add_argument("--precisions", default="fp16,int8_weights")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    print(f"{'model':24} {'precision':13} {'Core AI max|err|':>16} {'gate':>5} {'conv s':>7}   {'Core ML max|err|':>16} {'gate':>5} {'conv s':>7}  total s")
    for model in args.models.split(","):
        t0 = time.perf_counter()
        got = run(model, args.precisions.split(","), args.n)
        total = time.perf_counter() - t0
        for r in got:
            cells = []
            for f in ("coreai", "coreml"):
                c = r.get(f, {})
                cells.append(f"{'error: ' + c['error'][:30]:>31}" if "error" in c else
                             f"{c.get('max_abs', float('nan')):16.4g} {'pass' if c.get('passed') else 'FAIL':>5} {c.get('convert_s', 0):7.1f}")
            print(f"{r['model']:24} {r['precision']:13} {cells[0]}   {cells[1]}  {total:7.0f}", flush=True)
        rows += got
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
