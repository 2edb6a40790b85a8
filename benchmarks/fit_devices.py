"""Fit the device profiles that have published anchors, and show how well they reproduce them.

    python benchmarks/fit_devices.py [--write]

For every anchor in benchmarks/devices/anchors.yaml: the published latency, the profile's estimate for
that model (overhead + max(compute, memory), weights at the anchor's dtype width), the relative error,
and which term bound it (a fit assumes compute-bound anchors; a memory-bound one is flagged). --write
stores the fitted overheads, throughputs and fit errors in the profiles' YAML files; derived profiles
are not touched (their derivation text says how they follow from these).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

def _flow(d: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"


def write(path: Path, overhead: dict, throughput: dict, report) -> None:
    text = path.read_text()
    old_o = re.search(r"^overhead_ms: \{(.*)\}$", text, re.M).group(1)
    old_t = re.search(r"^throughput_tmacs: \{(.*)\}$", text, re.M).group(1)
    parse = lambda s: {k.strip(): float(v) for k, v in (kv.split(":") for kv in s.split(","))}  # noqa: E731
    o, t = {**parse(old_o), **overhead}, {**parse(old_t), **throughput}  # derived dtypes of a profile are kept
    text = re.sub(r"^overhead_ms: .*$", f"overhead_ms: {_flow(o)}", text, flags=re.M)
    text = re.sub(r"^throughput_tmacs: .*$", f"throughput_tmacs: {_flow(t)}", text, flags=re.M)
    fit = (f"fit: {{anchors: {report.anchors}, dtypes: [{', '.join(report.dtypes)}], "
           f"max_rel_error: {report.max_rel_error}, mean_rel_error: {report.mean_rel_error}}}")
    text = re.sub(r"^fit: .*$", fit, text, flags=re.M)
    path.write_text(text)


def main() -> None:
    from toolkit.benchmark.devices import DEVICES_DIR, anchor_weight_bytes, fit, latency_ms, load_anchors, load_profiles

    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="store the fitted values in the profile YAMLs")
    args = ap.parse_args()
    anchors = load_anchors()
    profiles = {p.name: p for p in load_profiles()}
    names = sorted({a.profile for a in anchors.anchors})
    if args.write:
        for name in names:
            write(DEVICES_DIR / f"{name}.yaml", *fit(anchors, profiles[name]))
        profiles = {p.name: p for p in load_profiles()}
    print("| profile | model | dtype | published ms | estimate ms | error | bound |")
    print("|---|---|---|---|---|---|---|")
    for a in anchors.anchors:
        p = profiles[a.profile]
        m = anchors.models[a.model]
        est = latency_ms(p, a.compute, m["gmacs"] * 1e9, anchor_weight_bytes(anchors, a))
        err = (est["ms"] - a.ms) / a.ms
        print(f"| {a.profile} | {a.model} | {a.compute} | {a.ms} | {est['ms']:.3f} | {err:+.1%} | {est['bound']} |")
    for name in names:
        _, _, report = fit(anchors, profiles[name])
        stored = profiles[name].fit
        print(f"{name}: {report.anchors} anchors, max error {report.max_rel_error:.2%} (stored: {stored.max_rel_error:.2%})")


if __name__ == "__main__":
    main()
