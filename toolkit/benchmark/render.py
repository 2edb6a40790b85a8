"""``skinkit bench`` for people: host table (measured), estimate table (per device profile), phones, and the
recommended artifact per device (also a section of a bundle's report.md)."""

from __future__ import annotations


def _ms(v) -> str:
    return "—" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def render_bench(r: dict) -> str:
    host = r["host"]
    roof = host["roofline"]
    lines = [f"{r['bundle']} ({r['model']}) on {host['machine']}",
             f"host roofline ({roof['threads']} threads, measured): {roof['fp32_gmacs']} GMAC/s fp32, {roof['bandwidth_gb_s']} GB/s"
             + (f" (noisy: {roof['noisy']})" if roof.get("noisy") else ""), ""]
    head = "| artifact | size MB | MMACs | " + " | ".join(f"p50 ms ({t} thr) | vs torch fp32 | vs ORT" for t in r["threads"]) \
        + " | vs roofline | peak MB |"
    lines += ["Host, measured (PyTorch fp32 reference: " + ", ".join(
        f"{_ms(v['p50_ms'])} ms at {t} threads" for t, v in host["reference"].items()) + ")", "", head,
        "|" + "---|" * (head.count("|") - 1)]
    top = str(max(r["threads"]))
    for a in r["artifacts"]:
        cells = [a["artifact"], f"{a['size_bytes'] / 1e6:.2f}", f"{a['cost']['macs'] / 1e6:.1f}"]
        for t in r["threads"]:
            h = a["host"].get(str(t), {})
            if "p50_ms" in h:
                cells += [_ms(h["p50_ms"]), f"{h['ratio_to_torch_fp32']:.2f}", f"{h['ratio_to_onnxruntime']:.2f}" if "ratio_to_onnxruntime" in h else "—"]
            else:
                cells += ["not run", "—", "—"]
        h = a["host"].get(top, {})
        cells += [f"{h['ratio_to_roofline']}×" if "ratio_to_roofline" in h else "—", str(h.get("peak_memory_mb", "—"))]
        lines.append("| " + " | ".join(cells) + " |")
    noisy = [(a["artifact"], t, h) for a in r["artifacts"] for t, h in a["host"].items() if h.get("noisy")]
    noisy += [("PyTorch fp32 reference", t, h) for t, h in host["reference"].items() if h.get("noisy")]
    if noisy:
        lines += ["", f"warning: {len(noisy)} host timing(s) are too noisy to trust as absolute figures:"]
        lines += [f"  {name} at {t} threads: p10–p90 {_ms(h['p10_ms'])}–{_ms(h['p90_ms'])} ms around p50 {_ms(h['p50_ms'])}; "
                  f"{h['noisy']}" for name, t, h in noisy]
    skipped = {h.get("skipped") for a in r["artifacts"] for h in a["host"].values() if h.get("skipped")}
    lines += [f"not run: {s}" for s in sorted(skipped)]
    profiles = sorted({e["profile"] for a in r["artifacts"] for e in a["estimates"] if e["ms"] is not None})
    lines += ["", "Phones, ESTIMATED from device profiles (overhead + max(compute, memory) + partitions; "
              "f = fitted to published figures, d = derived, not fitted)", "",
              "| artifact | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]
    for a in r["artifacts"]:
        by = {e["profile"]: e for e in a["estimates"]}
        cells = []
        for p in profiles:
            e = by.get(p)
            cells.append("—" if e is None or e["ms"] is None else
                         f"{_ms(e['ms'])} {'f' if e['basis'].startswith('fitted') else 'd'}" + (f" ({e['partitions']} part.)" if e["partitions"] else ""))
        if any(c != "—" for c in cells):
            lines.append(f"| {a['artifact']} | " + " | ".join(cells) + " |")
    ph = r["phones"]
    lines += ["", f"Android: {'devices ' + ', '.join(ph['android']['devices']) if ph['android']['available'] else ph['android']['reason']}",
              f"iOS: {'devices ' + ', '.join(ph['ios']['devices']) + ' — ' + ph['ios']['reason'] if ph['ios']['available'] else ph['ios']['reason']}"]
    for a in r["artifacts"]:
        for p in a.get("phones", []):
            lines.append(f"  {a['artifact']} on {p['device']} ({p['delegate']}): " +
                         (p["error"] if "error" in p else f"mean {p['mean_ms']:.3f} ms, min {p['min_ms']:.3f} ms over {p['runs']} runs (measured)"))
    if r.get("recommended"):
        lines += ["", "Recommended artifact per device (passed its gate at export; host measured here, phones estimated "
                  "unless attached)", "", *render_recommended(r["recommended"], {a["format"] for a in r["artifacts"] if a.get("in_bundle", True)})]
    failed = r.get("failed_targets") or []
    if failed:
        lines += ["", f"Incomplete bundle: {len(failed)} recipe target(s) did not convert, so have no figures: "
                  + ", ".join(f["key"] for f in failed)]
    lines.append(f"({r['seconds']} s)")
    return "\n".join(lines)


def _pick(p: dict | None) -> str:
    return "—" if p is None else f"`{p['artifact']}` ({p['precision']}) {p['ms']:.3g} ms" + (" (noisy)" if p.get("noisy") else "")


def render_recommended(rec: dict, formats: set[str]) -> list[str]:
    """The recommended artifact per device (``toolkit.benchmark.recommend``) as a Markdown table, the devices whose
    runtime the bundle has no artifact for in one line, and the artifacts slower than a more precise sibling."""
    rows = [d for d in rec["devices"] if d["runtime"] in formats]
    absent = [d for d in rec["devices"] if d["runtime"] not in formats]
    lines = [f"Rule: {rec['rule']}.", "", "| device | runtime | recommended | latency | basis | runner-up |", "|---|---|---|---|---|---|"]
    for d in rows:
        r = d["recommended"]
        if r is None:
            reason = d["reason"].replace("|", "\\|").replace("\n", " ")  # free text: not a cell break
            lines.append(f"| {d['device']} | {d['runtime']} | none: {reason} | — | — | — |")
            continue
        lines.append(f"| {d['device']} | {d['runtime']} | `{r['artifact']}` ({r['precision']}) | {r['ms']:.3g} ms"
                     f"{' (noisy)' if r.get('noisy') else ''} | {r['basis']} | {_pick(d['runner_up'])} |")
    if absent:
        lines += ["", "No artifact of their runtime in the bundle: " + ", ".join(f"{d['device']} ({d['runtime']})" for d in absent) + "."]
    lines.append("")
    if rec["flags"]:
        lines += ["Slower than a more precise sibling on the same device:", ""] + [f"- {f['message']}" for f in rec["flags"]]
    else:
        lines.append("No artifact is slower than a more precise sibling on any device.")
    return lines
