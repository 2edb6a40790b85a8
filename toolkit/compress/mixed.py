"""Automatic mixed precision: the fewest layers kept in float so that a quantized artifact meets its gate.

1. Rank the layers by the noise each adds in the plainly quantized artifact (the culprit finder's local
   SQNR: ``toolkit.verify.culprit``), worst first.
2. Keep the worst k in float, re-quantize, and run the gate (every criterion of the target's tolerance
   tier, including a worst skin-tone group bound where the recipe sets one) on the evaluation set.
3. Search k: 0, then the cap (if even that fails, the budget is out of reach and the search stops), then
   1, 2, 4, … until the gate holds, then bisect between the last failing and the first passing k.
   Quantization error grows as layers are quantized, so the first k that passes along the ranking is the
   one kept; every probe is recorded.
4. When the cap fails and has barely reduced the headline loss, the loss is not in the weighted layers
   but in quantized activations of ops without weights (additions, resizes, the output): the result says
   so, and that int16 activations address it.

Choosing layers on the evaluation set and then gating on it favours the artifact a little; the result
says so, and an independent ``skinkit verify --data`` run is the unbiased check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Probe:
    keep: tuple[str, ...]
    passed: bool
    failed: tuple[str, ...]  # the criteria that did not hold
    size_bytes: int
    loss: float | None = None  # the headline metric's drop against float (positive = worse)


def search_keep_float(ranking: list[str], evaluate: Callable[[tuple[str, ...]], Probe], *, max_layers: int) -> dict:
    """The fewest leading layers of ``ranking`` to keep float so ``evaluate`` passes."""
    probes: dict[int, Probe] = {}

    def probe(k: int) -> Probe:
        if k not in probes:
            probes[k] = evaluate(tuple(ranking[:k]))
        return probes[k]

    cap = min(max_layers, len(ranking))
    if probe(0).passed:
        return _result(0, probes, ranking, cap)
    if cap == 0 or not probe(cap).passed:
        return _result(None, probes, ranking, cap)
    lo, k = 0, 1  # lo: largest k known to fail
    while k < cap and not probe(k).passed:
        lo, k = k, k * 2
    hi = min(k, cap)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid).passed:
            hi = mid
        else:
            lo = mid
    return _result(hi, probes, ranking, cap)


def _result(k: int | None, probes: dict[int, Probe], ranking: list[str], cap: int) -> dict:
    diagnosis = None
    first, last = probes.get(0), probes.get(cap)
    losses = (first.loss, last.loss) if first and last else (None, None)
    if k is None and None not in losses and losses[0] > 0 and losses[1] > 0.5 * losses[0]:
        diagnosis = (f"keeping the {cap} noisiest weighted layers float removed {max(0.0, 1 - last.loss / first.loss):.0%} of the "
                     f"headline loss ({first.loss:.4g} → {last.loss:.4g}): it comes from quantized activations of ops without "
                     "weights (additions, resizes, the output); int16 activations (precision: int16x8) address those")
    return {
        "kept_float": list(ranking[:k]) if k is not None else None,
        "met": k is not None,
        "searched_up_to": cap,
        "probes": [{"k": n, "passed": p.passed, "size_bytes": p.size_bytes, "loss": p.loss, "failed": list(p.failed)}
                   for n, p in sorted(probes.items())],
        **({"diagnosis": diagnosis} if diagnosis else {}),
        "note": "layers chosen on the evaluation set the gate then uses; verify on other data (`skinkit verify --data`) for an unbiased check",
    }
