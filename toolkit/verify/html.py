"""A self-contained HTML page of a verification. One file, no scripts, no network: it opens offline and can be
attached to a CI run.

Overview first: the verdict, the suggested recipe change where the gate failed (``toolkit.verify.advice``), one
forest plot of every artifact's headline-metric drop with its 95 % CI against its margin, and a table of the
artifacts. Then one section per artifact, collapsed (``<details>``) where it passed: its criteria, an error
histogram (counts per bin; an empty bin is left empty), its per-group drops against the group bound, its confusion
matrix and the predictions it changed against float, its tables, and its culprit layers on a per-layer SQNR plot
named by module path. Figures are inline SVG (vector; their text is text)."""

from __future__ import annotations

import io
import math
import re
from html import escape

from toolkit.data.skin_tone import GROUP_ORDER

PASS, FAIL, MARGIN, MUTED = "#1b7f3b", "#c62828", "#e08a00", "#8a8a8a"  # the page's and the figures' colours

_CSS = f"""
body{{font:14px/1.45 system-ui,sans-serif;margin:1.2em auto;max-width:1100px;color:#1b1b1b;padding:0 12px}}
h1{{font-size:1.45em;margin:.2em 0}}h2{{margin:1.4em 0 .4em;border-bottom:1px solid #ddd;font-size:1.2em}}
h3{{margin:.9em 0 .3em;font-size:1.02em}}
table{{border-collapse:collapse;margin:.4em 0}}td,th{{border:1px solid #ddd;padding:2px 7px;text-align:right;vertical-align:top}}
th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}
.pass{{color:{PASS};font-weight:600}}.fail{{color:{FAIL};font-weight:600}}.muted{{color:#666}}
.verdict{{padding:.35em .9em;border-radius:6px;display:inline-block;margin:.3em 0}}
.verdict.pass{{background:#e3f3e8}}.verdict.fail{{background:#fde7e9}}
.fix{{border-left:5px solid {FAIL};background:#fff6e9;padding:.5em 1em;margin:.8em 0}}
.fix h2{{border:0;margin:.1em 0}}.fix p{{margin:.35em 0}}
.change{{background:#fff;margin:.2em 0}}.change th{{background:#fff;font-weight:normal;color:#666;border-color:#eadbc4}}
.change td{{text-align:left;border-color:#eadbc4}}.change td.add code{{color:{PASS}}}.change td.del code{{color:{FAIL}}}
svg{{max-width:100%;height:auto}}.plots{{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}}
.wide{{overflow-x:auto}}.wide svg{{max-width:none}}
details.artifact{{border:1px solid #ddd;border-radius:6px;margin:.5em 0;padding:.2em .8em}}
details.artifact>summary{{cursor:pointer;font-weight:600;padding:.3em 0}}
details.artifact.failed{{border-color:{FAIL}}}
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


def _verdict(ok: bool) -> str:
    return f"<span class={'pass' if ok else 'fail'}>{'pass' if ok else 'FAIL'}</span>"


class _Figures:
    """Matplotlib figures as inline SVG, each with its own element ids (several on one page must not clash)."""

    def __init__(self):
        import matplotlib

        matplotlib.use("Agg")
        self.count = 0
        self.rc = {"svg.fonttype": "none", "svg.hashsalt": "skinkit", "font.size": 8, "axes.titlesize": 9,
                   "axes.spines.top": False, "axes.spines.right": False}

    def svg(self, fig, label: str) -> str:
        import matplotlib.pyplot as plt

        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
        plt.close(fig)
        self.count += 1
        text = buf.getvalue()
        text = text[text.index("<svg"):]
        text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)  # no RDF: nothing names a URL
        prefix = f"f{self.count}-"
        text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m[1]}"', text)
        text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m[1]})", text)
        text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m[1]}"', text)
        return text.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" class=figure ', 1)

    def figure(self, w: float, h: float):
        """A figure and its axes; make and save it inside ``context()``, whose settings apply to both."""
        import matplotlib.pyplot as plt

        return plt.subplots(figsize=(w, h))

    def context(self):
        import matplotlib.pyplot as plt

        return plt.rc_context(self.rc)


def _drop_criterion(a: dict) -> dict | None:
    """The artifact's headline-metric drop criterion (its margin), if the gate judged one."""
    key = (a.get("task_metric") or {}).get("name")
    return next((c for c in a.get("criteria", []) if key and c["name"].startswith(f"{key} drop vs")), None)


def _forest(figs: _Figures, summary: dict) -> str:
    """Every artifact's headline drop (point, 95 % CI) against its margin; one row each, pass green, fail red."""
    rows = []
    for a in summary["artifacts"]:
        tm, crit = a.get("task_metric"), _drop_criterion(a)
        rows.append((a["path"].removeprefix("artifacts/"), tm and tm["drop"], tm and tm["drop_ci95"],
                     crit["bound"] if crit else None, a["passed"]))
    pr = summary.get("pruning")
    if pr:
        bound = next((c["bound"] for c in pr["criteria"] if " drop vs " in c["name"]), None)
        rows.append(("pruned float vs original", pr["drop"]["value"], pr["drop"]["ci95"], bound, pr["passed"]))
    key = next((a["task_metric"]["name"] for a in summary["artifacts"] if a.get("task_metric")), "headline metric")
    with figs.context():
        fig, ax = figs.figure(9.0, 0.9 + 0.34 * len(rows))
        values = [x for _, d, ci, m, _ in rows for x in ([d, *ci] if d is not None else []) + ([m] if m is not None else [])]
        lo, hi = (min(values + [0.0]), max(values + [0.0])) if values else (-1.0, 1.0)
        pad = (hi - lo) * 0.08 or 0.01
        for y, (_, d, ci, margin, ok) in enumerate(rows):
            colour = PASS if ok else FAIL
            if d is None:
                ax.text(0, y, "  not measured (did not execute, or outputs unusable)", va="center", color=FAIL, fontsize=7)
                continue
            ax.plot(ci, [y, y], color=colour, lw=2.4, solid_capstyle="butt")
            ax.plot([d], [y], marker="D", color=colour, ms=6)
            if margin is not None:
                ax.plot([margin, margin], [y - 0.36, y + 0.36], color=MARGIN, lw=2.2)
        ax.axvline(0, color="#333", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.set_xlabel(f"{key} drop vs float (positive = worse): ◆ point estimate, bar 95 % CI, | margin")
        judged = "upper CI bound" if summary["evaluation"].get("noninferiority") == "ci" else "point estimate"
        ax.plot([], [], color=MARGIN, lw=2.2, label=f"margin (judged on the {judged})")
        ax.plot([], [], color=PASS, lw=2.4, label="artifact passes")
        if not all(r[4] for r in rows):
            ax.plot([], [], color=FAIL, lw=2.4, label="artifact fails")
        ax.legend(loc="lower left", fontsize=7, frameon=False, ncol=3, bbox_to_anchor=(0, 1.0))
        return figs.svg(fig, f"forest plot of every artifact's {key} drop")


def _histogram(figs: _Figures, hist: dict, bound: float | None) -> str:
    """Signed error counts per bin on a log axis; an empty bin is drawn as nothing; the max-abs bound, where set."""
    edges, counts = hist["edges"], hist["counts"]
    width = edges[1] - edges[0]
    with figs.context():
        fig, ax = figs.figure(4.2, 2.7)
        filled = [(e, c) for e, c in zip(edges[:-1], counts) if c > 0]
        ax.bar([e for e, _ in filled], [c for _, c in filled], width=width, align="edge", color="#4a78b5", edgecolor="none")
        ax.set_yscale("log")
        ax.set_ylim(0.7, max(counts) * 1.6)
        edge = max(abs(edges[0]), abs(edges[-1]))
        if bound is not None:
            if bound <= 2.5 * edge:
                for x in (-bound, bound):
                    ax.axvline(x, color=MARGIN, lw=1.6, ls="--")
                ax.set_xlim(-max(edge, bound) * 1.05, max(edge, bound) * 1.05)
                ax.text(bound, max(counts), " max abs bound", color=MARGIN, fontsize=7, va="top")
            else:
                ax.text(0.99, 0.97, f"max abs bound ±{bound:.3g}\n(off scale: {bound / edge:.0f}× the largest error)",
                        transform=ax.transAxes, ha="right", va="top", color=MARGIN, fontsize=7)
        ax.set_xlabel("artifact − float (output units)")
        ax.set_ylabel("values per bin (count, log)")
        ax.set_title(f"output error: {sum(counts):,} values, {sum(c == 0 for c in counts)} of {len(counts)} bins empty", loc="left")
        return figs.svg(fig, "output error histogram")


def _group_drops(figs: _Figures, groups: dict, key: str, group_bound: float | None, margin: float | None) -> str:
    names = [g for g in GROUP_ORDER if g in groups]
    drops = [groups[g]["metrics"][key]["drop"] for g in names]
    with figs.context():
        fig, ax = figs.figure(4.4, 2.7)
        values = [d["value"] for d in drops]
        err = [[max(d["value"] - d["ci95"][0], 0) for d in drops], [max(d["ci95"][1] - d["value"], 0) for d in drops]]
        ax.bar(range(len(names)), values, yerr=err, capsize=3, color=["#9aa7b8" if g == "unknown" else "#6d87a8" for g in names])
        ax.axhline(0, color="#333", lw=0.8)
        if group_bound is not None:
            ax.axhline(group_bound, color=MARGIN, lw=1.6, ls="--", label=f"group bound {group_bound:g}")
        if margin is not None and margin != group_bound:
            ax.axhline(margin, color=MUTED, lw=1.2, ls=":", label=f"overall margin {margin:g}")
        if group_bound is not None or margin is not None:
            ax.legend(fontsize=7, frameon=False, loc="upper left")
        ax.set_xticks(range(len(names)), [f"{g}\nn={groups[g]['n']}" for g in names], fontsize=7)
        ax.set_ylabel(f"{key} drop vs float")
        ax.set_title("per skin-tone group (point, 95 % CI)", loc="left")
        return figs.svg(fig, "per skin-tone group drops")


def _matrix(figs: _Figures, cm: list[list[int]], labels: list[str], title: str, *, xlabel: str, ylabel: str,
            changed: bool = False) -> str:
    """A count matrix; ``changed``: the diagonal (unchanged decisions) grey, a non-zero cell off it red."""
    import numpy as np

    a = np.array(cm)
    n = len(a)
    with figs.context():
        fig, ax = figs.figure(3.3, 3.0)
        grid = np.arange(n + 1) - 0.5
        if changed:  # the diagonal (unchanged) grey, a changed cell red
            shade = np.where(np.eye(n, dtype=bool), 0.25, np.where(a > 0, 1.0, 0.0))
            ax.pcolormesh(grid, grid, shade, cmap="Reds", vmin=0, vmax=1.6, edgecolors="white", linewidth=0.5)
            ax.pcolormesh(grid, grid, np.ma.masked_where(~np.eye(n, dtype=bool), np.ones((n, n))), cmap="Greys", vmin=0, vmax=8)
        else:
            ax.pcolormesh(grid, grid, a, cmap="Blues", edgecolors="white", linewidth=0.5)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_aspect("equal")
        for i, row in enumerate(cm):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                        color="white" if not changed and v > a.max() * 0.6 else "#1b1b1b")
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        return figs.svg(fig, title)


def _culprit_names(c: dict) -> list[str]:
    """The layers the culprit analysis names (its suggestion: the worst few that add measurable noise)."""
    text = c.get("suggestion", "")
    return [n.strip() for n in text.split(":", 1)[1].split(",")] if text.startswith("keep in higher precision:") else []


def _layers(figs: _Figures, c: dict) -> str:
    """Per-layer SQNR in network order, each tick a module path; the culprits marked and named."""
    by_position = sorted(c["ranking"], key=lambda r: r["position"])
    names = [r["layer"] for r in by_position]
    culprits = set(_culprit_names(c))
    with figs.context():
        fig, ax = figs.figure(max(8.5, 0.15 * len(names)), 3.6)
        xs = range(len(names))
        ax.plot(xs, [r["local_sqnr_db"] for r in by_position], marker=".", color="#4a78b5", label="local SQNR (noise the layer adds)")
        ax.plot(xs, [r["output_sqnr_db"] for r in by_position], marker=".", color=MUTED, label="output SQNR vs float (accumulated)")
        for x, r in zip(xs, by_position):
            if r["layer"] in culprits:
                ax.plot([x], [r["local_sqnr_db"]], marker="o", ms=9, mfc="none", mec=FAIL, mew=2)
                ax.annotate(r["layer"], (x, r["local_sqnr_db"]), xytext=(4, -12), textcoords="offset points", color=FAIL, fontsize=7)
        ax.plot([], [], marker="o", ms=8, mfc="none", mec=FAIL, mew=2, ls="none", label="culprit")
        ax.set_xticks(list(xs), names, rotation=90, fontsize=6)
        for tick in ax.get_xticklabels():
            if tick.get_text() in culprits:
                tick.set_color(FAIL)
                tick.set_fontweight("bold")
        ax.set_ylabel("dB")
        ax.legend(fontsize=7, frameon=False, ncol=3, loc="lower left", bbox_to_anchor=(0, 1.0))
        ax.set_title("per-layer SQNR (network order)", loc="left", pad=18)
        return figs.svg(fig, "per-layer SQNR")


def _metrics_table(metrics: dict) -> str:
    rows = ["<table><tr><th>metric</th><th>float [95 % CI]</th><th>artifact [95 % CI]</th><th>drop (positive = worse)</th></tr>"]
    for name, r in metrics.items():
        rows.append(f"<tr><td>{escape(name)}</td><td>{_ci(r.get('float'))}</td><td>{_ci(r['artifact'])}</td><td>{_ci(r.get('drop'))}</td></tr>")
    return "".join(rows) + "</table>"


def _criteria_table(criteria: list[dict]) -> str:
    rows = ["<table><tr><th>criterion</th><th>value</th><th>required</th><th></th></tr>"]
    for c in criteria:
        rows.append(f"<tr><td>{escape(c['name'])}</td><td>{_fmt(c['value'])}</td><td>{escape(c['op'])} {_fmt(c['bound'])}</td>"
                    f"<td>{_verdict(c['passed'])}</td></tr>")
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


def _advice_html(path: str, a: dict, *, compact: bool = False, link: str = "") -> str:
    """One artifact's suggested recipe change: the line to replace, the line to paste, what is predicted (``compact``:
    without the alternatives, as the top of the page shows it)."""
    from toolkit.verify.advice import prediction_text

    parts = [f"<p><b>{escape(path)}</b>: {escape(a['change'])}{link}</p>",
             f"<table class=change><tr><th>replace</th><td class=del><code>{escape(a['replace_yaml'])}</code></td></tr>"
             f"<tr><th>with</th><td class=add><code>{escape(a['with_yaml'])}</code></td></tr></table>"]
    if "output_sqnr_db" in a:
        verdict = "" if a.get("meets") is not False else " No option the analysis ran is predicted to pass every criterion: this one helps most."
        parts.append(f"<p>Predicted: {escape(prediction_text(a))}.{verdict} <span class=muted>({escape(a['basis'])})</span></p>")
    else:
        parts.append(f"<p class=muted>{escape(a['basis'])}.</p>")
    if a.get("not_predicted"):
        parts.append(f"<p class=muted>Not predicted (re-export to confirm): {escape('; '.join(a['not_predicted']))}.</p>")
    if compact:
        return "".join(parts)
    alts = [f"<li>or {escape(alt['change'])}: <code>{escape(alt['with_yaml'])}</code>"
            + (f" <span class=muted>(predicted: {escape(prediction_text(alt))})</span>" if "output_sqnr_db" in alt else "") + "</li>"
            for alt in a.get("alternatives", [])]
    if alts:
        parts.append("<ul>" + "".join(alts) + "</ul>")
    return "".join(parts)


def _overview_table(summary: dict) -> str:
    rows = ["<table><tr><th>artifact</th><th>format</th><th>precision</th><th>executed by</th><th>headline drop [95 % CI]</th>"
            "<th>margin</th><th>failed criteria</th><th>verdict</th></tr>"]
    for i, a in enumerate(summary["artifacts"]):
        tm, crit = a.get("task_metric"), _drop_criterion(a)
        drop = (f"{escape(tm['name'])} {tm['drop']:+.4f} <span class=muted>[{tm['drop_ci95'][0]:+.4f}, {tm['drop_ci95'][1]:+.4f}]</span>"
                if tm else "—")
        failed = [c["name"] for c in a["criteria"] if not c["passed"]]
        rows.append(f"<tr><td><a href='#a{i}'>{escape(a['path'])}</a></td><td>{escape(a['format'])}</td><td>{escape(a['precision'])}</td>"
                    f"<td>{escape(a['check'].split(';')[0])}</td><td>{drop}</td><td>{_fmt(crit['bound']) if crit else '—'}</td>"
                    f"<td>{escape('; '.join(failed)) if failed else '—'}</td><td>{_verdict(a['passed'])}</td></tr>")
    return "".join(rows) + "</table>"


def _artifact_section(figs: _Figures, i: int, a: dict, summary: dict) -> str:
    tm = a.get("task_metric")
    head = (f"{escape(a['path'])} {_verdict(a['passed'])}"
            + (f" <span class=muted>{escape(tm['name'])} drop {tm['drop']:+.4f} [{tm['drop_ci95'][0]:+.4f}, {tm['drop_ci95'][1]:+.4f}]</span>" if tm else ""))
    parts = [f"<details class='artifact{'' if a['passed'] else ' failed'}' id='a{i}'{'' if a['passed'] else ' open'}><summary>{head}</summary>"]
    if a.get("error"):
        parts.append(f"<p class=fail>{escape(a['error'])}</p>")
    if a.get("advice"):
        parts.append("<div class=fix><h3>Suggested recipe change</h3>" + _advice_html(a["path"], a["advice"]) + "</div>")
    parts.append("<h3>Gate</h3>" + _criteria_table(a["criteria"]))
    crit = {c["name"]: c for c in a["criteria"]}
    # The histogram is in output units: a relative bound is drawn at its absolute equivalent (bound × the scale
    # the error was divided by: the output's range, or an integer output's step).
    max_abs = [c["bound"] for n, c in crit.items() if n.startswith("max abs error vs float")]
    max_abs += [c["bound"] * c["max_abs_error"] / c["value"] for n, c in crit.items()
                if n.startswith(("max abs error / output range vs float", "max abs error in quantization steps vs float"))
                and c.get("value") and "max_abs_error" in c]
    group_bound = next((c["bound"] for n, c in crit.items() if n.startswith("worst skin-tone group")), None)
    margin = (_drop_criterion(a) or {}).get("bound")
    plots = []
    if a.get("error_histogram"):
        plots.append(_histogram(figs, a["error_histogram"], max(max_abs) if len(max_abs) == 1 else None))
    key = (tm or {}).get("name")
    if a.get("by_group") and key:
        plots.append(_group_drops(figs, a["by_group"], key, group_bound, margin))
    cm = a.get("confusion")
    if cm:
        labels = summary.get("labels") or [str(k) for k in range(len(cm["artifact"]))]
        plots.append(_matrix(figs, cm["artifact"], labels, "confusion matrix (artifact)", xlabel="predicted", ylabel="true"))
        if cm.get("changed"):
            n = sum(map(sum, cm["changed"]))
            moved = n - sum(cm["changed"][k][k] for k in range(len(cm["changed"])))
            plots.append(_matrix(figs, cm["changed"], labels, f"changed predictions: {moved} of {n}",
                                 xlabel="artifact predicts", ylabel="float predicts", changed=True))
    if plots:
        parts.append("<div class=plots>" + "".join(plots) + "</div>")
    if a.get("numerics_by_output"):
        parts.append("<h3>Numerics per output (float64)</h3><table><tr><th>output</th><th>max abs</th><th>float range</th>"
                     "<th>max abs / range</th><th>MAE</th><th>mean signed</th><th>cosine</th><th>SQNR dB</th></tr>"
                     + "".join(f"<tr><td>{escape(o)}</td><td>{_fmt(n['max_abs_error'])}</td><td>{_fmt(n.get('reference_range', '—'))}</td>"
                               f"<td>{_fmt(n.get('max_rel_error', '—'))}</td><td>{_fmt(n['mean_abs_error'])}</td>"
                               f"<td>{_fmt(n['mean_signed_error'])}</td><td>{_fmt(n['cosine'])}</td><td>{_fmt(n['sqnr_db'])}</td></tr>"
                               for o, n in a["numerics_by_output"].items()) + "</table>")
    if a.get("metrics"):
        parts.append("<h3>Task metrics</h3>" + _metrics_table(a["metrics"]))
    if a.get("by_group") and key:
        parts.append("<h3>Skin-tone groups</h3>" + _groups_table(a["by_group"], key))
    c = a.get("culprits")
    if c:
        parts.append("<h3>Culprit layers</h3>" + _culprit_table(c))
        if "ranking" in c:
            parts.append("<div class=wide>" + _layers(figs, c) + "</div>")
    parts.append("</details>")
    return "".join(parts)


def render_html(summary: dict) -> str:
    """The page for a ``verify_bundle`` summary (also valid for a failing gate)."""
    figs = _Figures()
    ok = summary["passed"]
    failed = summary.get("failed_targets") or []
    ev = summary["evaluation"]
    tone = ev.get("skin_tone") or {}
    arts = summary["artifacts"]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>skinkit verify {escape(summary['model'])}</title>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_CSS}</style></head><body>",
             f"<h1>skinkit verify: {escape(summary['model'])}</h1>",
             f"<p class='verdict {'pass' if ok else 'fail'}' id=verdict>{'PASSED' if ok else 'FAILED'}: "
             f"{sum(a['passed'] for a in arts)} of {len(arts)} artifacts pass the gate"
             + (f"; incomplete bundle: {len(failed)} recipe target(s) did not convert" if failed else "") + "</p>"]
    advised = [(i, a["path"], a["advice"]) for i, a in enumerate(arts) if a.get("advice")]
    if advised:
        parts.append("<section class=fix id=fix><h2>Suggested fix</h2><p class=muted>In the recipe's <code>targets</code>, "
                     "replace each failing target's line with the one below it, then export again.</p>"
                     + "".join(_advice_html(p, a, compact=True, link=f" <a class=muted href='#a{i}'>(alternatives, culprit layers)</a>")
                               for i, p, a in advised) + "</section>")
    parts.append("<h2 id=overview>Overview</h2>")
    if arts or summary.get("pruning"):
        parts.append(f"<div class=overview>{_forest(figs, summary)}</div>")
    parts.append(_overview_table(summary))
    if failed:
        parts.append("<h2>Targets not converted <span class=fail>incomplete bundle</span></h2>"
                     "<p>The bundle holds no artifact for these recipe targets.</p>"
                     "<table><tr><th>target</th><th>format</th><th>precision</th><th>op</th><th>module</th><th>error</th><th>fix</th></tr>"
                     + "".join(f"<tr><td>{escape(f['key'])}</td><td>{escape(f['format'])}</td><td>{escape(f['precision'])}</td>"
                               f"<td>{_fmt(f.get('op') or '—')}</td><td>{_fmt(f.get('module') or '—')}</td>"
                               f"<td class=fail>{escape(f['error'])}</td><td>{_fmt(f.get('fix') or '—')}</td></tr>" for f in failed)
                     + "</table>")
    pr = summary.get("pruning")
    if pr:
        parts.append(f"<h3>Pruning budget {_verdict(pr['passed'])}</h3><p>{escape(pr['metric'])}: original {pr['original']:.4f} → "
                     f"pruned float {pr['pruned']:.4f}; artifacts are gated against the pruned float model.</p>"
                     + _criteria_table(pr["criteria"]))
    parts.append(f"<p class=muted>Bundle <code>{escape(summary['bundle'])}</code>; integrity: {len(summary['integrity'])} files "
                 f"match the manifest's sha256. {ev['n']} evaluation images ({escape(str(ev['source']))}); 95 % CIs from "
                 f"{ev.get('bootstrap', '?')} bootstrap replicates (paired for drops); non-inferiority judged on the "
                 f"{'upper CI bound' if ev.get('noninferiority') == 'ci' else 'point estimate'}; {summary['seconds']} s."
                 + "".join(f" {escape(n)}." for n in summary.get("notes", [])) + "</p>")
    if tone:
        ann = tone.get("versus_annotation")
        parts.append(f"<p class=muted>Skin tone: {escape(tone['method'])}. Groups: "
                     + ", ".join(f"{g} {n}" for g, n in tone["groups"].items())
                     + (f". Same group as the data's annotation for {ann['group_agreement']:.0%} of {ann['n']} images "
                        f"(mean |ΔITA| {ann['ita_mean_abs_difference']:.1f}°)." if ann else ".") + "</p>")
    reference = next((a["confusion"]["float"] for a in arts if (a.get("confusion") or {}).get("float")), None)
    if reference:
        labels = summary.get("labels") or [str(k) for k in range(len(reference))]
        parts.append("<details><summary>Float reference: its confusion matrix on these images</summary>"
                     + _matrix(figs, reference, labels, "confusion matrix (float)", xlabel="predicted", ylabel="true") + "</details>")
    parts.append("<h2>Artifacts</h2><p class=muted>Failing artifacts are open; a passing one opens on a click.</p>")
    parts += [_artifact_section(figs, i, a, summary) for i, a in enumerate(arts)]
    parts.append("</body></html>")
    return "\n".join(parts)
