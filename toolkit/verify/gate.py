"""Compare an artifact's outputs with the float reference's on held-out data and apply the gate.

Outputs travel as ``Outputs`` (name -> batch-first array). Every output is verified on its own (finite,
shape, numerics); the task's metrics read the outputs the task understands, and an output it does not
read is held to the tier's numeric bounds, or where the tier sets none to ``DEFAULT_MIN_COSINE``. Every
criterion is evaluated and recorded; the artifact passes only if all hold. Nothing here turns a failure
into a warning.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from toolkit.backends import get_backend
from toolkit.backends.base import Runner, run_checked
from toolkit.backends.precisions import PRECISIONS
from toolkit.convert.base import Artifact
from toolkit.data.records import TaskData
from toolkit.data.skin_tone import GROUP_ORDER, UNKNOWN, SkinTone
from toolkit.errors import BadInputError
from toolkit.load.stage import contract_images
from toolkit.outputs import Outputs, name_outputs
from toolkit.registry import ModelSpec, Tolerance
from toolkit.tasks import get_task, headline
from toolkit.tasks.measures import softmax
from toolkit.verify import metrics, stats
from toolkit.verify.stats import Bootstrap

# Cosine to float an output the task does not read must keep where its tier bounds no numerics, by tier.
DEFAULT_MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99, "lowbit": 0.98}


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


def contract_inputs(data: TaskData, pixel_range: str, layout: str) -> np.ndarray:
    return contract_images(data.inputs, pixel_range, layout)


def reference_outputs(wrapped, x: np.ndarray, batch_size: int = 16, threads: int | None = None) -> Outputs:
    """The float model's outputs on ``x``, by name (``wrapped``: a ``DeviceContract``). ``threads``: computed with that
    many threads, whatever the process's setting, so that a worker of a batch (one thread) and a process of its own
    sum in the same order and give the same bits."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            batches = [name_outputs(wrapped(torch.from_numpy(x[i:i + batch_size])), wrapped.output_names)
                       for i in range(0, len(x), batch_size)]
    finally:
        torch.set_num_threads(before)
    out = {n: np.concatenate([b[n].numpy() for b in batches]) for n in wrapped.output_names}
    for name, v in out.items():
        bad = ~np.isfinite(v.reshape(len(v), -1)).all(1) if v.size else np.zeros(len(v), bool)
        if bad.any():
            raise BadInputError(f"the float PyTorch model itself outputs NaN or Inf in {name!r} on {int(bad.sum())} of {len(v)} "
                                f"images (first: image {int(np.argmax(bad))}); no artifact can be judged against it",
                                fix="check the checkpoint (did training diverge?) and the input contract (normalization, "
                                    "pixel range) with `skinkit describe RECIPE`")
    return out


def to_nchw(outputs: Outputs, layout: str) -> Outputs:
    """Image-shaped (rank-4) outputs channel-first, as the metrics read them."""
    if layout != "nhwc":
        return outputs
    return {k: np.ascontiguousarray(v.transpose(0, 3, 1, 2)) if v.ndim == 4 else v for k, v in outputs.items()}


def task_view(spec: ModelSpec, outputs: Outputs, layout: str) -> np.ndarray:
    """What the task's metrics read of contract-layout outputs."""
    return get_task(spec.task).read(to_nchw(outputs, layout), spec)


def _flat(outputs: Outputs, names) -> np.ndarray:
    """Every value of the named outputs, one after another in ``names``' order (the reference's)."""
    return np.concatenate([outputs[n].reshape(-1) for n in names]) if names else np.zeros(0)


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


def numerics_by_output(ref: Outputs, out: Outputs) -> dict[str, dict]:
    """Numerics of each named output."""
    return {name: metrics.numerics(ref[name], out[name]) for name in ref}


def error_histogram(ref: Outputs, out: Outputs, bins: int = 41) -> dict:
    """Signed error (artifact minus float) of every output value, binned symmetrically about zero."""
    d = _flat(out, ref).astype(np.float64) - _flat(ref, ref).astype(np.float64)
    edge = float(np.max(np.abs(d))) or 1e-12
    counts, edges = np.histogram(d, bins=bins, range=(-edge, edge))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def check_margin_names(tolerance: Tolerance, rows: dict, *, target: str | None = None) -> None:
    """Every metric ``tolerance.margins`` names is one of ``rows`` (a comparison's metrics) with a drop."""
    from toolkit.errors import RecipeError, did_you_mean

    known = sorted(k for k, v in rows.items() if "drop" in v)
    unknown = [k for k in tolerance.margins if k not in known]
    if unknown:
        raise RecipeError(f"{f'target {target}: ' if target else ''}tolerance margins name unknown metrics: "
                          f"{', '.join(f'{k!r}{did_you_mean(k, known)}' for k in unknown)}",
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


def planned_criteria(spec: ModelSpec, tolerance: Tolerance, tier: str, *, noninferiority: str, min_group_size: int) -> list[dict]:
    """The criteria an artifact of ``tier`` will be judged by, named as ``verify_artifact`` names them, with their
    bounds and no values (``skinkit export --dry-run``); the backend's structural checks come on top."""
    task, key = get_task(spec.task), headline(spec)
    exact = {o.name: {"max_abs_error": 0.0, "max_rel_error": 0.0, "reference_range": 0.0, "sqnr_db": math.inf, "cosine": 1.0}
             for o in spec.outputs}
    no_drop = {"drop": {"value": 0.0, "ci95": [0.0, 0.0]}}
    criteria = numeric_criteria(spec, exact, tolerance, tier) + [c for c in (
        _criterion(task.agreement_label, 1.0, tolerance.min_agreement, op=">=") if task.agreement_label else None,
        drop_criterion(key, no_drop, tolerance.max_metric_drop, noninferiority),
        *(drop_criterion(name, no_drop, margin, noninferiority) for name, margin in sorted(tolerance.margins.items())),
    ) if c is not None]
    if tolerance.max_group_drop is not None:
        criteria.append({"name": f"worst skin-tone group {key} drop vs float (groups of {min_group_size}+ images)",
                         "bound": tolerance.max_group_drop, "op": "<="})
    return [{"name": c["name"], "op": c["op"], "bound": c["bound"]} for c in criteria]


def by_group(spec: ModelSpec, out: Outputs, ref: Outputs, targets: np.ndarray, tone: SkinTone,
             boot: Bootstrap, *, layout: str, probabilities: bool) -> dict[str, dict]:
    """Every metric, with its float value and drop, within each measured skin-tone group."""
    out_t, ref_t = task_view(spec, out, layout), task_view(spec, ref, layout)
    groups = np.array(tone.groups)
    result = {}
    for i, g in enumerate(GROUP_ORDER):
        sel = groups == g
        if not sel.any():
            continue
        rows = stats.compare(spec.task, out_t[sel], ref_t[sel], targets[sel], boot.subset(sel, seed=1 + i), labels=spec.labels,
                             output_names=tuple(o.name for o in spec.outputs), probabilities=probabilities)["metrics"]
        ita = tone.ita[sel]
        result[g] = {"n": int(sel.sum()),
                     "ita_range": [float(np.nanmin(ita)), float(np.nanmax(ita))] if np.isfinite(ita).any() else None,
                     "metrics": rows}
    return result


def compare_outputs(spec: ModelSpec, out: Outputs, ref: Outputs, targets: np.ndarray, boot: Bootstrap, layout: str) -> dict:
    """Every task metric of ``out`` against ``ref`` (drops with paired CIs), e.g. a pruned float model
    against the original one."""
    return stats.compare(spec.task, task_view(spec, out, layout), task_view(spec, ref, layout), targets, boot,
                         labels=spec.labels, output_names=tuple(o.name for o in spec.outputs))["metrics"]


def _named(name: str, output: str, several: bool) -> str:
    return f"{name} [{output}]" if several else name


def output_criteria(ref: Outputs, out: Outputs) -> list[dict]:
    """The outputs named as declared; each present, finite and of the reference's shape."""
    several = len(ref) > 1
    criteria = []
    if set(out) != set(ref):  # e.g. a bundle exported before its outputs were named as they are now
        criteria.append({"name": "outputs named as declared", "value": list(out), "bound": list(ref), "op": "==", "passed": False})
    for name, r in ref.items():
        o = out.get(name)
        finite = o is not None and bool(np.all(np.isfinite(o)))
        criteria.append({"name": _named("outputs finite (no NaN/Inf)", name, several), "value": finite, "bound": True, "op": "==",
                         "passed": finite})
        shape_ok = o is not None and o.shape == r.shape
        criteria.append({"name": _named("output shape", name, several), "value": list(o.shape[1:]) if o is not None else None,
                         "bound": list(r.shape[1:]), "op": "==", "passed": shape_ok})
    return criteria


def numeric_criteria(spec: ModelSpec, by_output: dict[str, dict], tolerance: Tolerance, tier: str) -> list[dict]:
    """Each output against float, by the tier's bounds that are set: max abs error relative to the output's
    range, SQNR, absolute max abs error, cosine; an output the task does not read and the tier bounds by
    none of them is held to the tier's default cosine."""
    read = get_task(spec.task).reads(spec)
    several = len(by_output) > 1
    criteria = []
    for name, num in by_output.items():
        min_cos = tolerance.min_cosine
        # ``max_rel`` divides by a float output's range, by an integer output's quantization step (1).
        relative = "max abs error in quantization steps vs float" if "quantization_step" in num else "max abs error / output range vs float"
        if name not in read and all(b is None for b in (tolerance.max_rel, tolerance.min_sqnr_db, tolerance.max_abs, min_cos)):
            min_cos = DEFAULT_MIN_COSINE[tier]
        criteria += [c for c in (
            _criterion(_named(relative, name, several), num["max_rel_error"], tolerance.max_rel,
                       op="<=", max_abs_error=num["max_abs_error"], reference_range=num["reference_range"]),
            _criterion(_named("SQNR vs float (dB)", name, several), num["sqnr_db"], tolerance.min_sqnr_db, op=">="),
            _criterion(_named("max abs error vs float", name, several), num["max_abs_error"], tolerance.max_abs, op="<="),
            _criterion(_named("cosine vs float", name, several), num["cosine"], min_cos, op=">="),
        ) if c is not None]
    return criteria


def verify_artifact(artifact: Artifact, runner: Runner, *, spec: ModelSpec, data: TaskData, x: np.ndarray,
                    ref: Outputs, tolerance: Tolerance, layout: str, tone: SkinTone, boot: Bootstrap,
                    noninferiority: str = "ci", min_group_size: int = 10) -> dict:
    """Run the artifact on ``x`` and gate its outputs against the float reference's ``ref``."""
    task = get_task(spec.task)
    # A runtime that fails while running the graph fails this artifact's gate; the export goes on.
    out = run_checked(runner, x, artifact.filename,
                      fix="drop this target from the recipe, or keep the failing layers float (targets[].keep_float)")
    # A Core ML classifier returns probabilities: compare them with the softmax of the float logits.
    probabilities = artifact.details.get("output_transform") == "softmax"
    if probabilities:
        first = spec.outputs[0].name
        ref = {**ref, first: softmax(ref[first])}
    criteria = output_criteria(ref, out)
    outputs_ok = all(c["passed"] for c in criteria)
    ref_shapes = {name: (1, *v.shape[1:]) for name, v in ref.items()}  # artifacts are batch-1
    criteria += structural_checks(artifact, (1, *x.shape[1:]), ref_shapes)
    result: dict = {"check": runner.check, "n_samples": int(len(x))}
    if runner.note:
        result["note"] = runner.note
    if not outputs_ok:
        result.update(passed=False, criteria=criteria)
        return result

    out_t, ref_t = task_view(spec, out, layout), task_view(spec, ref, layout)
    compared = stats.compare(spec.task, out_t, ref_t, data.targets, boot, labels=spec.labels,
                             output_names=tuple(o.name for o in spec.outputs), probabilities=probabilities)
    rows = compared.pop("metrics")
    check_margin_names(tolerance, rows)
    by_output = numerics_by_output(ref, out)
    agree = rows["agreement"]["artifact"]["value"] if "agreement" in rows else None
    key = headline(spec)
    head = rows[key]

    criteria += numeric_criteria(spec, by_output, tolerance, PRECISIONS[artifact.precision].tier)
    criteria += [c for c in (
        _criterion(task.agreement_label, agree, tolerance.min_agreement, op=">=") if task.agreement_label else None,
        drop_criterion(key, head, tolerance.max_metric_drop, noninferiority),
        *(drop_criterion(name, rows[name], margin, noninferiority) for name, margin in sorted(tolerance.margins.items())),
    ) if c is not None]

    groups = by_group(spec, out, ref, data.targets, tone, boot, layout=layout, probabilities=probabilities)
    worst = worst_group_criterion(key, groups, tolerance.max_group_drop, min_group_size)
    if worst is not None:
        criteria.append(worst)
    result.update(
        passed=all(c["passed"] for c in criteria),
        numerics=metrics.numerics(_flat(ref, ref), _flat(out, ref)),
        numerics_by_output=by_output,
        error_histogram=error_histogram(ref, out),
        agreement=agree,
        task_metric={"name": key, "higher_is_better": spec.higher_is_better, "float": head["float"]["value"],
                     "artifact": head["artifact"]["value"], "drop": head["drop"]["value"], "drop_ci95": head["drop"]["ci95"]},
        metrics=rows,
        by_group=groups,
        criteria=criteria,
        **compared,  # the task's extras (a confusion matrix)
    )
    return result
