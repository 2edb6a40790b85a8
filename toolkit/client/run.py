"""``skinkit run BUNDLE PHOTO…``: the reference client. It runs a bundle on photos the way an app does — the
photo made the chain's picture by the manifest's fit rule, each component's artifact through its runtime, the
glue exactly as the manifest states it — and reports every output with its unit, its quality flags, and an
overlay of the masks and regions on the photo.

An assessment bundle (``kind: pipeline``) runs its chain; a single-model bundle runs as a chain of one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import BadInputError


@dataclass(frozen=True)
class Loaded:
    """A bundle ready to run: its graph, the outputs it reports, and a callable per component."""

    name: str
    graph: object  # toolkit.chain.graph.ChainGraph
    outputs: list[dict]  # name, from, unit, kind, names, flag, flag_below
    call: object  # (component, pictures) -> outputs, channel-first
    fused: object | None  # a fused artifact's runner, when chosen
    size: tuple[int, int]
    fit: str
    variant: str
    runs: str  # what executes, in words
    overlay: tuple[str, ...] = ()  # the values drawn on the photo (masks, label maps)


def _runner(bundle: Path, entry: dict, contract: dict):
    from toolkit.backends import get_backend

    path = bundle / entry["path"]  # inside the bundle and as exported: load_bundle checked its integrity first
    return get_backend(entry["format"]).runner(path, layout=contract["layout"].lower(),
                                               pixel_range="0-255" if contract["range"][1] == 255 else "0-1")


def load_bundle(bundle: Path, *, variant: str | None = None) -> Loaded:
    """The bundle's chain with the artifacts of ``variant`` (a target key such as tflite_int8, or fused:<key>;
    default: the first device chain that passed its gate, else the first)."""
    from toolkit.chain.export import device_call
    from toolkit.chain.graph import ComponentIO, from_manifest
    from toolkit.convert.base import artifact_key
    from toolkit.verify.bundle import check_bundle_integrity, read_manifest

    manifest = read_manifest(bundle)
    # every file as exported, every path inside the bundle: nothing modified, added or pointing elsewhere runs
    check_bundle_integrity(bundle, manifest)
    if manifest.get("kind") != "pipeline":
        return _single(bundle, manifest, variant)
    graph = from_manifest(manifest["chain"])
    keys = [v["key"] for v in manifest["variants"]] + [f"fused:{f['key']}" for f in manifest["fused"] if "path" in f]
    if variant is None:
        variant = next((v["key"] for v in manifest["variants"] if v["verification"]["passed"]), keys[0] if keys else None)
    if variant not in keys:
        raise BadInputError(f"{bundle.name} has no variant {variant!r}", fix=f"use one of: {', '.join(keys)}")
    size = tuple(manifest["input"]["size"])
    outputs = manifest["outputs"]
    if variant.startswith("fused:"):
        entry = next(f for f in manifest["fused"] if f"fused:{f['key']}" == variant)
        runner = _runner(bundle, entry, {"layout": "NHWC", "range": [0, 255]})
        return Loaded(manifest["bundle"], graph, outputs, None, runner, size, manifest["input"]["fit"], variant,
                      f"{entry['path']} ({runner.check})", tuple(manifest["overlay"]))
    runners, ios, runs = {}, {}, []
    for c in manifest["components"]:
        own = read_manifest(bundle / c["bundle"])
        entry = next((a for a in own["artifacts"] if artifact_key(a, own["model"]["name"]) == variant), None)
        if entry is None:
            raise BadInputError(f"{bundle.name}'s {c['name']} has no {variant} artifact (that target did not convert at export)",
                                fix=f"pick another variant: {', '.join(k for k in keys if k != variant)}")
        entry = {**entry, "path": f"{c['bundle']}/{entry['path']}"}
        runners[c["name"]] = _runner(bundle, entry, own["input"])
        ios[c["name"]] = ComponentIO(tuple(c["input_size"]), {}, own["input"]["layout"].lower(),
                                     "0-255" if own["input"]["range"][1] == 255 else "0-1")
        runs.append(f"{c['name']}: {entry['path']} ({runners[c['name']].check})")
    return Loaded(manifest["bundle"], graph, outputs, device_call(runners, ios), None, size, manifest["input"]["fit"], variant,
                  "; ".join(runs), tuple(manifest["overlay"]))


def _single(bundle: Path, manifest: dict, variant: str | None) -> Loaded:
    """A single-model bundle as a chain of one step: its outputs as the model names them."""
    from toolkit.chain.export import device_call
    from toolkit.chain.graph import INPUT, ChainGraph, ComponentIO, Step
    from toolkit.convert.base import artifact_key
    from toolkit.glue import Value

    stem = manifest["model"]["name"]
    keys = [artifact_key(a, stem) for a in manifest["artifacts"]]
    if variant is None:
        variant = next((k for k, a in zip(keys, manifest["artifacts"]) if a["verification"]["passed"]), keys[0])
    if variant not in keys:
        raise BadInputError(f"{bundle.name} has no artifact {variant!r}", fix=f"use one of: {', '.join(keys)}")
    entry = manifest["artifacts"][keys.index(variant)]
    runner = _runner(bundle, entry, manifest["input"])
    shape = manifest["input"]["shape"]
    h, w = (shape[1], shape[2]) if manifest["input"]["layout"] == "NHWC" else (shape[2], shape[3])
    io = ComponentIO((h, w), {}, manifest["input"]["layout"].lower(), "0-255" if manifest["input"]["range"][1] == 255 else "0-1")
    call = device_call({"model": runner}, {"model": io})
    probe = call("model", np.zeros((1, h, w, 3), np.float32))  # the output shapes, from the artifact itself
    labels = tuple(manifest["labels"])
    values, outputs = {INPUT: Value("image", (h, w, 3))}, []
    for o in manifest["outputs"]:
        s = tuple(probe[o["name"]].shape[1:])
        kind = "scores" if labels and s and s[0] == len(labels) and len(s) in (1, 3) else ("vector" if len(s) == 1 else "map")
        values[f"model.{o['name']}"] = Value(kind, s, labels if kind == "scores" else ((o["name"],) if s == (1,) else ()), o.get("unit", ""))
        outputs.append({"name": o["name"], "from": f"model.{o['name']}", "unit": o.get("unit", ""), "kind": kind,
                        "names": list(values[f"model.{o['name']}"].names)})
    step = Step("model", {"image": INPUT}, component="model", kinds={"image": "image"}, makes={k: v for k, v in values.items() if k != INPUT})
    steps = [step]
    dense = tuple(o["from"] for o in outputs if values[o["from"]].drawable)
    post = manifest.get("postprocess") or {}
    if post.get("kind") == "instances":  # the detections pasted onto the picture, as the manifest's contract says
        steps.append(_instance_step(values, labels, (h, w), post))
        values.update(steps[-1].makes)
        parts = {port: f"model.{port}" for port in steps[-1].inputs}
        outputs = [{"name": "instances", "from": "instances", "unit": "", "kind": "instances", "names": list(labels), "parts": parts}]
        dense = ("instances",)
    return Loaded(manifest["bundle"], ChainGraph(values[INPUT], tuple(steps), values), outputs, call, None, (h, w), "center_crop",
                  variant, f"{entry['path']} ({runner.check})", dense)


def _instance_step(values: dict, labels: tuple[str, ...], size: tuple[int, int], post: dict):
    """The step that makes an instance segmenter's label map: paste_instances of its five outputs."""
    from toolkit.chain.graph import op_step
    from toolkit.glue import OPS

    refs = {port: f"model.{port}" for port, _ in OPS["paste_instances"].ports()}
    missing = [r for r in refs.values() if r not in values]
    if missing:
        raise BadInputError(f"the bundle's postprocess is for instances, but its model has no output {missing[0].split('.', 1)[1]!r}",
                            fix="re-export the bundle; never edit its manifest by hand")
    return op_step("instances", "paste_instances", refs,
                   {"size": list(size), "classes": list(labels), "threshold": post.get("mask_threshold", 0.5)}, values)


def assess(loaded: Loaded, photo_path: Path, *, overlay_dir: Path | None = None) -> dict:
    """One photo through the bundle: every output with its unit, the flags it raises, the overlay written."""
    from toolkit.chain.graph import execute
    from toolkit.data.photo import fit, load_photo

    photo = load_photo(photo_path)
    fitted = fit(photo, loaded.size, loaded.fit)
    x = fitted.image[None].astype(np.float32)
    if loaded.fused is not None:
        outs = loaded.fused.run(x)
        values = {o["from"]: np.asarray(outs[o["name"]]).reshape((1, *loaded.graph.values[o["from"]].shape)) for o in loaded.outputs}
    else:
        values = execute(loaded.graph, x, loaded.call)
    results, flags, lines = {}, [], []
    for o in loaded.outputs:
        value = loaded.graph.values[o["from"]]
        if o["kind"] == "instances":
            shown, text = describe_instances(o, {port: values[ref][0] for port, ref in o["parts"].items()}, values[o["from"]][0])
        else:
            shown, text = describe_value(o, value, values[o["from"]][0])
        results[o["name"]] = shown
        lines += text
        below = o.get("flag_below")
        if below is not None and float(np.ravel(values[o["from"]][0])[0]) < below:
            flags.append(o["flag"])
            lines.append(f"FLAG {o['flag']}")
    record = {"photo": str(photo_path), "bundle": loaded.name, "variant": loaded.variant, "runs": loaded.runs,
              "photo_size": list(photo.shape[:2]), "analysed_box": list(fitted.box), "outputs": results, "flags": flags}
    if overlay_dir is not None:
        from toolkit.client.overlay import draw_overlay, write_overlay

        layers = [layer for ref in loaded.overlay if ref in values for layer in overlay_layers(ref, loaded.graph.values[ref], values[ref][0])]
        picture = draw_overlay(photo, fitted, layers, lines)
        stem = Path(photo_path).stem
        record["overlay"] = str(write_overlay(overlay_dir / f"{stem}_overlay.png", picture))
        pictures = {o["name"]: values[o["from"]][0] for o in loaded.outputs if _is_picture(loaded.graph.values[o["from"]])}
        record["pictures"] = {name: str(write_overlay(overlay_dir / f"{stem}_{name}.png", _to_uint8(x))) for name, x in pictures.items()}
    return record


def describe_value(output: dict, value, x: np.ndarray) -> tuple[dict, list[str]]:
    """What a person (and the JSON) reads of one output: its value(s) with unit, and its legend lines."""
    unit = output.get("unit") or value.unit
    name = output["name"]
    if value.kind == "scores" and x.ndim == 1:
        p = np.exp(x - x.max())
        p = p / p.sum()
        names = value.names or tuple(str(i) for i in range(len(x)))
        top = int(np.argmax(p))
        return ({"label": names[top], "probability": float(p[top]), "probabilities": dict(zip(names, map(float, p)))},
                [f"{name}: {names[top]} ({p[top]:.2f})"])
    if value.kind == "vector":
        names = value.names or tuple(str(i) for i in range(len(x)))
        entries = {n: float(v) for n, v in zip(names, x)}
        text = ", ".join(f"{n} {v:.3g}" for n, v in entries.items())
        return {"values": entries, "unit": unit}, [f"{name}: {text} {unit}".rstrip()]
    if value.kind == "mask":
        frac = float((x > 0.5).mean())
        return {"fraction_of_picture": frac}, [f"{name}: {frac:.1%} of the picture"]
    if value.kind in ("labels", "scores"):
        labels = x.argmax(0) if value.kind == "scores" else x.astype(np.int64)
        names = value.names or tuple(str(i) for i in range(int(labels.max()) + 1))
        return {"fraction_of_picture": {n: float((labels == k).mean()) for k, n in enumerate(names)}}, []
    return {"shape": list(x.shape), "min": float(x.min()), "max": float(x.max()), "unit": unit}, []


def describe_instances(output: dict, parts: dict[str, np.ndarray], label_map: np.ndarray) -> tuple[dict, list[str]]:
    """An instance segmenter's valid detections: class, score, box (fractions of the picture) and the share of the
    picture its pasted mask labels; one legend line each."""
    names = output["names"]
    k = len(parts["scores"])
    count = int(np.clip(np.rint(np.ravel(parts["count"])[0]), 0, k))
    boxes = np.asarray(parts["boxes"]).reshape(k, 4)
    found, lines = [], []
    for i in range(count):
        c = int(np.rint(parts["classes"][i]))
        name = names[c] if 0 <= c < len(names) else str(c)
        found.append({"class": name, "score": float(parts["scores"][i]), "box": [float(v) for v in boxes[i]],
                      "fraction_of_picture": float((label_map == c + 1).mean())})
        lines.append(f"{name} {parts['scores'][i]:.2f}")
    return {"count": count, "instances": found}, [f"{output['name']}: {count} found" + (f" ({', '.join(lines)})" if lines else "")]


def overlay_layers(ref: str, value, x: np.ndarray) -> list:
    """The overlay's layers of one value: a mask as one layer; a label map (or dense class scores) as one layer per
    class present, the first class (background) left out."""
    from toolkit.client.overlay import PALETTE, Layer

    if value.kind == "mask":
        return [Layer(ref, x > 0.5, PALETTE[0], alpha=0.25)]
    labels = x.argmax(0) if value.kind == "scores" else x.astype(np.int64)
    names = value.names or tuple(str(i) for i in range(int(labels.max()) + 1))
    return [Layer(n, labels == k, PALETTE[k % len(PALETTE)]) for k, n in enumerate(names) if k > 0 and (labels == k).any()]


def _is_picture(value) -> bool:
    """An RGB picture a model makes (a super-resolved patch): three channels, dense."""
    return value.kind == "map" and len(value.shape) == 3 and value.shape[0] == 3


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """A C x H x W picture as H x W x 3 uint8: [0, 1] values (as an SR model makes them) or 0–255 ones."""
    hwc = np.transpose(x, (1, 2, 0)).astype(np.float64)
    scale = 255.0 if hwc.max() <= 1.5 else 1.0
    return np.clip(np.round(hwc * scale), 0, 255).astype(np.uint8)

