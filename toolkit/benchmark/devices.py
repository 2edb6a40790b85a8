"""Phone-class latency estimates from an artifact's cost and a device profile.

    estimate = overhead + max(MACs / throughput, bytes moved / bandwidth) + partitions × fallback cost

``throughput`` is the profile's *effective* MAC rate for the compute dtype the artifact runs in (int8 for a
full-integer model, float16 for fp16 and for weight-compressed models, whose weights are decompressed to
float16), ``bytes moved`` is the stored weights plus the share of activation traffic (2 × activation bytes,
``toolkit.benchmark.cost``) the profile says goes through DRAM, and a *partition* is a
run of ops the unit cannot execute, each costing a hand-off to the CPU and back. Profiles live in
``benchmarks/devices/*.yaml``. A profile's overhead and throughputs are either **fitted** by least squares to
published latencies (``benchmarks/devices/anchors.yaml``; the fit error is stored with the profile and a
test re-derives it) or **derived** from a fitted sibling or a vendor's peak figure, which the profile says
in ``derivation``. Every number this module returns is an estimate and is labelled as one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit._io import yaml_load
from toolkit.backends import BACKENDS, get_backend, op_support
from toolkit.backends.base import Cost
from toolkit.errors import BadInputError, did_you_mean

DEVICES_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "devices"
ComputeDtype = Literal["fp32", "fp16", "int16", "int8"]
OP_TABLES = tuple(name for b in BACKENDS.values() for name in b.op_support)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FitReport(_Strict):
    anchors: int
    dtypes: tuple[ComputeDtype, ...] = Field(description="the compute dtypes the anchors cover; others are derived")
    max_rel_error: float = Field(description="largest |estimate − published| / published over the anchors")
    mean_rel_error: float


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


class Anchor(_Strict):
    profile: str
    model: str
    compute: ComputeDtype
    ms: float = Field(gt=0)
    source: str


class AnchorFile(_Strict):
    models: dict[str, dict[str, float]]  # name -> {gmacs, params_m}
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
    return profile.model_copy(update={
        "overhead_ms": {t: base.overhead_ms[t] for t in d.dtypes},
        "throughput_tmacs": {t: round(base.throughput_tmacs[t] * d.throughput_scale, 4) for t in d.dtypes}})


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
    compute = macs / (profile.throughput_tmacs[dtype] * 1e12) * 1e3
    traffic = weight_bytes + profile.activation_traffic * 2 * activation_bytes
    memory = traffic / (profile.bandwidth_gb_s * 1e9) * 1e3
    t0 = profile.overhead_ms.get(dtype, max(profile.overhead_ms.values()))
    total = t0 + max(compute, memory) + n_partitions * profile.fallback_ms_per_partition
    return {"ms": round(total, 4), "compute_ms": round(compute, 4), "memory_ms": round(memory, 4),
            "bound": "memory" if memory > compute else "compute", "overhead_ms": t0}


def estimate(profile: DeviceProfile, cost: Cost, precision: str) -> dict:
    """The estimated latency of an artifact on a profile's unit (labelled as an estimate), or why none."""
    dtype, note = compute_dtype(profile, cost.format, precision)
    base = {"profile": profile.name, "device": profile.device, "unit": profile.unit, "estimated": True}
    if dtype is None:
        return {**base, "ms": None, "reason": note, "basis": None}
    base["basis"] = "fitted to published figures" if profile.fit and dtype in profile.fit.dtypes else "derived (not fitted)"
    n, off = partitions(cost.op_sequence, profile.op_support)
    out = {**base, "compute_dtype": dtype, **latency_ms(profile, dtype, cost.macs, cost.weight_bytes, cost.activation_bytes, n),
           "partitions": n, "ops_off_unit": off}
    if note:
        out["note"] = note
    if profile.fit:
        out["fit_max_rel_error"] = profile.fit.max_rel_error
    return out


_DTYPE_BYTES = {"fp32": 4, "fp16": 2, "int16": 2, "int8": 1}


def anchor_weight_bytes(anchors: AnchorFile, a: Anchor) -> float:
    """Weights of an anchor's model at its compute dtype's width (what its memory term reads)."""
    return anchors.models[a.model]["params_m"] * 1e6 * _DTYPE_BYTES[a.compute]


def fit(anchors: AnchorFile, profile: DeviceProfile) -> tuple[dict[str, float], dict[str, float], FitReport]:
    """Overhead and throughput per compute dtype fitted to a profile's published latencies.

    The model is the estimate itself, t = t0 + max(GMACs / P, weight bytes / bandwidth), fitted by least
    squares on relative error (scipy), per dtype: float and int8 get their own overhead, as published
    figures show different fixed costs (on the S24 NPU ~0.5 ms float, ~0.27 ms int8). With a single anchor
    for a dtype the overhead cannot be separated, so it is taken as zero and the throughput absorbs it."""
    from scipy.optimize import least_squares

    rows = [a for a in anchors.anchors if a.profile == profile.name]
    if not rows:
        raise ValueError(f"no anchors for {profile.name}")
    overhead, throughput = {}, {}
    for dtype in sorted({a.compute for a in rows}):
        sel = [a for a in rows if a.compute == dtype]
        g = np.array([anchors.models[a.model]["gmacs"] for a in sel])
        mem = np.array([anchor_weight_bytes(anchors, a) / (profile.bandwidth_gb_s * 1e9) * 1e3 for a in sel])
        t = np.array([a.ms for a in sel])
        if len(sel) == 1:
            t0, inv = 0.0, t[0] / g[0]
        else:
            def residual(v, g=g, mem=mem, t=t):
                return (v[0] + np.maximum(g * v[1], mem) - t) / t

            start = np.linalg.lstsq(np.stack([np.ones_like(g), g], 1), t, rcond=None)[0]
            start = np.clip(start, [0.0, 1e-6], [t.min() * 0.99, np.inf])
            t0, inv = least_squares(residual, start, bounds=([0.0, 1e-9], [t.min(), np.inf])).x
        overhead[dtype], throughput[dtype] = round(float(t0), 4), round(float(1.0 / inv), 4)
    fitted = profile.model_copy(update={"overhead_ms": {**profile.overhead_ms, **overhead},
                                        "throughput_tmacs": {**profile.throughput_tmacs, **throughput}})
    pred = np.array([latency_ms(fitted, a.compute, anchors.models[a.model]["gmacs"] * 1e9, anchor_weight_bytes(anchors, a))["ms"]
                     for a in rows])
    t = np.array([a.ms for a in rows])
    rel = np.abs(pred - t) / t
    return overhead, throughput, FitReport(anchors=len(rows), dtypes=tuple(sorted(overhead)), max_rel_error=round(float(rel.max()), 4),
                                           mean_rel_error=round(float(rel.mean()), 4))
