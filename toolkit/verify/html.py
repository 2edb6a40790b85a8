"""A self-contained HTML page of a verification: verdict, failed criteria, metrics with 95 % CIs, skin-tone
groups, culprit layers, and plots (error histograms, per-group drops, per-layer SQNR, confusion matrices)
as inline PNGs. One file, no scripts, no network: it opens offline and can be attached to a CI run."""

from __future__ import annotations

import base64
import io
import math
from html import escape

from toolkit.data.skin_tone import GROUP_ORDER

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1b1b1b}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.pass{color:#176b2c;font-weight:600}.fail{color:#b00020;font-weight:600}.muted{color:#666}
.verdict{padding:.6em 1em;border-radius:6px;display:inline-block}
.verdict.pass{background:#e6f4ea}.verdict.fail{background:#fde7e9}
img{max-width:100%;margin:.3em 0}.plots{display:flex;flex-wrap:wrap;gap:12px}
"""


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return escape(str(v))
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.5g}"
    if isinstance(v, list):
        return escape(", ".join(_fmt(x) for x in v))
    return escape(str(v))


def _ci(row: dict | None) -> str:
    if not row:
        return "—"
    lo, hi = row["ci95"]
    return f"{_fmt(row['value'])} <span class=muted>[{_fmt(lo)}, {_fmt(hi)}]</span>"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _histogram(hist: dict, title: str) -> str:
    import matplotlib.pyplot as plt

    edges, counts = hist["edges"], hist["counts"]
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    ax.bar(edges[:-1], [max(c, 0.5) for c in counts], width=(edges[1] - edges[0]), align="edge", color="#4a78b5")
    ax.set_yscale("log")
    ax.set_xlabel("artifact − float (output units)")
    ax.set_ylabel("values")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def _group_drops(groups: dict, key: str) -> str:
    import matplotlib.pyplot as plt

    names = [g for g in GROUP_ORDER if g in groups]
    drops = [groups[g]["metrics"][key]["drop"] for g in names]
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    values = [d["value"] for d in drops]
    err = [[max(d["value"] - d["ci95"][0], 0) for d in drops], [max(d["ci95"][1] - d["value"], 0) for d in drops]]
    ax.bar(range(len(names)), values, yerr=err, capsize=3, color="#c0504d")
    ax.axhline(0, color="#333", lw=0.8)
    ax.set_xticks(range(len(names)), [f"{g}\nn={groups[g]['n']}" for g in names], fontsize=7)
    ax.set_ylabel(f"{key} drop vs float")
    ax.set_title("per skin-tone group (95 % CI)", fontsize=9)
    return _png(fig)


def _layers(culprits: dict) -> str:
    import matplotlib.pyplot as plt

    by_position = sorted(culprits["ranking"], key=lambda r: r["position"])
    fig, ax = plt.subplots(figsize=(8.5, 2.8))
    ax.plot([r["local_sqnr_db"] for r in by_position], marker=".", label="local SQNR (noise the layer adds)")
    ax.plot([r["output_sqnr_db"] for r in by_position], marker=".", label="output SQNR vs float")
    ax.set_xlabel("layer (network order)")
    ax.set_ylabel("dB")
    ax.legend(fontsize=7)
    ax.set_title("per-layer SQNR", fontsize=9)
    return _png(fig)


def _confusion(cm: list[list[int]], labels: list[str], title: str) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 3.0))
    ax.imshow(cm, cmap="Blues")
    for i, row in enumerate(cm):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def _metrics_table(metrics: dict) -> str:
    rows = ["<table><tr><th>metric</th><th>float [95 % CI]</th><th>artifact [95 % CI]</th><th>drop (positive = worse)</th></tr>"]
    for name, r in metrics.items():
        rows.append(f"<tr><td>{escape(name)}</td><td>{_ci(r.get('float'))}</td><td>{_ci(r['artifact'])}</td><td>{_ci(r.get('drop'))}</td></tr>")
    return "".join(rows) + "</table>"


def _criteria_table(criteria: list[dict]) -> str:
    rows = ["<table><tr><th>criterion</th><th>value</th><th>required</th><th></th></tr>"]
    for c in criteria:
        cls = "pass" if c["passed"] else "fail"
        rows.append(f"<tr><td>{escape(c['name'])}</td><td>{_fmt(c['value'])}</td><td>{escape(c['op'])} {_fmt(c['bound'])}</td>"
                    f"<td class={cls}>{'pass' if c['passed'] else 'FAIL'}</td></tr>")
    return "".join(rows) + "</table>"


def _groups_table(groups: dict, key: str) -> str:
    rows = [f"<table><tr><th>group</th><th>n</th><th>ITA° range</th><th>float {escape(key)}</th><th>artifact {escape(key)}</th><th>drop</th></tr>"]
    for g in GROUP_ORDER:
        if g not in groups:
            continue
        d = groups[g]
        m = d["metrics"][key]
        ita = d.get("ita_range")
        rows.append(f"<tr><td>{g}</td><td>{d['n']}</td><td>{_fmt(ita[0]) + ' … ' + _fmt(ita[1]) if ita else '—'}</td>"
                    f"<td>{_ci(m.get('float'))}</td><td>{_ci(m['artifact'])}</td><td>{_ci(m.get('drop'))}</td></tr>")
    return "".join(rows) + "</table>"


def _culprit_table(c: dict) -> str:
    if "error" in c:
        return f"<p class=fail>{escape(c['error'])}</p>"
    head = (f"<p>{escape(c['method'])}; {c['layers_matched']} of {c['layers_total']} layers matched to artifact tensors; "
            f"{c['images']} images; network output SQNR {c['output_sqnr_db']} dB. <b>{escape(c['suggestion'])}</b></p>")
    rows = ["<table><tr><th>layer (module path)</th><th>type</th><th>local SQNR dB</th><th>input → output SQNR dB</th>"
            "<th>weight SQNR dB</th><th>alone: output SQNR dB</th></tr>"]
    for r in c["ranking"][:10]:
        rows.append(f"<tr><td>{escape(r['layer'])}</td><td>{r['type']}</td><td>{r['local_sqnr_db']}</td>"
                    f"<td>{r['input_sqnr_db']} → {r['output_sqnr_db']}</td><td>{_fmt(r.get('weight_sqnr_db', '—'))}</td>"
                    f"<td>{_fmt(r.get('isolated_output_sqnr_db', '—'))}</td></tr>")
    return head + "".join(rows) + "</table>"


def render_html(summary: dict) -> str:
    """The page for a ``verify_bundle`` summary (also valid for a failing gate)."""
    import matplotlib

    matplotlib.use("Agg")
    ok = summary["passed"]
    failed = summary.get("failed_targets") or []
    ev = summary["evaluation"]
    tone = ev.get("skin_tone") or {}
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>skinkit verify {escape(summary['model'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>skinkit verify: {escape(summary['model'])}</h1>",
             f"<p class='verdict {'pass' if ok else 'fail'}'>{'PASSED' if ok else 'FAILED'}: "
             f"{sum(a['passed'] for a in summary['artifacts'])} of {len(summary['artifacts'])} artifacts pass the gate"
             + (f"; incomplete bundle: {len(failed)} recipe target(s) did not convert" if failed else "") + "</p>",
             f"<p>Bundle <code>{escape(summary['bundle'])}</code>; integrity: {len(summary['integrity'])} files match the manifest's sha256. "
             f"{ev['n']} evaluation images ({escape(str(ev['source']))}); 95 % CIs from {ev.get('bootstrap', '?')} bootstrap replicates "
             f"(paired for drops); non-inferiority judged on the {'upper CI bound' if ev.get('noninferiority') == 'ci' else 'point estimate'}; "
             f"{summary['seconds']} s.</p>"]
    if tone:
        ann = tone.get("versus_annotation")
        parts.append(f"<p>Skin tone: {escape(tone['method'])}. Groups: "
                     + ", ".join(f"{g} {n}" for g, n in tone["groups"].items())
                     + (f". Same group as the data's annotation for {ann['group_agreement']:.0%} of {ann['n']} images "
                        f"(mean |ΔITA| {ann['ita_mean_abs_difference']:.1f}°)." if ann else ".") + "</p>")
    parts.append("<table><tr><th>artifact</th><th>format</th><th>precision</th><th>executed by</th><th>verdict</th></tr>"
                 + "".join(f"<tr><td><a href='#a{i}'>{escape(a['path'])}</a></td><td>{a['format']}</td><td>{a['precision']}</td>"
                           f"<td>{escape(a['check'])}</td><td class={'pass' if a['passed'] else 'fail'}>{'pass' if a['passed'] else 'FAIL'}</td></tr>"
                           for i, a in enumerate(summary["artifacts"])) + "</table>")
    if failed:
        parts.append("<h2>Targets not converted <span class=fail>incomplete bundle</span></h2>"
                     "<p>The bundle holds no artifact for these recipe targets.</p>"
                     "<table><tr><th>target</th><th>format</th><th>precision</th><th>op</th><th>module</th><th>error</th><th>fix</th></tr>"
                     + "".join(f"<tr><td>{escape(f['key'])}</td><td>{escape(f['format'])}</td><td>{escape(f['precision'])}</td>"
                               f"<td>{_fmt(f.get('op') or '—')}</td><td>{_fmt(f.get('module') or '—')}</td>"
                               f"<td class=fail>{escape(f['error'])}</td><td>{_fmt(f.get('fix') or '—')}</td></tr>" for f in failed)
                     + "</table>")
    for i, a in enumerate(summary["artifacts"]):
        parts.append(f"<h2 id='a{i}'>{escape(a['path'])} <span class={'pass' if a['passed'] else 'fail'}>{'pass' if a['passed'] else 'FAIL'}</span></h2>")
        if a.get("error"):
            parts.append(f"<p class=fail>{escape(a['error'])}</p>")
        parts.append("<h3>Gate</h3>" + _criteria_table(a["criteria"]))
        plots = []
        if a.get("error_histogram"):
            plots.append(_histogram(a["error_histogram"], "output error histogram"))
        key = (a.get("task_metric") or {}).get("name")
        if a.get("by_group") and key:
            plots.append(_group_drops(a["by_group"], key))
        if a.get("confusion"):
            labels = summary.get("labels") or [str(k) for k in range(len(a["confusion"]["artifact"]))]
            plots += [_confusion(a["confusion"]["float"], labels, "float"), _confusion(a["confusion"]["artifact"], labels, "artifact")]
        if plots:
            parts.append("<div class=plots>" + "".join(plots) + "</div>")
        if a.get("numerics_by_output"):
            parts.append("<h3>Numerics per output (float64)</h3><table><tr><th>output</th><th>max abs</th><th>MAE</th>"
                         "<th>mean signed</th><th>cosine</th><th>SQNR dB</th></tr>"
                         + "".join(f"<tr><td>{escape(o)}</td><td>{_fmt(n['max_abs_error'])}</td><td>{_fmt(n['mean_abs_error'])}</td>"
                                   f"<td>{_fmt(n['mean_signed_error'])}</td><td>{_fmt(n['cosine'])}</td><td>{_fmt(n['sqnr_db'])}</td></tr>"
                                   for o, n in a["numerics_by_output"].items()) + "</table>")
        if a.get("metrics"):
            parts.append("<h3>Task metrics</h3>" + _metrics_table(a["metrics"]))
        if a.get("by_group") and key:
            parts.append("<h3>Skin-tone groups</h3>" + _groups_table(a["by_group"], key))
        if a.get("culprits"):
            c = a["culprits"]
            parts.append("<h3>Culprit layers</h3>" + _culprit_table(c))
            if "ranking" in c:
                parts.append(_layers(c))
    parts.append("</body></html>")
    return "\n".join(parts)
