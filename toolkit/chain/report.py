"""report.md of an assessment bundle: the verdict, each component's gate, each device chain against the float
chain (per output, per skin-tone group, the loss each component causes), the fused graphs, and the glue."""

from __future__ import annotations

import json


def _num(x, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.0f}"
    return str(x)


def _ci(row: dict) -> str:
    lo, hi = row["ci95"]
    return f"{_num(row['value'])} [{_num(lo)}, {_num(hi)}]"


def _judged(lines: list[str], outputs: dict) -> None:
    lines += ["| output | metric | float chain | device chain [95 % CI] | drop [95 % CI] | agreement | max abs vs float |",
              "|---|---|---|---|---|---|---|"]
    for name, r in outputs.items():
        if "metric" not in r:
            lines.append(f"| {name} | – | – | – | – | – | {_num(r['numerics']['max_abs'])} |")
            continue
        m = r["metrics"][r["metric"]]
        agree = r["metrics"].get("agreement", {}).get("artifact", {}).get("value")
        flt = _num(m["float"]["value"]) if "float" in m else "– (vs float)"
        lines.append(f"| {name} | {r['metric']} | {flt} | {_ci(m['artifact'])} | {_ci(m['drop']) if 'drop' in m else '–'} "
                     f"| {_num(agree)} | {_num(r['numerics']['max_abs'])} |")


def _criteria(lines: list[str], criteria: list[dict]) -> None:
    for c in criteria:
        lines.append(f"- {'✅' if c['passed'] else '❌'} {c['name']}: {_num(c['value'])} (required {c['op']} {_num(c['bound'])})")


def render(m: dict) -> str:
    v = m["verdict"]
    lines = [f"# {m['bundle']} {m['version']} — assessment bundle", "", m["description"], "",
             f"**Verdict: {'PASSED' if v['passed'] else 'FAILED'}** — components {_num(v['components_passed'])}, "
             f"device chains {_num(v['chains_passed'])}, fused graphs {_num(v['fused_passed']) if v['fused'] else 'none'}.", "",
             f"Input: a photo made {m['input']['size'][0]}×{m['input']['size'][1]} by `{m['input']['fit']}` "
             f"({m['input']['fit_definition']}), RGB 0–255, NHWC float32.", "",
             f"Judged on {m['evaluation']['n']} held-out synthetic photos (seed {m['evaluation']['seed']}); "
             f"{m['evaluation']['bootstrap']} bootstrap replicates, paired; non-inferiority on the "
             f"{'upper end of the 95 % CI' if m['evaluation']['noninferiority'] == 'ci' else 'point estimate'}.", "",
             "## Components", "", "| component | model | task | artifacts | own gate |", "|---|---|---|---|---|"]
    for c in m["components"]:
        arts = ", ".join(f"{a['key']} {'✅' if a['passed'] else '❌'}" for a in c["artifacts"])
        lines.append(f"| {c['name']} | {c['model']} | {c['task']} | {arts} | {'passed' if c['passed'] else 'FAILED'} |")
    lines += ["", "Each component's own report: `components/<name>/report.md`.", "", "## Outputs", "",
              "| output | from | kind | shape | unit | judged by | truth |", "|---|---|---|---|---|---|---|"]
    for o in m["outputs"]:
        lines.append(f"| {o['name']} | `{o['from']}` | {o['kind']} | {o['shape']} | {o['unit'] or '–'} | {o['judge'] or 'numerics'} "
                     f"| {o['truth'] or '–'} |")
    for x in m["variants"]:
        ver = x["verification"]
        lines += ["", f"## Device chain {x['key']} ({x['tier']} tier): {'passed' if ver['passed'] else 'FAILED'}", "",
                  "Each component's artifact through its runtime, the glue in NumPy, as an app runs them "
                  f"({x['seconds']} s for the set).", ""]
        _judged(lines, ver["outputs"])
        lines.append("")
        _criteria(lines, ver["criteria"])
        groups = {n: r["groups"] for n, r in ver["outputs"].items() if "groups" in r}
        if groups:
            lines += ["", "Per skin-tone group (point estimates; drop = float chain − device chain in the metric's better direction):", "",
                      "| output | group | n | float chain | device chain | drop |", "|---|---|---|---|---|---|"]
            for n, gs in groups.items():
                for g, r in gs.items():
                    lines.append(f"| {n} | {g} | {r['n']} | {_num(r['float'])} | {_num(r['device'])} | {_num(r['drop'])} |")
        if x["loss_by_component"]:
            lines += ["", "Loss by component (that component's artifact alone on device, the others float): drop [95 % CI]", "",
                      "| component | " + " | ".join(next(iter(x["loss_by_component"].values()))) + " |",
                      "|---|" + "---|" * len(next(iter(x["loss_by_component"].values())))]
            for comp, rows in x["loss_by_component"].items():
                lines.append(f"| {comp} | " + " | ".join(f"{r['metric']} {_ci(r['drop'])}" if "drop" in r
                                                         else f"{r['metric']} {_ci(r['artifact'])}" for r in rows.values()) + " |")
    if m["fused"]:
        lines += ["", "## Fused graphs (the whole chain, one call)", ""]
        for f in m["fused"]:
            if "error" in f:
                lines.append(f"- ❌ {f['key']} not converted: {f['error']}")
                continue
            lines += [f"### {f['path']} ({f['size_bytes'] / 1e6:.2f} MB): {'passed' if f['verification']['passed'] else 'FAILED'}", ""]
            _judged(lines, f["verification"]["outputs"])
            lines.append("")
            _criteria(lines, f["verification"]["criteria"])
            lines.append("")
    lines += ["", "## The glue contract", "", "Steps in order (`manifest.json` → `chain.steps`; op definitions in `chain.glue_ops`):", ""]
    for s in m["chain"]["steps"]:
        made = ", ".join(f"`{k}` {v['kind']} {v['shape']}" for k, v in s["outputs"].items())
        what = f"run **{s['run']}**" if "run" in s else f"**{s['op']}** {json.dumps(s['params'])}"
        lines.append(f"1. `{s['id']}`: {what} on " + ", ".join(f"{p} = `{r}`" for p, r in s["inputs"].items()) + f" → {made}")
    if m["app_code"]:
        lines += ["", "App code (not compiled by skinkit: check it builds in your app): "
                  + ", ".join(f"`{a['path']}` ({a['variant']})" for a in m["app_code"])]
    return "\n".join(lines) + "\n"
