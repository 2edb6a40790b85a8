"""The chain's gate: a device chain's final outputs against the float chain's on held-out photos, scored with
the judging task's metrics (paired bootstrap CIs), per skin-tone group, and against the generator's truth."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from toolkit.chain.graph import ChainGraph
from toolkit.data.synthetic import SEGMENTATION_CLASSES
from toolkit.errors import RecipeError
from toolkit.glue import OPS, Value, nearest_indices, run_numpy
from toolkit.tasks import get_task
from toolkit.verify.stats import Bootstrap, compare, direction

TIERS = ("fp32", "fp16", "int8", "lowbit")


@dataclass(frozen=True)
class ChainData:
    """Held-out photos at the chain's size, their skin-tone groups, and every truth the generator knows."""

    images: np.ndarray  # N x H x W x 3 uint8
    groups: tuple[str, ...]
    truths: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.images)


def chain_data(n: int, size: tuple[int, int], *, seed: int = 0, split: str = "test") -> ChainData:
    """``n`` synthetic photos of ``split`` at ``size`` with their truths (masks resized nearest, pictures by area)."""
    import cv2

    from toolkit.data.synthetic import make_sample

    h, w = size
    images, groups, rows = [], [], []
    for i in range(n):
        s = make_sample(seed, split, i, size=h if h == w else 224)
        if s.image.shape[:2] != (h, w):
            s = replace(s, image=cv2.resize(s.image, (w, h), interpolation=cv2.INTER_AREA),
                        skin_mask=cv2.resize(s.skin_mask, (w, h), interpolation=cv2.INTER_NEAREST),
                        segmentation=cv2.resize(s.segmentation, (w, h), interpolation=cv2.INTER_NEAREST),
                        regions=cv2.resize(s.regions, (w, h), interpolation=cv2.INTER_NEAREST))
        images.append(s.image)
        groups.append(s.group)
        rows.append(s)
    images = np.stack(images)
    skin = np.stack([s.skin_mask for s in rows]).astype(np.float32)
    seg = np.stack([s.segmentation for s in rows]).astype(np.int32)
    lesions = {"_indices": list(range(1, len(SEGMENTATION_CLASSES))), "min_pixels": 4}
    region = run_numpy(OPS["region_stats"], {"labels": seg, "image": images.astype(np.float32), "within": skin}, lesions, {})
    truths = {
        "acne_grade": np.array([s.acne_grade for s in rows], np.int64),
        "skin_mask": skin.astype(np.uint8),
        "segmentation": seg.astype(np.uint8),
        "regions": np.stack([s.regions for s in rows]),  # 1 + index into FACE_REGIONS, 0: none
        "hydration": np.array([[s.hydration] for s in rows], np.float32),
        "tewl": np.array([[s.tewl] for s in rows], np.float32),
        "lesion_area": region["area"],
        "lesion_intensity": region["intensity"],
        "lesion_regions": run_numpy(OPS["count_regions"], {"labels": seg, "within": skin}, lesions, {})[""],
    }
    return ChainData(images, tuple(groups), truths)


def _scores(x: np.ndarray, value: Value) -> tuple[np.ndarray, tuple[str, ...]]:
    """What a task's metrics read: class scores (a label map or mask becomes one-hot scores)."""
    if value.kind == "scores":
        return x, value.names
    if value.kind in ("labels", "mask"):
        names = value.names or ("outside", "inside")
        k = len(names)
        idx = x.astype(np.int64)
        onehot = (np.arange(k).reshape((1, k) + (1,) * (idx.ndim - 1)) == idx[:, None]).astype(np.float32)
        return onehot, names
    return x, value.names


def _truth(output, value: Value, data: ChainData, ref: np.ndarray, task) -> np.ndarray:
    if output.truth == "float":
        return task.targets_from(ref)
    t = data.truths[output.truth]
    if output.truth.startswith("lesion_"):  # the generator's classes the value names, in its order
        unknown = [n for n in value.names if n not in SEGMENTATION_CLASSES[1:]]
        if value.kind != "vector" or unknown or not value.names:
            raise RecipeError(f"output {output.name!r}: truth {output.truth} holds one column per lesion class "
                              f"({', '.join(SEGMENTATION_CLASSES[1:])}), but {output.source} is a {value.kind} naming "
                              f"{', '.join(value.names) or 'nothing'}", fix="name a region_stats or count_regions output of the lesion labels")
        return t[:, [SEGMENTATION_CLASSES.index(n) - 1 for n in value.names]]
    if t.ndim == 3 and value.hw is not None and t.shape[1:] != value.hw:  # a map judged at its own size: truth resized nearest
        rows, cols = nearest_indices(t.shape[1:], value.hw)
        return np.ascontiguousarray(t[:, rows][:, :, cols])
    want = {1: "one value per photo (a class or a scalar)", 2: "a vector per photo", 3: "a map per photo"}[t.ndim]
    fits = (t.ndim == 3 and value.hw is not None) or (t.ndim == 1 and value.kind == "scores" and len(value.shape) == 1) \
        or (t.ndim == 2 and value.kind == "vector" and value.shape[0] == t.shape[1])
    if not fits:
        raise RecipeError(f"output {output.name!r}: truth {output.truth} is {want}, but {output.source} is a {value.kind} "
                          f"of shape {list(value.shape)}", fix="name the value that holds what the truth measures, or truth: float")
    return t


def judge_output(output, value: Value, out: np.ndarray, ref: np.ndarray, data: ChainData, boot: Bootstrap) -> dict:
    """The judging task's metrics of one chain output: device against float, both against the truth."""
    task = get_task(output.judge)
    o, names = _scores(out, value)
    r, _ = _scores(ref, value)
    targets = _truth(output, value, data, r, task)
    if value.kind == "vector":  # one metric row per entry: <output>.<entry>, or <output> for a single one
        entries = (output.name,) if len(value.names) <= 1 else tuple(f"{output.name}.{n}" for n in value.names)
        return compare(output.judge, o, r, targets, boot, output_names=entries)
    return compare(output.judge, o, r, targets, boot, labels=names, output_names=(output.name,))


def numerics(out: np.ndarray, ref: np.ndarray) -> dict:
    o, r = out.astype(np.float64).reshape(len(out), -1), ref.astype(np.float64).reshape(len(ref), -1)
    diff = o - r
    denom = np.linalg.norm(o) * np.linalg.norm(r)
    return {"finite": bool(np.isfinite(o).all()), "max_abs": float(np.abs(diff).max()) if diff.size else 0.0,
            "mae": float(np.abs(diff).mean()) if diff.size else 0.0,
            "cosine": float((o * r).sum() / denom) if denom > 0 else float(np.array_equal(o, r))}


def headline(output) -> str:
    return output.metric or get_task(output.judge).headline


def judge_chain(recipe, graph: ChainGraph, device: dict[str, np.ndarray], floats: dict[str, np.ndarray], data: ChainData,
                boot: Bootstrap, tier: str) -> dict:
    """Every chain output of one device chain against the float chain: metrics, numerics, per skin-tone group,
    and the gate's criteria at ``tier`` (every one recorded; the chain passes only if all hold)."""
    ev = recipe.evaluation
    results, criteria = {}, []
    for o in recipe.outputs:
        value = graph.values[o.source]
        out, ref = device[o.source], floats[o.source]
        row = {"numerics": numerics(out, ref)}
        criteria.append(_criterion(f"{o.name}: finite", row["numerics"]["finite"], True, "=="))
        if o.judge is not None:
            metrics = judge_output(o, value, out, ref, data, boot)["metrics"]
            key = headline(o)
            if key not in metrics:
                raise RecipeError(f"output {o.name!r}: the {o.judge} task computes no metric {key!r} here",
                                  fix=f"name one of: {', '.join(metrics)}")
            row["metric"] = key
            row["metrics"] = {k: metrics[k] for k in _shown(metrics, key)}
            row["groups"] = _by_group(o, value, out, ref, data, boot, key)
            limit = o.margin("limit", tier)
            if limit is not None:
                got, lower_is_better = metrics[key]["artifact"], direction(key) < 0
                judged = got["ci95"][1 if lower_is_better else 0] if ev.noninferiority == "ci" else got["value"]
                end = ("upper" if lower_is_better else "lower") + " 95 % CI" if ev.noninferiority == "ci" else "point"
                criteria.append(_criterion(f"{o.name}: {key} of the device chain ({end})", judged, limit,
                                           "<=" if lower_is_better else ">=", point=got["value"], ci95=got["ci95"]))
            margin = o.margin("max_drop", tier)
            if margin is not None:
                if "drop" not in metrics[key]:
                    raise RecipeError(f"output {o.name!r}: {key} is measured against the float chain itself, so it has no drop",
                                      fix="bound it with limit instead of max_drop")
                drop = metrics[key]["drop"]
                judged = drop["ci95"][1] if ev.noninferiority == "ci" else drop["value"]
                criteria.append(_criterion(f"{o.name}: {key} drop vs float chain ({'upper 95 % CI' if ev.noninferiority == 'ci' else 'point'})",
                                           judged, margin, "<=", point=drop["value"], ci95=drop["ci95"]))
            agreement = o.margin("min_agreement", tier)
            if agreement is not None and "agreement" in metrics:
                criteria.append(_criterion(f"{o.name}: agreement with float chain", metrics["agreement"]["artifact"]["value"],
                                           agreement, ">="))
        results[o.name] = row
    return {"passed": all(c["passed"] for c in criteria), "tier": tier, "criteria": criteria, "outputs": results}


def _shown(metrics: dict, key: str) -> list[str]:
    """The headline, agreement, and the per-class/per-entry rows of the headline's family."""
    family = key.split(".")[0]
    return [k for k in metrics if k == key or k == "agreement" or k.split(".")[0] == family]


def _by_group(output, value: Value, out, ref, data: ChainData, boot: Bootstrap, key: str) -> dict:
    groups = {}
    from toolkit.data.synthetic import ITA_GROUPS

    order = [g for g, _, _ in ITA_GROUPS if g in data.groups] + sorted({g for g in data.groups} - {g for g, _, _ in ITA_GROUPS})
    for i, g in enumerate(order):
        rows = np.array([x == g for x in data.groups])
        sub = ChainData(data.images[rows], tuple(x for x in data.groups if x == g), {k: v[rows] for k, v in data.truths.items()})
        m = judge_output(output, value, out[rows], ref[rows], sub, boot.subset(rows, seed=i + 1))["metrics"][key]
        groups[g] = {"n": int(rows.sum()), "float": m.get("float", {}).get("value"), "device": m["artifact"]["value"],
                     "drop": m.get("drop", {}).get("value"), "drop_ci95": m.get("drop", {}).get("ci95")}
    return groups


def _criterion(name: str, value, bound, op: str, **extra) -> dict:
    ok = {"<=": lambda: value <= bound, ">=": lambda: value >= bound, "==": lambda: value == bound}[op]()
    return {"name": name, "value": value, "bound": bound, "op": op, "passed": bool(ok), **extra}


def tier_of(precisions: list[str]) -> str:
    """The loosest tier among a chain's artifacts: a chain is as coarse as its coarsest model."""
    from toolkit.backends.precisions import PRECISIONS

    return max((PRECISIONS[p].tier for p in precisions), key=TIERS.index, default="fp32")
