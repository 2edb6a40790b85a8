"""Export the assessment recipes and print their chain figures as markdown.

    python benchmarks/chains.py [--recipes acne_gated,lesion_stats,selfie_assessment,skin_texture_regions] [--bundles DIR] [--json out.json]

Per recipe: each device chain (every component's artifact of one target key, glue in NumPy, as an app runs
them) against the float chain on the recipe's held-out photos — each judged output's headline metric, float
chain → device chain, and the 95 % CI of the drop; per skin-tone group (int8 chain); the loss each component's
artifact causes alone; the fused graphs; and the seconds each step took. Existing bundles in --bundles are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_bundle(name: str, out: Path) -> tuple[Path, float | None]:
    from toolkit.chain.export import export_chain
    from toolkit.chain.recipe import load_chain_recipe
    from toolkit.errors import IncompleteBundle, VerificationFailed

    bundle = out / name
    if (bundle / "manifest.json").is_file():
        return bundle, None
    path = ROOT / "export_recipes" / f"{name}.yaml"
    t0 = time.perf_counter()
    try:
        export_chain(load_chain_recipe(path), recipe_path=path, out_dir=out)
    except (VerificationFailed, IncompleteBundle) as exc:  # the bundle is written: its figures show why
        print(f"{name}: {exc.one_line()}", file=sys.stderr)
    return bundle, time.perf_counter() - t0


def _f(x, fmt: str = "+.4f") -> str:
    """A figure, or – where there is none (a NaN, written to JSON as null)."""
    return "–" if x is None else format(x, fmt)


def _ci(drop: dict) -> str:
    lo, hi = drop["ci95"]
    return f"{_f(drop['value'])} [{_f(lo)}, {_f(hi)}]"


def tables(m: dict) -> list[str]:
    lines = [f"### {m['bundle']} — {m['evaluation']['n']} held-out photos; components: "
             + ", ".join(f"{c['name']} ({c['model']})" for c in m["components"]), "",
             "| chain | output | metric | float chain | device chain | drop [95 % CI] | agreement | gate |", "|---|---|---|---|---|---|---|---|"]
    chains = [(f"device {v['key']}", v["verification"]) for v in m["variants"]]
    chains += [(f"fused {f['key']}", f["verification"]) for f in m["fused"] if "verification" in f]
    for label, ver in chains:
        for name, r in ver["outputs"].items():
            if "metric" not in r:
                continue
            x = r["metrics"][r["metric"]]
            agree = r["metrics"].get("agreement", {}).get("artifact", {}).get("value")
            flt = _f(x["float"]["value"], ".4f") if "float" in x else "(vs float)"
            lines.append(f"| {label} | {name} | {r['metric']} | {flt} | {_f(x['artifact']['value'], '.4f')} | {_ci(x['drop']) if 'drop' in x else '–'} "
                         f"| {'' if agree is None else f'{agree:.4f}'} | {'pass' if ver['passed'] else 'FAIL'} |")
    int8 = next((v for v in m["variants"] if v["tier"] == "int8"), None)
    if int8:
        lines += ["", f"Per skin-tone group, {int8['key']} chain (point estimates: float chain → device chain):", "",
                  "| output | " + " | ".join(g for g in next(iter(r["groups"] for r in int8["verification"]["outputs"].values() if "groups" in r))) + " |"]
        groups = next(iter(r["groups"] for r in int8["verification"]["outputs"].values() if "groups" in r))
        lines.append("|---|" + "---|" * len(groups))
        for name, r in int8["verification"]["outputs"].items():
            if "groups" in r:
                lines.append(f"| {name} ({r['metric']}) | " + " | ".join(
                    (f"{g['float']:.3f} → " if g["float"] is not None else "") + f"{g['device']:.3f} (n={g['n']})"
                    for g in r["groups"].values()) + " |")
        if int8["loss_by_component"]:
            outs = list(next(iter(int8["loss_by_component"].values())))
            lines += ["", f"Loss by component, {int8['key']} (that component's artifact alone on device): drop [95 % CI]", "",
                      "| component | " + " | ".join(outs) + " |", "|---|" + "---|" * len(outs)]
            for comp, rows in int8["loss_by_component"].items():
                lines.append(f"| {comp} | " + " | ".join(_ci(rows[o]["drop"]) if "drop" in rows[o]
                                                         else f"{rows[o]['metric']} {rows[o]['artifact']['value']:.2f}" for o in outs) + " |")
    lines += ["", "| step | seconds |", "|---|---|"]
    lines += [f"| device chain {v['key']} over the set | {v['seconds']} |" for v in m["variants"]]
    lines += [f"| fused {f['key']} over the set (conversion {f['conversion_seconds']} s) | {f['seconds']} |" for f in m["fused"] if "seconds" in f]
    lines.append(f"| whole export | {m['evaluation']['seconds']} |")
    return lines


def main() -> None:
    from toolkit._io import captured_quietly

    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", default="acne_gated,lesion_stats,selfie_assessment,skin_texture_regions")
    ap.add_argument("--bundles", type=Path, default=ROOT / "bundles")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = []
    for name in args.recipes.split(","):
        with captured_quietly():
            bundle, seconds = ensure_bundle(name, args.bundles)
        m = json.loads((bundle / "manifest.json").read_text())
        print(f"{name}: {'exported in ' + format(seconds, '.0f') + ' s' if seconds else 'reused'}; verdict "
              f"{'passed' if m['verdict']['passed'] else 'FAILED'}", flush=True)
        out.append(m)
    for m in out:
        print("\n" + "\n".join(tables(m)))
    if args.json:
        args.json.write_text(json.dumps([{"bundle": m["bundle"], "variants": m["variants"], "fused": m["fused"]} for m in out], indent=2))


if __name__ == "__main__":
    main()
