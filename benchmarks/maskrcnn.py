"""skin_regions_maskrcnn's latency by stage: the whole graph, the proposal stage (backbone, FPN, RPN, top-k and fast
NMS) and the RoI heads (RoIAlign, box head, detections, mask head) on their own, as peers report a two-stage
detector's RoI head apart (it dominates on TFLite).

    python benchmarks/maskrcnn.py [--repeats 30] [--threads 2] [--json out.json]

Each part is lowered to float TFLite with litert-torch as skinkit lowers the model, timed
with ai-edge-litert's interpreter on this host (p50 of --repeats after warm-up, the parts and the whole measured
side by side in one run), and estimated on each shown device profile from the part's own graph cost (MACs,
weight and activation bytes). The two parts' sum is checked against the whole graph's outputs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHOWN_PROFILES = ("snapdragon_8gen3_npu", "snapdragon_8gen3_gpu", "midrange_android_cpu", "apple_a17pro_ane")


def parts(model):
    """The proposal stage and the RoI heads as separate modules taking and returning tensors (NHWC 0–255 input)."""
    import torch

    from toolkit.models.maskrcnn import MaskRCNN

    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    class Proposals(torch.nn.Module):
        def __init__(self, m: MaskRCNN):
            super().__init__()
            self.m = m

        def forward(self, image):
            x = (image.permute(0, 3, 1, 2) / 255.0 - mean) / std
            f = self.m.pyramid(x)
            logits, deltas = self.m.rpn(f)
            return (*f, self.m.proposals(logits, deltas))

    class RoIHeads(torch.nn.Module):
        def __init__(self, m: MaskRCNN):
            super().__init__()
            self.m = m

        def forward(self, p3, p4, p5, rois):
            return tuple(self.m.detect([p3, p4, p5], rois).values())

    class Whole(torch.nn.Module):
        def __init__(self, m: MaskRCNN):
            super().__init__()
            self.m = m

        def forward(self, image):
            return tuple(self.m((image.permute(0, 3, 1, 2) / 255.0 - mean) / std).values())

    return Whole(model).eval(), Proposals(model).eval(), RoIHeads(model).eval()


def to_tflite(module, sample: dict, path: Path) -> Path:
    import litert_torch

    path.write_bytes(litert_torch.signature("run", module, sample_kwargs=sample).convert().model_content())
    return path


def time_tflite(path: Path, inputs: dict, threads: int, repeats: int) -> tuple[float, dict]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    run = it.get_signature_runner("run")
    for _ in range(3):
        out = run(**inputs)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = run(**inputs)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), out


def main() -> None:
    import numpy as np
    import torch

    from toolkit._io import captured_quietly
    from toolkit.benchmark.cost import artifact_cost
    from toolkit.benchmark.devices import estimate, load_profiles
    from toolkit.data.synthetic import make_sample
    from toolkit.load import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model("skin_regions_maskrcnn").module.eval()
    whole, proposals, heads = parts(model)
    image = torch.from_numpy(make_sample(0, "test", 0, size=320).image[None].astype(np.float32))
    with torch.inference_mode():
        *features, rois = proposals(image)
    samples = {"whole": {"image": image}, "proposals": {"image": image},
               "roi_heads": {"p3": features[0], "p4": features[1], "p5": features[2], "rois": rois}}
    modules = {"whole": whole, "proposals": proposals, "roi_heads": heads}
    profiles = [p for p in load_profiles() if p.name in SHOWN_PROFILES]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, module in modules.items():
            path = Path(tmp) / f"{name}.tflite"
            with captured_quietly():
                to_tflite(module, samples[name], path)
            feed = {k: v.numpy() for k, v in samples[name].items()}
            p50, _ = time_tflite(path, feed, args.threads, args.repeats)
            cost = artifact_cost(path)
            est = {e["profile"]: e["ms"] for e in (estimate(p, cost, "fp32") for p in profiles)}
            rows.append({"part": name, "host_p50_ms": round(p50, 2), "macs_m": round(cost.macs / 1e6, 1),
                         "weights_mb": round(cost.weight_bytes / 1e6, 2), "estimates_ms": est})
    by = {r["part"]: r for r in rows}
    print(f"part | TFLite fp32 host p50 ms ({args.threads} threads) | share of whole | MMACs | weights MB | "
          + " | ".join(p.name for p in profiles) + " (estimated ms)")
    for name in modules:
        r = by[name]
        ests = " | ".join("–" if r["estimates_ms"].get(p.name) is None else f"{r['estimates_ms'][p.name]:.2f}" for p in profiles)
        print(f"{name} | {r['host_p50_ms']:.1f} | {r['host_p50_ms'] / by['whole']['host_p50_ms']:.2f} | {r['macs_m']:.0f} | "
              f"{r['weights_mb']:.2f} | {ests}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
