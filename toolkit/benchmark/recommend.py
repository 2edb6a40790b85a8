"""The artifact to ship, per place it runs: the fastest one that passed its verification gate.

A *device* here is somewhere an artifact's latency is known: this host with one runtime at one thread count
(measured), a device profile (estimated, ``toolkit.benchmark.devices``), or an attached phone (measured). For each,
the recommendation is the fastest passing artifact of the runtime it runs, with its latency, the basis of that
figure and the runner-up; or none, and why. Measured figures are never ranked against estimated ones: where any
passing artifact was measured, only measured figures rank.

An artifact slower than a *more precise* sibling on the same device is flagged (tiers of
``toolkit.backends.precisions``: fp32, fp16, int8, low-bit), because an app team picking "the int8 one" expects it
to be the fast one. Flagged means slower by ``SLOWER_BY`` or more at the median and, where both were measured
with their run-to-run spread, in their fastest runs (p10) too, which a busy machine disturbs least; a flag from a
measurement the host marked noisy says so.

``recommend`` is pure; ``recommend_rows`` builds its input from rows shaped as ``skinkit bench`` writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolkit.backends.precisions import PRECISIONS

if TYPE_CHECKING:
    from toolkit.benchmark.devices import DeviceProfile

TIERS = ("fp32", "fp16", "int8", "lowbit")  # most precise first: ``Precision.tier``
# Slower by less than this is within what host timings on a busy machine vary by: not flagged (an fp16 TFLite runs as
# fp32 on XNNPACK, and was seen 1.2× "slower" than its fp32 sibling on a loaded host).
SLOWER_BY = 1.25
RULE = ("the fastest artifact that passed its verification gate, among those the device's runtime runs; measured "
        "figures rank alone where any passing artifact was measured there, else estimates; ties go to the more precise, "
        "then the smaller, then the first by name")

Kind = Literal["host", "profile", "phone"]


def precision_rank(precision: str) -> int:
    """0 for the most precise tier (fp32); a precision outside ``PRECISIONS`` ranks last."""
    p = PRECISIONS.get(precision)
    return TIERS.index(p.tier) if p is not None else len(TIERS)


# -- input --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figure:
    """An artifact's latency on one device, or why there is none."""

    ms: float | None
    basis: str  # "measured on host (…)", "estimated from profile X (fitted)"
    measured: bool
    reason: str = ""  # why ``ms`` is None
    noisy: str = ""  # why a measured figure may not be trusted as an absolute one
    p10_ms: float | None = None  # a measurement's fastest runs


@dataclass(frozen=True)
class Candidate:
    artifact: str  # its path in the bundle
    format: str
    precision: str
    passed: bool  # its verification gate
    size_bytes: int = 0
    figures: Mapping[str, Figure] = field(default_factory=dict)  # device key -> figure


@dataclass(frozen=True)
class Device:
    key: str
    kind: Kind
    runtime: str  # the format it runs
    description: str


# -- output (the manifest's ``recommended``) ---------------------------------------------------------------------

class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pick(_Record):
    artifact: str
    precision: str
    ms: float
    basis: str
    measured: bool
    noisy: str | None = Field(None, description="why the measured figure may not be trusted as an absolute one")


class DeviceRecommendation(_Record):
    device: str = Field(description="host runtime at a thread count, device profile name, or phone")
    kind: Kind
    runtime: str = Field(description="the format of the artifacts it runs")
    description: str
    recommended: Pick | None = Field(description="the fastest artifact that passed its gate; None: see reason")
    runner_up: Pick | None = None
    reason: str | None = Field(None, description="why no artifact is recommended")


class SlowerThanSibling(_Record):
    device: str
    artifact: str
    precision: str
    ms: float
    sibling: str = Field(description="a more precise artifact of the same runtime")
    sibling_precision: str
    sibling_ms: float
    ratio: float = Field(description="ms / sibling_ms")
    measured: bool
    noisy: bool = Field(False, description="either measurement was marked noisy: confirm on an idle machine")
    message: str


class Recommended(_Record):
    rule: str = RULE
    devices: list[DeviceRecommendation]
    flags: list[SlowerThanSibling] = Field(
        description=f"artifacts at least {SLOWER_BY:.2f}× slower than a more precise sibling on the same device")


# -- the rule -----------------------------------------------------------------------------------------------------

def _order(c: Candidate, f: Figure) -> tuple:
    return f.ms, precision_rank(c.precision), c.size_bytes, c.artifact


def _pick(c: Candidate, f: Figure) -> Pick:
    return Pick(artifact=c.artifact, precision=c.precision, ms=f.ms, basis=f.basis, measured=f.measured, noisy=f.noisy or None)


def _why_none(device: Device, of_runtime: Sequence[Candidate]) -> str:
    if not of_runtime:
        return f"it runs {device.runtime} artifacts and the bundle has none"
    parts = []
    for c in of_runtime:
        f = c.figures.get(device.key)
        if not c.passed:
            parts.append(f"{c.artifact} failed its gate")
        else:
            parts.append(f"{c.artifact}: {f.reason if f is not None and f.reason else 'no figure'}")
    return "no passing artifact runs there: " + "; ".join(parts)


def _recommend_one(device: Device, candidates: Sequence[Candidate]) -> DeviceRecommendation:
    of_runtime = [c for c in candidates if c.format == device.runtime]
    timed = [(c, c.figures[device.key]) for c in of_runtime
             if c.passed and device.key in c.figures and c.figures[device.key].ms is not None]
    if any(f.measured for _, f in timed):
        timed = [(c, f) for c, f in timed if f.measured]
    timed.sort(key=lambda cf: _order(*cf))
    base = {"device": device.key, "kind": device.kind, "runtime": device.runtime, "description": device.description}
    if not timed:
        return DeviceRecommendation(**base, recommended=None, reason=_why_none(device, of_runtime))
    return DeviceRecommendation(**base, recommended=_pick(*timed[0]), runner_up=_pick(*timed[1]) if len(timed) > 1 else None)


def _slower(f: Figure, g: Figure) -> bool:
    if f.ms < SLOWER_BY * g.ms:
        return False
    return f.p10_ms is None or g.p10_ms is None or f.p10_ms >= SLOWER_BY * g.p10_ms


def _flags_one(device: Device, candidates: Sequence[Candidate]) -> list[SlowerThanSibling]:
    """Each artifact slower than a more precise one of the same runtime here (passing or not: it is about speed),
    against the fastest such sibling, measured against measured and estimated against estimated."""
    timed = [(c, c.figures[device.key]) for c in candidates
             if c.format == device.runtime and device.key in c.figures and c.figures[device.key].ms]
    out = []
    for c, f in timed:
        siblings = sorted(((s, g) for s, g in timed if g.measured == f.measured
                           and precision_rank(s.precision) < precision_rank(c.precision)
                           and _slower(f, g)), key=lambda sg: _order(*sg))
        if not siblings:
            continue
        s, g = siblings[0]
        ratio = round(f.ms / g.ms, 2)
        noisy = bool(f.noisy or g.noisy)
        how = ("measured on a host marked noisy: confirm on an idle machine" if noisy else "measured") if f.measured else "estimated"
        out.append(SlowerThanSibling(
            device=device.key, artifact=c.artifact, precision=c.precision, ms=f.ms, sibling=s.artifact,
            sibling_precision=s.precision, sibling_ms=g.ms, ratio=ratio, measured=f.measured, noisy=noisy,
            message=f"{c.artifact} ({c.precision}) is {ratio:.2f}× slower than the more precise {s.artifact} "
                    f"({s.precision}) on {device.key}: {f.ms:.4g} vs {g.ms:.4g} ms, {how}"))
    return out


def recommend(candidates: Sequence[Candidate], devices: Sequence[Device]) -> Recommended:
    """Per device, the fastest artifact that passed its gate (with the runner-up), or none and why; and the
    artifacts slower than a more precise sibling there."""
    return Recommended(devices=[_recommend_one(d, candidates) for d in devices],
                       flags=[flag for d in devices for flag in _flags_one(d, candidates)])


# -- from measured and estimated rows ----------------------------------------------------------------------------

def host_key(fmt: str, threads: int | str) -> str:
    return f"host {fmt} ({threads} thr)"


def estimate_basis(e: dict) -> str:
    """The basis of one ``devices.estimate`` figure, as a recommendation states it."""
    kind = "fitted" if e["basis"].startswith("fitted") else "derived"
    return f"estimated from profile {e['profile']} ({kind})"


def recommend_rows(rows: Sequence[dict], profiles: Sequence[DeviceProfile]) -> Recommended:
    """``recommend`` over rows shaped as ``skinkit bench`` writes them: ``artifact``, ``format``, ``precision``,
    ``passed``, ``size_bytes``, ``host`` (threads -> a ``measure_latency`` record with ``runtime``, or ``skipped``),
    ``estimates`` (one ``devices.estimate`` per profile) and, where phones ran it, ``phones``."""
    host_runtime: dict[tuple[str, int], str | None] = {}  # (format, threads) -> the runtime measured there
    phones: dict[str, Device] = {}
    candidates = []
    for r in rows:
        figures: dict[str, Figure] = {}
        for t, h in r.get("host", {}).items():
            key = host_key(r["format"], t)
            if "p50_ms" in h:  # the first measured artifact's runtime names the device
                host_runtime[(r["format"], int(t))] = host_runtime.get((r["format"], int(t))) or h["runtime"]
                figures[key] = Figure(h["p50_ms"], f"measured on host (p50, {t} threads)", True, noisy=h.get("noisy", ""),
                                      p10_ms=h.get("p10_ms"))
            else:
                host_runtime.setdefault((r["format"], int(t)), None)
                figures[key] = Figure(None, "", True, reason=h.get("skipped", "not measured"))
        for e in r.get("estimates", []):
            figures[e["profile"]] = (Figure(e["ms"], estimate_basis(e), False) if e["ms"] is not None
                                     else Figure(None, "", False, reason=e["reason"]))
        for p in r.get("phones", []):
            if "mean_ms" in p:
                key = f"phone {p['device']} ({p['delegate']})"
                phones[key] = Device(key, "phone", r["format"], f"attached phone {p['device']}, {p['delegate']}")
                figures[key] = Figure(p["mean_ms"], f"measured on phone {p['device']} (mean, benchmark_model)", True)
        candidates.append(Candidate(r["artifact"], r["format"], r["precision"], r["passed"], r.get("size_bytes", 0), figures))
    devices = [Device(host_key(f, t), "host", f, f"this host: {rt}, {t} threads" if rt else f"this host, {t} threads")
               for (f, t), rt in sorted(host_runtime.items())]
    devices += [Device(p.name, "profile", p.runtime, f"{p.device}, {p.unit.upper()}") for p in profiles]
    devices += [phones[k] for k in sorted(phones)]
    return recommend(candidates, devices)
