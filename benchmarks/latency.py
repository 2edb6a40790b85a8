"""Latency of every reference model's default bundle: host (measured) and phones (estimated), one table.

    python benchmarks/latency.py [--models a,b] [--bundles DIR] [--threads 1,2] [--repeats 30] [--json out.json]

Bundles are exported from export_recipes/<model>.yaml into --bundles when missing (shared with
benchmarks/verification.py); `skinkit bench` then runs on each. Per model × artifact: size, host p50 at each
thread count with its ratio to PyTorch fp32 and to ONNX Runtime measured in the same run, the ratio to the
host's roofline lower bound, and the estimated latency on each device profile (f = fitted profile, d = derived).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHOWN_PROFILES = ("snapdragon_8gen3_npu", "snapdragon_8gen3_gpu", "midrange_android_cpu", "apple_a17pro_ane", "apple_a16_ane")


def main() -> None:
    from benchmarks.verification import ensure_bundle
    from toolkit._io import captured_quietly
    from toolkit.benchmark.bench import bench_bundle
    from toolkit.registry import list_models

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(s.name for s in list_models()))
    ap.add_argument("--bundles", type=Path, default=ROOT / "bundles")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    threads = tuple(int(t) for t in args.threads.split(","))
    args.bundles.mkdir(parents=True, exist_ok=True)
    results, t_export, t_bench = [], 0.0, 0.0
    for model in args.models.split(","):
        t0 = time.perf_counter()
        with captured_quietly():
            bundle = ensure_bundle(model, args.bundles)
        t1 = time.perf_counter()
        with captured_quietly():
            results.append(bench_bundle(bundle, threads=threads, repeats=args.repeats))
        t_export += t1 - t0
        t_bench += time.perf_counter() - t1
        print(f"{model}: bench {time.perf_counter() - t1:.0f} s", flush=True)
    roof = results[0]["host"]["roofline"]
    print(f"\nhost: {results[0]['host']['machine']}; roofline {roof['fp32_gmacs']} GMAC/s fp32, {roof['bandwidth_gb_s']} GB/s")
    top = str(max(threads))
    head = ["model", "artifact", "MB"] + [f"p50 ms {t}thr" for t in threads] + [f"vs torch fp32 ({top}thr)", f"vs ORT ({top}thr)",
                                                                               "vs roofline"] + list(SHOWN_PROFILES)
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in results:
        for a in r["artifacts"]:
            h = a["host"]
            cells = [r["model"], a["artifact"].replace("artifacts/", ""), f"{a['size_bytes'] / 1e6:.2f}"]
            cells += [f"{h[str(t)]['p50_ms']:.2f}" if "p50_ms" in h.get(str(t), {}) else "—" for t in threads]
            ht = h.get(top, {})
            cells += [f"{ht['ratio_to_torch_fp32']:.2f}" if "ratio_to_torch_fp32" in ht else "—",
                      f"{ht['ratio_to_onnxruntime']:.2f}" if "ratio_to_onnxruntime" in ht else "—",
                      f"{ht['ratio_to_roofline']}×" if "ratio_to_roofline" in ht else "—"]
            est = {e["profile"]: e for e in a["estimates"]}
            for p in SHOWN_PROFILES:
                e = est.get(p)
                cells.append("—" if not e or e["ms"] is None else f"{e['ms']:.2f} {'f' if e['basis'].startswith('fitted') else 'd'}")
            print("| " + " | ".join(cells) + " |")
    print(f"\nexport (missing bundles only) {t_export:.0f} s; bench {t_bench:.0f} s for {len(results)} bundles")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
