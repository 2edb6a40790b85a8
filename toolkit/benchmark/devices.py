"""Phone-class latency estimates from an artifact's cost and a device profile.

A **fitted** profile carries a cost model with one term per op class (``toolkit.backends.base.OP_CLASSES``):

    estimate = overhead + Σ_class amount × ms per unit + partitions × fallback cost

where the amount is GMACs for convolution, depthwise convolution and matmul, and MB (elements × the compute dtype's
width) for elementwise and resize ops. The coefficients are fitted by non-negative least squares on relative error
to published latencies (``benchmarks/devices/anchors.yaml``, each model described by its op-class breakdown). A
profile rarely has enough figures for every class on its own, so classes **share** terms along a fixed ladder
(``LEVELS``): the richest level whose parameters leave-one-out can still determine (parameters ≤ figures − 1) is
used, and the profile says it is under-determined when that is not the full model. Every fitted profile records its
leave-one-out error (each figure predicted by the model fitted without it), and ``estimate`` returns it.

Profiles without a cost model (hand-set GPU figures) keep the roofline ``overhead + max(MACs / throughput, bytes
moved / bandwidth)``; **derived** profiles scale a fitted sibling's MAC terms by ``throughput_scale``. ``throughput``
is an effective MAC rate for the compute dtype the artifact runs in (int8 for a full-integer model, float16 for fp16
and for weight-compressed models, whose weights are decompressed to float16), and a *partition* is a run of ops the
unit cannot execute, each costing a hand-off to the CPU and back. Every number this module returns is an estimate
and is labelled as one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit._io import yaml_load
from toolkit.backends import BACKENDS, get_backend, op_support
from toolkit.backends.base import OP_CLASSES, Cost
from toolkit.errors import BadInputError, did_you_mean

DEVICES_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "devices"
ComputeDtype = Literal["fp32", "fp16", "int16", "int8"]
OP_TABLES = tuple(name for b in BACKENDS.values() for name in b.op_support)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FitReport(_Strict):
    anchors: int
    dtypes: tuple[ComputeDtype, ...] = Field(description="the compute dtypes the anchors cover; others are derived")
    max_rel_error: float = Field(description="largest |estimate − published| / published over the anchors (in sample)")
    mean_rel_error: float
    level: str = Field("", description="which rung of LEVELS the cost model uses")
    parameters: int = Field(0, description="fitted coefficients")
    under_determined: bool = Field(False, description="too few figures for the full per-class model: classes share terms")
    loo_median_abs_error: float | None = Field(None, description="median |error| of each figure predicted without it; "
                                                                  "None where one figure leaves nothing to fit")
    loo_max_abs_error: float | None = None
    loo_worst: str | None = Field(None, description="the figure leave-one-out predicts worst: model and dtype")


class CostModel(_Strict):
    """Fitted coefficients per compute dtype: ``overhead`` in ms; MAC classes in ms per GMAC; byte classes in ms per MB."""

    level: str
    ms_per_unit: dict[ComputeDtype, dict[str, float]]


class Derivation(_Strict):
    profile: str = Field(description="the fitted profile this one scales")
    throughput_scale: float = Field(gt=0)
    dtypes: tuple[ComputeDtype, ...] = Field(description="the sibling's dtypes this unit has")


class DeviceProfile(_Strict):
    name: str
    device: str = Field(description="the phone and chip")
    unit: Literal["npu", "gpu", "cpu"]
    runtime: Literal[tuple(BACKENDS)] = Field(description="which artifacts it runs")  # type: ignore[valid-type]
    op_support: Literal[(*OP_TABLES, "all")] = Field(  # type: ignore[valid-type]
        description="op list deciding what stays on the unit (tflite_gpu is also the proxy for NPU delegates)")
    overhead_ms: dict[ComputeDtype, float] = Field({}, description="fixed cost per inference per compute dtype: dispatch, synchronisation")
    throughput_tmacs: dict[ComputeDtype, float] = Field({}, description="effective tera-MAC/s per compute dtype")
    derived_from: Derivation | None = Field(None, description="overheads and scaled throughputs taken from a fitted profile")
    bandwidth_gb_s: float = Field(gt=0)
    activation_traffic: float = Field(
        ge=0, le=1, description="share of activation bytes that go through DRAM: 0 where they stay in on-chip memory "
                                "(NPUs: published small-model latencies are overhead/compute-bound), 1 where every one does")
    fallback_ms_per_partition: float = Field(ge=0)
    derivation: str
    fit: FitReport | None = None
    cost_model: CostModel | None = Field(None, description="per-op-class terms fitted to anchors (benchmarks/fit_devices.py)")


class Anchor(_Strict):
    profile: str
    model: str
    compute: ComputeDtype
    ms: float = Field(gt=0)
    source: str


class AnchorFile(_Strict):
    models: dict[str, dict[str, float]]  # name -> {gmacs, params_m, and per op class: GMACs or M elements}
    anchors: tuple[Anchor, ...]


def load_profile(path: Path) -> DeviceProfile:
    try:
        return DeviceProfile.model_validate(yaml_load(path.read_text(encoding="utf-8")))
    except (ValidationError, yaml.YAMLError, RecursionError, OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"device profile {path} is invalid: {exc}".splitlines()[0],
                            fix="compare it with benchmarks/devices/snapdragon_8gen3_npu.yaml") from None


def _resolve(profile: DeviceProfile, known: dict[str, Path]) -> DeviceProfile:
    """A derived profile with its sibling's overheads and scaled throughputs filled in."""
    d = profile.derived_from
    if d is None:
        if not profile.throughput_tmacs or not profile.overhead_ms:
            raise BadInputError(f"device profile {profile.name} has no throughput_tmacs / overhead_ms and no derived_from",
                                fix="give both, or derive it from a fitted profile")
        return profile
    if d.profile not in known:
        raise BadInputError(f"device profile {profile.name} derives from unknown profile {d.profile!r}", fix=f"use one of: {', '.join(known)}")
    base = load_profile(known[d.profile])
    missing = [t for t in d.dtypes if t not in base.throughput_tmacs]
    if missing:
        raise BadInputError(f"device profile {profile.name}: {d.profile} has no {', '.join(missing)} throughput", fix="list dtypes it has")
    update = {"overhead_ms": {t: base.overhead_ms[t] for t in d.dtypes},
              "throughput_tmacs": {t: round(base.throughput_tmacs[t] * d.throughput_scale, 4) for t in d.dtypes}}
    if base.cost_model is not None:  # MAC terms scale with the unit's throughput; overhead and byte terms are kept
        terms = {t: {k: (v / d.throughput_scale if k in MAC_CLASSES else v) for k, v in base.cost_model.ms_per_unit[t].items()}
                 for t in d.dtypes if t in base.cost_model.ms_per_unit}
        update["cost_model"] = CostModel(level=base.cost_model.level, ms_per_unit=terms)
    return profile.model_copy(update=update)


def load_profiles(names: list[str] | None = None, directory: Path = DEVICES_DIR) -> list[DeviceProfile]:
    """The profiles in ``directory`` (all, or those named; a name may also be a path to a YAML file)."""
    known = {p.stem: p for p in sorted(directory.glob("*.yaml")) if p.stem != "anchors"}
    paths = []
    for n in names or list(known):
        path = Path(n)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            paths.append(path)
        elif n in known:
            paths.append(known[n])
        else:
            raise BadInputError(f"unknown device profile {n!r}{did_you_mean(n, known)}", fix=f"use one of: {', '.join(known)}, or a path to a profile YAML")
    return [_resolve(load_profile(p), known) for p in paths]


def load_anchors(directory: Path = DEVICES_DIR) -> AnchorFile:
    return AnchorFile.model_validate(yaml_load((directory / "anchors.yaml").read_text()))


def compute_dtype(profile: DeviceProfile, fmt: str, precision: str) -> tuple[ComputeDtype | None, str]:
    """The dtype the unit computes an artifact in, or None with the reason it cannot run it."""
    if fmt != profile.runtime:
        return None, f"{profile.name} runs {profile.runtime} artifacts"
    refused = get_backend(fmt).unit_refuses(profile.unit, precision)
    if refused:
        return None, refused
    if precision in ("int8",):
        want: ComputeDtype = "int8"
    elif precision == "int16x8":
        want = "int16"
    elif precision == "fp32" and profile.unit == "cpu":
        want = "fp32"
    else:  # fp16, weight-only int8 / dynamic range / palettized / int4 / sparse: weights decompressed to float16
        want = "fp16" if profile.unit != "cpu" else "fp32"
    if want in profile.throughput_tmacs:
        return want, ""
    for fallback in ("fp16", "fp32"):
        if fallback in profile.throughput_tmacs:
            return fallback, f"no {want} path on this unit: computed as {fallback}"
    return None, f"{profile.name} declares no throughput for {want}"


def partitions(ops: tuple[str, ...], support: str) -> tuple[int, list[str]]:
    """Runs of consecutive ops the unit cannot execute, and which op types those are."""
    if support == "all":
        return 0, []
    table = op_support(support)
    runs, inside, off = 0, False, set()
    for op in ops:
        supported = table.runs(op)
        if not supported:
            off.add(op)
            runs += not inside
        inside = not supported
    return runs, sorted(off)


def latency_ms(profile: DeviceProfile, dtype: ComputeDtype, macs: float, weight_bytes: float, activation_bytes: float = 0.0,
               n_partitions: int = 0) -> dict:
    """The roofline of a profile without a cost model: overhead + max(compute, memory) + partitions."""
    compute = macs / (profile.throughput_tmacs[dtype] * 1e12) * 1e3
    memory = _memory_ms(profile, weight_bytes, activation_bytes)
    t0 = profile.overhead_ms.get(dtype, max(profile.overhead_ms.values()))
    total = t0 + max(compute, memory) + n_partitions * profile.fallback_ms_per_partition
    return {"ms": round(total, 4), "compute_ms": round(compute, 4), "memory_ms": round(memory, 4),
            "bound": "memory" if memory > compute else "compute", "overhead_ms": t0}


def _memory_ms(profile: DeviceProfile, weight_bytes: float, activation_bytes: float) -> float:
    traffic = weight_bytes + profile.activation_traffic * 2 * activation_bytes
    return traffic / (profile.bandwidth_gb_s * 1e9) * 1e3


MAC_CLASSES, BYTE_CLASSES = OP_CLASSES[:3], OP_CLASSES[3:]
_DTYPE_BYTES = {"fp32": 4, "fp16": 2, "int16": 2, "int8": 1}


class Level(NamedTuple):
    """One rung of the ladder: which classes share a term. MAC terms are per compute dtype; byte terms are shared by all
    dtypes (their amount is already in bytes at the dtype's width); the overhead per dtype, shared, or none."""

    name: str
    mac_terms: tuple[tuple[str, ...], ...]
    byte_terms: tuple[tuple[str, ...], ...]
    overhead: Literal["per dtype", "shared", "none"]

    def parameters(self, n_dtypes: int) -> int:
        return len(self.mac_terms) * n_dtypes + len(self.byte_terms) + {"per dtype": n_dtypes, "shared": 1, "none": 0}[self.overhead]


LEVELS = (
    Level("per class", (("conv",), ("depthwise",), ("matmul",)), (("elementwise",), ("memory",)), "per dtype"),
    Level("MAC classes shared", (MAC_CLASSES,), (("elementwise",), ("memory",)), "per dtype"),
    Level("MACs and overhead", (MAC_CLASSES,), (), "per dtype"),
    Level("MACs, one overhead", (MAC_CLASSES,), (), "shared"),
    Level("MACs only", (MAC_CLASSES,), (), "none"),
)


def amounts(breakdown: dict[str, float], dtype: ComputeDtype) -> dict[str, float]:
    """What each class term multiplies: GMACs for MAC classes, MB at the dtype's width for byte classes, from a
    breakdown in GMACs and millions of elements (anchors.yaml's unit)."""
    return {c: breakdown.get(c, 0.0) * (_DTYPE_BYTES[dtype] if c in BYTE_CLASSES else 1.0) for c in OP_CLASSES}


def cost_breakdown(cost: Cost) -> tuple[dict[str, float], str]:
    """An artifact's op classes in anchors.yaml's units, or every MAC as convolution where its format's reader gives none."""
    if cost.op_classes:
        return {c: cost.op_classes.get(c, 0) / (1e9 if c in MAC_CLASSES else 1e6) for c in OP_CLASSES}, ""
    return {"conv": cost.macs / 1e9}, "op classes not read for this format: every MAC counted as convolution, no elementwise or resize term"


def _columns(level: Level, dtypes: list[str]) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """(label, dtype or None for shared, classes) per fitted coefficient; classes () is the overhead."""
    cols: list[tuple[str, str | None, tuple[str, ...]]] = []
    if level.overhead == "per dtype":
        cols += [("overhead", d, ()) for d in dtypes]
    elif level.overhead == "shared":
        cols.append(("overhead", None, ()))
    cols += [("+".join(g), d, g) for d in dtypes for g in level.mac_terms]
    cols += [("+".join(g), None, g) for g in level.byte_terms]
    return cols


def _design(rows: list[tuple[str, dict[str, float]]], cols) -> np.ndarray:
    return np.array([[(1.0 if not classes else sum(a[c] for c in classes)) if d in (None, dtype) else 0.0
                      for _, d, classes in cols] for dtype, a in rows])


def fit_terms(rows: list[tuple[str, dict[str, float]]], ms: np.ndarray, level: Level) -> CostModel:
    """Non-negative least squares on relative error: minimise Σ ((X·k − t) / t)² with every coefficient ≥ 0."""
    from scipy.optimize import nnls

    dtypes = sorted({d for d, _ in rows})
    cols = _columns(level, dtypes)
    x = _design(rows, cols)
    k, _ = nnls(x / ms[:, None], np.ones(len(ms)))
    out: dict[str, dict[str, float]] = {d: {} for d in dtypes}
    for (_, d, classes), v in zip(cols, k):
        for dt in ([d] if d else dtypes):
            for c in classes or ("overhead",):
                out[dt][c] = float(f"{v:.6g}")
    for dt in dtypes:  # classes without a term at this level are free
        out[dt] = {c: out[dt].get(c, 0.0) for c in ("overhead", *OP_CLASSES)}
    return CostModel(level=level.name, ms_per_unit=out)


def predict(model: CostModel, dtype: ComputeDtype, a: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Overhead and per-class milliseconds of one inference under a cost model."""
    k = model.ms_per_unit[dtype]
    return k["overhead"], {c: k[c] * a[c] for c in OP_CLASSES}


def class_latency_ms(profile: DeviceProfile, dtype: ComputeDtype, a: dict[str, float], weight_bytes: float,
                     activation_bytes: float = 0.0, n_partitions: int = 0) -> dict:
    t0, terms = predict(profile.cost_model, dtype, a)
    compute = sum(terms[c] for c in MAC_CLASSES)
    moved = sum(terms[c] for c in BYTE_CLASSES)
    total = t0 + compute + moved + n_partitions * profile.fallback_ms_per_partition
    return {"ms": round(total, 4), "compute_ms": round(compute, 4), "memory_ms": round(_memory_ms(profile, weight_bytes, activation_bytes), 4),
            "bound": "memory" if moved > compute else "compute", "overhead_ms": round(t0, 4),
            "terms_ms": {c: round(v, 4) for c, v in terms.items() if v}}


def estimate(profile: DeviceProfile, cost: Cost, precision: str) -> dict:
    """The estimated latency of an artifact on a profile's unit (labelled as an estimate), or why none."""
    dtype, note = compute_dtype(profile, cost.format, precision)
    base = {"profile": profile.name, "device": profile.device, "unit": profile.unit, "estimated": True}
    if dtype is None:
        return {**base, "ms": None, "reason": note, "basis": None}
    fitted = profile.fit is not None and dtype in profile.fit.dtypes
    base["basis"] = _basis(profile.fit) if fitted else "derived (not fitted)"
    n, off = partitions(cost.op_sequence, profile.op_support)
    notes = [note] if note else []
    if profile.cost_model is not None and dtype in profile.cost_model.ms_per_unit:
        breakdown, why = cost_breakdown(cost)
        notes += [why] if why else []
        est = class_latency_ms(profile, dtype, amounts(breakdown, dtype), cost.weight_bytes, cost.activation_bytes, n)
        est["cost_model"] = profile.cost_model.level
    else:
        est = latency_ms(profile, dtype, cost.macs, cost.weight_bytes, cost.activation_bytes, n)
        est["cost_model"] = "roofline (hand-set)"
    out = {**base, "compute_dtype": dtype, **est, "partitions": n, "ops_off_unit": off}
    if notes:
        out["note"] = "; ".join(notes)
    if profile.fit:
        out["fit_max_rel_error"] = profile.fit.max_rel_error
        out["loo_median_abs_error"] = profile.fit.loo_median_abs_error
        out["loo_max_abs_error"] = profile.fit.loo_max_abs_error
        out["under_determined"] = profile.fit.under_determined
    return out


def _basis(report: FitReport) -> str:
    loo = (f"leave-one-out median |error| {report.loo_median_abs_error:.0%}, worst {report.loo_max_abs_error:.0%}"
           if report.loo_median_abs_error is not None else "no leave-one-out check possible")
    under = (f"; under-determined: {report.anchors} figures for the full per-class model, so classes share terms ({report.level})"
             if report.under_determined else "")
    return f"fitted to {report.anchors} published figures ({loo}){under}"


def anchor_weight_bytes(anchors: AnchorFile, a: Anchor) -> float:
    """Weights of an anchor's model at its compute dtype's width (what its memory term reads)."""
    return anchors.models[a.model]["params_m"] * 1e6 * _DTYPE_BYTES[a.compute]


def anchor_amounts(anchors: AnchorFile, a: Anchor) -> dict[str, float]:
    return amounts(anchors.models[a.model], a.compute)


def choose_level(n_figures: int, n_dtypes: int) -> tuple[Level, bool]:
    """The richest level every leave-one-out refit still determines (parameters ≤ figures − 1), else the poorest that
    the figures determine at all; and whether that falls short of the full per-class model."""
    for i, level in enumerate(LEVELS):
        if level.parameters(n_dtypes) <= n_figures - 1:
            return level, i > 0
    return LEVELS[-1], True


def fit(anchors: AnchorFile, profile: DeviceProfile) -> tuple[CostModel, FitReport, list[dict]]:
    """A profile's cost model fitted to its published latencies, its fit report, and per figure the in-sample and
    leave-one-out estimates (each figure predicted by the model fitted to the others at the same level)."""
    sel = [a for a in anchors.anchors if a.profile == profile.name]
    if not sel:
        raise ValueError(f"no anchors for {profile.name}")
    rows = [(a.compute, anchor_amounts(anchors, a)) for a in sel]
    t = np.array([a.ms for a in sel])
    dtypes = sorted({a.compute for a in sel})
    level, under = choose_level(len(sel), len(dtypes))
    model = fit_terms(rows, t, level)
    per: list[dict] = []
    for i, a in enumerate(sel):
        rest = [j for j in range(len(sel)) if j != i]
        same_dtype = [j for j in rest if sel[j].compute == a.compute]
        loo = None
        if same_dtype:  # a figure whose dtype has no other figure has no term left to predict it with
            sub = fit_terms([rows[j] for j in rest], t[rest], level)
            t0, terms = predict(sub, a.compute, rows[i][1])
            loo = t0 + sum(terms.values())
        t0, terms = predict(model, a.compute, rows[i][1])
        per.append({"anchor": a, "estimate": t0 + sum(terms.values()), "loo": loo})
    rel = np.array([abs(p["estimate"] - a.ms) / a.ms for p, a in zip(per, sel)])
    loo_rel = [(abs(p["loo"] - a.ms) / a.ms, a) for p, a in zip(per, sel) if p["loo"] is not None]
    worst = max(loo_rel, key=lambda r: r[0]) if loo_rel else None
    report = FitReport(
        anchors=len(sel), dtypes=tuple(dtypes), max_rel_error=round(float(rel.max()), 4), mean_rel_error=round(float(rel.mean()), 4),
        level=level.name, parameters=level.parameters(len(dtypes)), under_determined=under,
        loo_median_abs_error=round(float(np.median([r for r, _ in loo_rel])), 4) if loo_rel else None,
        loo_max_abs_error=round(float(worst[0]), 4) if worst else None,
        loo_worst=f"{worst[1].model} {worst[1].compute}" if worst else None)
    return model, report, per
