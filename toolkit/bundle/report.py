"""A readable Markdown report of a bundle, written from its manifest."""

from __future__ import annotations

from toolkit.tasks import get_task


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _rel(n: dict) -> str:
    """An output's max abs error, with the same relative to its float range where recorded."""
    return _fmt(n.get("max_abs_error", "—")) + (f" ({n['max_rel_error']:.3g})" if "max_rel_error" in n else "")


def _compression(m: dict) -> list[str]:
    """Pruning (cost against the original model, budget) and mixed-precision choices, where there are any."""
    lines = []
    c = m.get("compression")
    if c:
        lines += ["", "## Compression", "", f"- method: {c['method']}"]
        if "macs" in c:
            lines.append(f"- MACs {c['macs']['before']:,} → {c['macs']['after']:,} ({c['macs']['ratio']}×), "
                         f"parameters {c['params']['before']:,} → {c['params']['after']:,} ({c['params']['ratio']}×)")
        if "achieved_sparsity" in c:
            lines.append(f"- sparsity {c['achieved_sparsity']} (target {c['target_sparsity']})")
        if c.get("distillation"):
            d = c["distillation"]
            lines.append(f"- distilled on {d['images']} unlabeled images, {d['epochs']} epochs: output MSE {d['mse_before']} → {d['mse_after']}")
        ao = c.get("against_original")
        if ao:
            lines.append(f"- compressed float model against the original: {ao['metric']} {ao['float']['value']:.4f} → "
                         f"{ao['artifact']['value']:.4f} (drop {ao['drop']['value']:+.4f}, 95 % CI {ao['drop']['ci95'][0]:+.4f} … "
                         f"{ao['drop']['ci95'][1]:+.4f}); artifacts below are gated against the compressed float model")
            lines += [f"  - budget: {k['name']}: {_fmt(k['value'])} (required {k['op']} {_fmt(k['bound'])}): "
                      f"{'pass' if k['passed'] else '**FAIL**'}" for k in ao.get("criteria", [])]
    for a in m["artifacts"]:
        mp = a["structure"].get("mixed_precision")
        if mp:
            kept = mp["kept_float"]
            lines += ["", f"**{a['path']}** mixed precision: " + (
                f"{len(kept)} layer(s) kept float ({', '.join(f'`{k}`' for k in kept) or 'none needed'})" if mp["met"]
                else f"budget not met with up to {mp['searched_up_to']} layers kept float"),
                "probes: " + "; ".join(f"k={p['k']} {'pass' if p['passed'] else 'fail'} {p['size_bytes'] / 1e6:.3f} MB" for p in mp["probes"]),
                *([mp["diagnosis"]] if mp.get("diagnosis") else []), f"({mp['note']})"]
    return lines


def _rewrites(m: dict) -> list[str]:
    """One line per artifact whose converter needed exact graph rewrites (the why is in the manifest)."""
    lines = [f"- `{a['path']}`: " + "; ".join(f"{r['name']} ×{r['count']} in {', '.join(f'`{w}`' for w in r['where'])}"
                                          for r in a["structure"]["rewrites"])
             for a in m["artifacts"] if a["structure"].get("rewrites")]
    return ["", "Converted through exact graph rewrites (the converter gap each avoids: `structure.rewrites` in manifest.json):",
            "", *lines] if lines else []


def _task_sections(m: dict) -> list[str]:
    """What the model's task adds per artifact (a classifier's confusion matrix), where it adds anything."""
    task = get_task(m["model"]["task"])
    lines = []
    for a in m["artifacts"]:
        extra = task.report_lines(a["verification"], labels=tuple(m["labels"]))
        if extra:
            lines += ["", f"**{a['path']}**:", "", *extra]
    return ["", f"## {task.report_title}", *lines] if lines else []


def _not_converted(m: dict) -> list[str]:
    """The recipe targets that did not convert (none in a complete bundle, or one from before schema 1.1)."""
    failed = m.get("failed_targets") or []
    if not failed:
        return []
    lines = ["", "## Targets not converted (incomplete bundle)", "",
             "The bundle holds no artifact for these recipe targets; the others were converted, verified and bundled.", "",
             "| target | format | precision | op | module | error | fix |", "|---|---|---|---|---|---|---|"]
    lines += [f"| `{f['key']}` | {f['format']} | {f['precision']} | {_cell(f.get('op'))} | {_cell(f.get('module'))} | "
              f"{_cell(f['error'])} | {_cell(f.get('fix'))} |" for f in failed]
    return lines


def _advice(m: dict) -> list[str]:
    """The recipe change advised for each artifact that failed its gate (``toolkit.verify.advice``): the target line
    to replace, the one to paste, and what the culprit analysis predicts of it."""
    from toolkit.verify.advice import manifest_advice, prediction_text

    advised = manifest_advice(m)
    if not advised:
        return []
    lines = ["", "## Suggested fix", "",
             "Replace each failing target in the recipe's `targets` with the line below it, then export again:", ""]
    for path, a in advised:
        lines += [f"**`{path}`**: {a['change']}", "", "```yaml", "# replace", a["replace_yaml"], "# with", a["with_yaml"], "```", ""]
        if "output_sqnr_db" in a:
            lines.append(f"Predicted ({a['basis']}): {prediction_text(a)}.")
        else:
            lines.append(f"{a['basis'][0].upper()}{a['basis'][1:]}.")
        if a.get("not_predicted"):
            lines.append(f"Not predicted (re-export to confirm): {'; '.join(a['not_predicted'])}.")
        lines.append("")
        lines += [f"- or {alt['change']}: `{alt['with_yaml']}`" + (f" (predicted: {prediction_text(alt)})" if "output_sqnr_db" in alt else "")
                  for alt in a.get("alternatives", [])]
        lines.append("")
    return lines[:-1]


def _recommended(m: dict) -> list[str]:
    """The artifact to ship per device (host runtime, device profile) and the artifacts slower than a more precise
    sibling; a manifest from before 1.4, or one written with benchmarking off, has none."""
    from toolkit.benchmark.render import render_recommended

    rec = m.get("recommended")
    if not rec:
        return []
    return ["## Recommended artifact per device", "", *render_recommended(rec, {a["format"] for a in m["artifacts"]}), ""]


def _cell(v) -> str:
    return "—" if not v else str(v).replace("|", "\\|").replace("\n", " ")


def _verdict(m: dict) -> str:
    """PASSED; INCOMPLETE where every artifact present passes but targets did not convert; else FAILED."""
    v = m["verdict"]
    if v["passed"]:
        return "PASSED"
    gate_passed = v["passed_count"] == v["artifact_count"] and v.get("compression_passed", True)
    return "INCOMPLETE" if gate_passed and m.get("failed_targets") else "FAILED"


def render(m: dict) -> str:
    failed = m.get("failed_targets") or []
    converted = (f"{m['verdict']['artifact_count']} of {m['verdict']['artifact_count'] + len(failed)} recipe targets converted "
                 f"(**incomplete bundle**: {', '.join(f['key'] for f in failed)} did not); ") if failed else ""
    lines = [f"# skinkit bundle: {m['bundle']}", "",
             f"Model **{m['model']['name']}** ({m['model']['architecture']}), task: {m['model']['task']}. "
             f"Created {m['created_utc']} by skinkit {m['tools']['skinkit']}.", "",
             f"**Verdict: {_verdict(m)}** — {converted}"
             f"{m['verdict']['passed_count']} of {m['verdict']['artifact_count']} artifacts passed verification "
             f"on {m['evaluation']['n']} held-out images ({m['evaluation']['source']}).", *_advice(m), *_not_converted(m), "",
             "## Input contract", ""]
    if m["evaluation"].get("ground_truth") == "float":
        lines[-2:-2] = ["No labels: the float model's own decisions stand for the ground truth, so every metric "
                        "measures agreement with the float model.", ""]
    inp = m["input"]
    lines += [f"- shape {inp['shape']} ({inp['layout']}, {inp['dtype']}), {inp['color_order']} values in {inp['range']}",
              f"- normalization in graph: (pixel / {inp['normalization']['scale']:g} − mean) / std, "
              f"mean {inp['normalization']['mean']}, std {inp['normalization']['std']}",
              "- outputs: " + "; ".join(f"{o['name']} ({o['description']}{', ' + o['unit'] if o.get('unit') else ''})" for o in m["outputs"])]
    if m["labels"]:
        lines.append(f"- labels: {', '.join(m['labels'])}")
    lines += ["", "## Artifacts", "",
              "| artifact | size | max abs err (/ float range) | cosine | agreement | task metric (float → artifact) | check | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    for a in m["artifacts"]:
        v = a["verification"]
        by_output = v.get("numerics_by_output") or {}
        if len(by_output) > 1:  # outputs in their own units: each its own figure
            err = "; ".join(f"{o}: {_rel(n)}" for o, n in by_output.items())
            cos = "; ".join(f"{o}: {_fmt(n['cosine'])}" for o, n in by_output.items())
        else:
            num = v.get("numerics", {})
            err, cos = _rel(next(iter(by_output.values()), num)), _fmt(num.get("cosine", "—"))
        tm = v.get("task_metric")
        task = (f"{tm['name']} {tm['float']:.4f} → {tm['artifact']:.4f} (drop {tm['drop']:+.4f}, "
                f"95 % CI {tm['drop_ci95'][0]:+.4f} … {tm['drop_ci95'][1]:+.4f})") if tm else "—"
        agree = v.get("agreement")
        lines.append(f"| `{a['path']}` | {a['size_bytes'] / 1e6:.2f} MB | {err} | "
                     f"{cos} | {_fmt(agree) if agree is not None else '—'} | {task} | {v['check']}{_origin(v)} | "
                     f"{'pass' if v['passed'] else '**FAIL**'} |")
    lines += _compression(m)
    lines += _task_sections(m)
    lines += ["", "## Structure (read back from each file)", "",
              "| artifact | input | transposes | weights | notes |", "|---|---|---|---|---|"]
    for a in m["artifacts"]:
        st = a["structure"]
        first = (st.get("inputs") or [{}])[0]
        q = first.get("quantization")
        inp = f"{first.get('dtype', first.get('type', '?'))} {first.get('shape', '')}" + (f", scale {q['scale']:.4g} zero point {q['zero_point']}" if q else "")
        weights = st.get("tensor_dtypes") or st.get("weight_dtypes") or {}
        notes = []
        if st.get("compressed_weight_ops"):
            notes.append("compressed: " + ", ".join(f"{k}×{v}" for k, v in st["compressed_weight_ops"].items()))
        if st.get("output_transform") == "softmax":
            notes.append("classifier: outputs probabilities, compared with the softmax of the float logits")
        if st.get("deployment_target"):
            notes.append(f"minimum {st['deployment_target']}" + (f" ({st['deployment_target_note']})" if st.get("deployment_target_note") else ""))
        lines.append(f"| `{a['path']}` | {inp} | {st.get('transpose_count', '—')} | "
                     f"{', '.join(f'{k}×{v}' for k, v in weights.items())} | {'; '.join(notes)} |")
    lines += _rewrites(m)
    failing = [(a["path"], c) for a in m["artifacts"] for c in a["verification"]["criteria"] if not c["passed"]]
    if failing:
        lines += ["", "## Failed criteria", ""]
        lines += [f"- `{p}`: {c['name']}: {_fmt(c['value'])} (required {c['op']} {_fmt(c['bound'])})" for p, c in failing]
        for a in m["artifacts"]:
            c = a["verification"].get("culprits") or {}
            if c.get("ranking"):
                worst = ", ".join(f"`{r['layer']}` (local SQNR {r['local_sqnr_db']} dB)" for r in c["ranking"][:3])
                lines.append(f"- `{a['path']}` culprit layers ({c['method']}): {worst}; {c['suggestion']}")
            elif c.get("error"):
                lines.append(f"- `{a['path']}`: {c['error']}")
    tone = m["evaluation"].get("skin_tone") or {}
    lines += ["", "## Per skin-tone group (ITA° bins)", "", f"Groups measured as {tone.get('method', '?')}."]
    ann = tone.get("versus_annotation")
    if ann:
        lines.append(f"Against the data's annotated ITA°: same group for {ann['group_agreement']:.0%} of {ann['n']} images, "
                     f"mean |ΔITA| {ann['ita_mean_abs_difference']:.1f}°.")
    lines.append("")
    for a in m["artifacts"]:
        groups = a["verification"].get("by_group")
        if not groups:
            continue
        key = a["verification"]["task_metric"]["name"]
        lines.append(f"**{a['path']}**: " + "; ".join(
            f"{g} (n={d['n']}) {key} {d['metrics'][key]['float']['value']:.3f} → {d['metrics'][key]['artifact']['value']:.3f}"
            for g, d in groups.items()))
        lines.append("")
    bench = [(a["path"], a["benchmark"]) for a in m["artifacts"] if a.get("benchmark")]
    if bench or m.get("reference_benchmark"):
        lines += ["## Host latency (batch 1)", "", "| runtime | p50 ms | p90 ms | vs torch fp32 |", "|---|---|---|---|"]
        ref = m.get("reference_benchmark")
        if ref:
            lines.append(f"| PyTorch fp32 (reference) | {ref['p50_ms']} | {ref['p90_ms']} | 1.00 |")
        for p, b in bench:
            if "p50_ms" in b:
                ratio = f"{b['p50_ms'] / ref['p50_ms']:.2f}" if ref else "—"
                runs = f" ({b['repeats']} runs: time budget)" if b.get("time_budget") else ""
                lines.append(f"| `{p}` | {b['p50_ms']} | {b['p90_ms']} | {ratio}{runs} |")
            else:
                lines.append(f"| `{p}` | — | — | {b.get('skipped', '')} |")
        lines.append("")
    lines += _recommended(m)
    lines += ["## Provenance", "", f"- checkpoint: `{m['model']['checkpoint']}` (sha256 {m['model']['checkpoint_sha256'][:16]}…)",
              f"- recipe: `{m['recipe']['path']}` (sha256 {m['recipe']['sha256'][:16]}…)",
              "- tools: " + ", ".join(f"{k} {v}" for k, v in m["tools"].items()), ""]
    return "\n".join(lines)


def _origin(v: dict) -> str:
    """Where an artifact's outputs came from when not from running it during verification (``toolkit.verify.outputs``)."""
    o = v.get("outputs")
    if not o:
        return ""
    if o["from"] == "the output cache":
        return f"; outputs from the output cache (computed {o.get('computed_utc') or 'earlier'})"
    return f"; outputs {o['from']}"
