"""Fit the device profiles that have published anchors, and show how well they predict figures they were not fitted to.

    python benchmarks/fit_devices.py [--write] [--describe]

For every anchor in benchmarks/devices/anchors.yaml: the published latency, the fitted cost model's estimate, and
the leave-one-out estimate (the same model fitted without that figure), with relative errors; then per profile the
cost-model level, its parameters, the leave-one-out median |error| and the worst figure. --write stores each fitted
cost model, overhead, convolution throughput and fit report in the profile's YAML; derived profiles are not touched
(their derivation text says how they follow from these). --describe first rewrites the anchor models' op-class
breakdowns in anchors.yaml from their plain-torch definitions (benchmarks/anchor_models.py).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _flow(d: dict) -> str:
    def value(v):
        return _flow(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else v

    return "{" + ", ".join(f"{k}: {value(v)}" for k, v in d.items()) + "}"


def _set_line(text: str, key: str, value: str, after: str) -> str:
    """Replace ``key: ...`` (one line), or add it after the ``after:`` line."""
    line = f"{key}: {value}"
    if re.search(rf"^{key}: .*$", text, re.M):
        return re.sub(rf"^{key}: .*$", lambda _: line, text, flags=re.M)
    return re.sub(rf"^({after}: .*)$", lambda m: m.group(1) + "\n" + line, text, count=1, flags=re.M)


def write(path: Path, model, report) -> None:
    text = path.read_text()
    parse = lambda s: {k.strip(): float(v) for k, v in (kv.split(":") for kv in s.split(","))}  # noqa: E731
    old_o = parse(re.search(r"^overhead_ms: \{(.*)\}$", text, re.M).group(1))
    old_t = parse(re.search(r"^throughput_tmacs: \{(.*)\}$", text, re.M).group(1))
    k = model.ms_per_unit  # derived dtypes of a profile are kept
    o = {**old_o, **{d: round(v["overhead"], 4) for d, v in k.items()}}
    t = {**old_t, **{d: round(1 / v["conv"], 4) for d, v in k.items() if v["conv"] > 0}}
    text = re.sub(r"^overhead_ms: .*$", f"overhead_ms: {_flow(o)}", text, flags=re.M)
    text = re.sub(r"^throughput_tmacs: .*$", f"throughput_tmacs: {_flow(t)}", text, flags=re.M)
    text = _set_line(text, "fit", _flow(report.model_dump() | {"dtypes": f"[{', '.join(report.dtypes)}]",
                                                                 "level": f'"{report.level}"',
                                                                 "loo_worst": f'"{report.loo_worst}"' if report.loo_worst else "null",
                                                                 "loo_median_abs_error": _none(report.loo_median_abs_error),
                                                                 "loo_max_abs_error": _none(report.loo_max_abs_error)}), "derivation")
    text = _set_line(text, "cost_model", _flow({"level": f'"{model.level}"', "ms_per_unit": k}), "fit")
    path.write_text(text)


def _none(v):
    return "null" if v is None else v


def describe_anchor_models(path: Path) -> None:
    import anchor_models

    text = path.read_text()
    for name in anchor_models.MODELS:
        d = anchor_models.describe(name)
        text = re.sub(rf"^  {name}: .*$", lambda _, n=name, d=d: f"  {n}: {_flow(d)}", text, flags=re.M)
        print(f"{name}: {d}")
    path.write_text(text)


def main() -> None:
    from toolkit.benchmark.devices import DEVICES_DIR, fit, load_anchors, load_profiles

    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="store the fitted values in the profile YAMLs")
    ap.add_argument("--describe", action="store_true", help="recount the anchor models' op classes first")
    args = ap.parse_args()
    if args.describe:
        describe_anchor_models(DEVICES_DIR / "anchors.yaml")
    anchors = load_anchors()
    profiles = {p.name: p for p in load_profiles()}
    names = list(dict.fromkeys(a.profile for a in anchors.anchors))
    fits = {name: fit(anchors, profiles[name]) for name in names}
    if args.write:
        for name, (model, report, _) in fits.items():
            write(DEVICES_DIR / f"{name}.yaml", model, report)
        profiles = {p.name: p for p in load_profiles()}
    print("| profile | model | dtype | published ms | fitted ms | error | leave-one-out ms | error |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (_, _, per) in fits.items():
        for r in per:
            a = r["anchor"]
            loo = f"{r['loo']:.3f} | {(r['loo'] - a.ms) / a.ms:+.1%}" if r["loo"] is not None else "— | —"
            print(f"| {name} | {a.model} | {a.compute} | {a.ms} | {r['estimate']:.3f} | {(r['estimate'] - a.ms) / a.ms:+.1%} | {loo} |")
    print()
    print("| profile | figures | cost model | parameters | under-determined | in-sample max | leave-one-out median | worst (figure) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (_, rep, _) in fits.items():
        med = f"{rep.loo_median_abs_error:.1%}" if rep.loo_median_abs_error is not None else "— (one figure)"
        worst = f"{rep.loo_max_abs_error:.1%} ({rep.loo_worst})" if rep.loo_max_abs_error is not None else "—"
        print(f"| {name} | {rep.anchors} | {rep.level} | {rep.parameters} | {'yes' if rep.under_determined else 'no'} | "
              f"{rep.max_rel_error:.1%} | {med} | {worst} |")
        stored = profiles[name].fit
        if stored != rep:
            print(f"  {name}: the stored fit report differs from this refit: run with --write")


if __name__ == "__main__":
    main()
