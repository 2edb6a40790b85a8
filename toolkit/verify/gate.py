"""Compare an artifact's outputs with the float reference's on held-out data and apply the gate.

Every criterion is evaluated and recorded; the artifact passes only if all hold. Nothing here
turns a failure into a warning.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from toolkit.backends import get_backend
from toolkit.backends.base import Runner
from toolkit.convert.base import PRECISIONS, Artifact
from toolkit.data.tasks import TaskData
from toolkit.registry import ModelSpec, Tolerance
from toolkit.verify import metrics, stats
from toolkit.verify.stats import Bootstrap
from toolkit.verify.subgroups import GROUP_ORDER, UNKNOWN, SkinTone


def resolve_tolerance(spec: ModelSpec, precision: str, *overrides) -> Tolerance:
    """The spec's tolerance for the precision's tier, with the recipe's overrides on top, in order
    (``tolerances.<precision>``, then the target's own ``tolerance``); ``None`` overrides are skipped."""
    tol = spec.tolerance(PRECISIONS[precision].tier)
    for override in overrides:
        if override is None:
            continue
        changes = {k: v for k, v in override.model_dump().items() if v is not None and k not in ("margins", "noninferiority")}
        tol = replace(tol, **changes, margins={**tol.margins, **override.margins})
    return tol


def contract_images(images: np.ndarray, pixel_range: str, layout: str) -> np.ndarray:
    """uint8 NHWC RGB images as the device contract takes them (float, range, layout)."""
    x = images.astype(np.float32)
    if pixel_range == "0-1":
        x = x / 255.0
    return x if layout == "nhwc" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def contract_inputs(data: TaskData, pixel_range: str, layout: str) -> np.ndarray:
    return contract_images(data.inputs, pixel_range, layout)


def reference_outputs(wrapped, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return np.concatenate([wrapped(torch.from_numpy(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)])


def to_nchw(y: np.ndarray, spec: ModelSpec, layout: str) -> np.ndarray:
    dense = spec.task in ("segmentation", "super_resolution")
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if dense and layout == "nhwc" else y


def _criterion(name: str, value: float | None, bound: float | None, *, op: str, **extra) -> dict | None:
    if bound is None or value is None:
        return None
    ok = (value <= bound) if op == "<=" else (value >= bound)
    if isinstance(value, float) and math.isnan(value):
        ok = False
    return {"name": name, "value": value, "bound": bound, "op": op, "passed": bool(ok), **extra}


def failed_criteria(path: str, criteria: list[dict]) -> list[str]:
    """One line per failed criterion of an artifact, as the CLI and the errors print them."""
    return [f"{path}: {c['name']} = {c['value']} (required {c['op']} {c['bound']})" for c in criteria if not c["passed"]]


def structural_checks(artifact: Artifact, input_shape: tuple[int, ...], output_shapes: dict[str, tuple[int, ...]]) -> list[dict]:
    """What the saved file itself must show, on every platform, as its backend checks it (batch-1 shapes).
    A format without a backend, or a backend without checks, is an error: verification fails closed."""
    return get_backend(artifact.format).structural_checks(artifact.details, artifact.precision, input_shape=input_shape,
                                                          output_shapes=output_shapes)


def numerics_by_output(spec: ModelSpec, ref: np.ndarray, out: np.ndarray) -> dict[str, dict]:
    """Numerics of each named output (a regression model's columns; otherwise its one output)."""
    if spec.task == "regression" and len(spec.outputs) == ref.shape[-1] > 1:
        return {o.name: metrics.numerics(ref[:, j], out[:, j]) for j, o in enumerate(spec.outputs)}
    return {spec.outputs[0].name: metrics.numerics(ref, out)}


def error_histogram(ref: np.ndarray, out: np.ndarray, bins: int = 41) -> dict:
    """Signed error (artifact minus float) of every output value, binned symmetrically about zero."""
    d = out.astype(np.float64).ravel() - ref.astype(np.float64).ravel()
    edge = float(np.max(np.abs(d))) or 1e-12
    counts, edges = np.histogram(d, bins=bins, range=(-edge, edge))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def check_margin_names(tolerance: Tolerance, rows: dict) -> None:
    from toolkit.errors import RecipeError

    known = sorted(k for k, v in rows.items() if "drop" in v)
    unknown = [k for k in tolerance.margins if k not in known]
    if unknown:
        raise RecipeError(f"tolerance margins name unknown metrics: {', '.join(unknown)}",
                          fix=f"use metrics of this task that have a float counterpart: {', '.join(known)}")


def drop_criterion(name: str, row: dict, margin: float | None, noninferiority: str, versus: str = "float") -> dict | None:
    """Non-inferiority: the drop (positive = worse than float) must stay within the margin, judged on
    the upper end of its paired 95 % CI ('ci') or on the point estimate ('point')."""
    drop = row["drop"]
    value = drop["ci95"][1] if noninferiority == "ci" else drop["value"]
    label = f"{name} drop vs {versus} ({'upper 95 % CI' if noninferiority == 'ci' else 'point estimate'})"
    return _criterion(label, value, margin, op="<=", point=drop["value"], ci95=drop["ci95"])


def worst_group_criterion(key: str, groups: dict, bound: float | None, min_group_size: int, versus: str = "float") -> dict | None:
    """The headline metric's largest drop (point estimate) among skin-tone groups of at least
    ``min_group_size`` images; smaller groups and 'unknown' are reported, not gated."""
    gated = {g: d["metrics"][key]["drop"]["value"] for g, d in groups.items() if g != UNKNOWN and d["n"] >= min_group_size}
    if bound is None or not gated:
        return None
    worst = max(gated, key=lambda g: gated[g])
    return _criterion(f"worst skin-tone group {key} drop vs {versus} ({worst}, n={groups[worst]['n']})",
                      gated[worst], bound, op="<=", group=worst)


def by_group(spec: ModelSpec, out: np.ndarray, ref: np.ndarray, targets: np.ndarray, tone: SkinTone,
             boot: Bootstrap, *, probabilities: bool) -> dict[str, dict]:
    """Every metric, with its float value and drop, within each measured skin-tone group."""
    groups = np.array(tone.groups)
    result = {}
    for i, g in enumerate(GROUP_ORDER):
        sel = groups == g
        if not sel.any():
            continue
        rows = stats.compare(spec.task, out[sel], ref[sel], targets[sel], boot.subset(sel, seed=1 + i), labels=spec.labels,
                             output_names=tuple(o.name for o in spec.outputs), probabilities=probabilities)["metrics"]
        ita = tone.ita[sel]
        result[g] = {"n": int(sel.sum()),
                     "ita_range": [float(np.nanmin(ita)), float(np.nanmax(ita))] if np.isfinite(ita).any() else None,
                     "metrics": rows}
    return result


def compare_outputs(spec: ModelSpec, out: np.ndarray, ref: np.ndarray, targets: np.ndarray, boot: Bootstrap, layout: str) -> dict:
    """Every task metric of ``out`` against ``ref`` (drops with paired CIs), e.g. a pruned float model
    against the original one."""
    return stats.compare(spec.task, to_nchw(out, spec, layout), to_nchw(ref, spec, layout), targets, boot, labels=spec.labels,
                         output_names=tuple(o.name for o in spec.outputs))["metrics"]


def verify_artifact(artifact: Artifact, runner: Runner, *, spec: ModelSpec, data: TaskData, x: np.ndarray,
                    ref: np.ndarray, tolerance: Tolerance, layout: str, tone: SkinTone, boot: Bootstrap,
                    noninferiority: str = "ci", min_group_size: int = 10) -> dict:
    outputs = runner.run(x)
    # MERGE: the gate consumes Outputs per output; until then, one array (several outputs' columns side by side).
    out = outputs if isinstance(outputs, np.ndarray) else np.concatenate([v.reshape(len(v), -1) if len(outputs) > 1 else v
                                                                          for v in outputs.values()], axis=-1)
    criteria: list[dict] = []
    finite = bool(np.all(np.isfinite(out)))
    criteria.append({"name": "outputs finite (no NaN/Inf)", "value": finite, "bound": True, "op": "==", "passed": finite})
    shape_ok = out.shape == ref.shape
    criteria.append({"name": "output shape", "value": list(out.shape[1:]), "bound": list(ref.shape[1:]), "op": "==", "passed": shape_ok})
    # MERGE: reference Outputs come from the evaluation set; until then, the one array named per the spec.
    import torch

    from toolkit.outputs import name_outputs

    ref_shapes = {n: (1, *v.shape[1:]) for n, v in name_outputs(torch.from_numpy(ref[:1]), [o.name for o in spec.outputs]).items()}
    criteria += structural_checks(artifact, (1, *x.shape[1:]), ref_shapes)  # artifacts are batch-1
    result: dict = {"check": runner.check, "n_samples": int(len(x))}
    if runner.note:
        result["note"] = runner.note
    if not (finite and shape_ok):
        result.update(passed=False, criteria=criteria)
        return result

    probabilities = artifact.details.get("output_transform") == "softmax"
    ref_c, out_c = to_nchw(ref, spec, layout), to_nchw(out, spec, layout)
    compared = stats.compare(spec.task, out_c, ref_c, data.targets, boot, labels=spec.labels,
                             output_names=tuple(o.name for o in spec.outputs), probabilities=probabilities)
    rows = compared["metrics"]
    check_margin_names(tolerance, rows)
    num = metrics.numerics(ref, out)
    agree = rows["agreement"]["artifact"]["value"] if "agreement" in rows else None
    key = spec.metric
    head = rows[key]

    criteria += [c for c in (
        _criterion("max abs error vs float", num["max_abs_error"], tolerance.max_abs, op="<="),
        _criterion("cosine vs float", num["cosine"], tolerance.min_cosine, op=">="),
        _criterion("top-1 agreement with float" if spec.task == "classification" else "pixel agreement with float", agree, tolerance.min_agreement, op=">="),
        drop_criterion(key, head, tolerance.max_metric_drop, noninferiority),
        *(drop_criterion(name, rows[name], margin, noninferiority) for name, margin in sorted(tolerance.margins.items())),
    ) if c is not None]

    groups = by_group(spec, out_c, ref_c, data.targets, tone, boot, probabilities=probabilities)
    worst = worst_group_criterion(key, groups, tolerance.max_group_drop, min_group_size)
    if worst is not None:
        criteria.append(worst)
    result.update(
        passed=all(c["passed"] for c in criteria),
        numerics=num,
        numerics_by_output=numerics_by_output(spec, ref, out),
        error_histogram=error_histogram(ref, out),
        agreement=agree,
        task_metric={"name": key, "higher_is_better": spec.higher_is_better, "float": head["float"]["value"],
                     "artifact": head["artifact"]["value"], "drop": head["drop"]["value"], "drop_ci95": head["drop"]["ci95"]},
        metrics=rows,
        by_group=groups,
        criteria=criteria,
    )
    if "confusion" in compared:
        result["confusion"] = compared["confusion"]
    return result
