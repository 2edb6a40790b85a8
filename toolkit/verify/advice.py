"""What to change in the recipe when an artifact fails its gate: one paste-able target line, and what the culprit
analysis predicts it does.

1. The options: keep the worst 1, 2, 4 or 8 layers float (where the format can keep layers float at this
   precision), or move to one of the format's nearby higher precisions (``toolkit.verify.culprit.higher_precisions``).
   Each is a whole ``targets[]`` entry, checked as part of the recipe (a precision change drops the options that no
   longer apply, e.g. ``group_size`` off a palettization); an option that would give the recipe a target it already has
   is left out.
2. The prediction: the culprit analysis ran each option on its compressed twin (``locate(whatif=True)``) and gives
   the network output's SQNR against float. The change against the twin's own SQNR is applied to what the gate
   measured on the artifact: a cosine's noise-to-signal ratio (1/cos² − 1) and a max abs error's amplitude scale
   with it. A criterion is predicted to pass only with 3 dB to spare (``borderline`` where it passes without): on the
   reference MobileNetV2 the simulated output SQNR comes within about 6 dB of the artifact later built (a different
   weight storage, rounded from the float weights, is the least exact). Criteria on task metrics (a drop, an
   agreement, a skin-tone group) are not predicted, only named.
3. The choice: the fewest layers kept float predicted to pass, else the nearest precision predicted to pass, else the
   option predicted to help most (said so). Where the gate failed only on task metrics, an option must add at least
   6 dB (one bit) of output SQNR to be offered first. Without a culprit analysis (``evaluation.culprits: off``) the
   nearest precision is offered, unpredicted, and for a target that can keep layers float, ``keep_float: auto`` (the
   export then searches the layers against the gate itself).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toolkit.convert.base import Artifact
    from toolkit.recipe import Recipe, Target
    from toolkit.registry import ModelSpec

PREDICTED = ("cosine vs float", "max abs error vs float")  # criteria the output's SQNR change predicts
STRUCTURAL_OK = ("outputs finite",)  # output criteria a precision change can address (overflow to Inf/NaN in float16)
WORTH_DB = 6.0  # an option offered first where only task metrics failed: one bit of output SQNR, at least
SAFETY_DB = 3.0  # a prediction passes with this much to spare: the simulation comes within about 6 dB of the artifact


def advise(recipe: Recipe, spec: ModelSpec, artifact: Artifact, result: dict) -> dict | None:
    """The recipe change for an artifact that failed its gate (``result``: the gate's, with its culprits where they
    ran), or None where it passed, its target is not in the recipe or no precision or layer change addresses what
    failed (a structural check, an artifact that did not execute)."""
    from toolkit.convert.stage import target_of

    if result.get("passed", True):
        return None
    target = target_of(recipe, spec, artifact)
    if target is None:
        return None
    failed = [c for c in result.get("criteria", []) if not c["passed"]]
    predicted = [c for c in failed if c["name"].startswith(PREDICTED)]
    quality = [c for c in failed if _is_quality(c, result)]
    nonfinite = [c for c in failed if c["name"].startswith(STRUCTURAL_OK)]
    if not (predicted or quality or nonfinite):
        return None
    culprits = result.get("culprits") or {}
    whatif = culprits.get("whatif")
    options = _options(recipe, target, artifact, whatif, twin_db=(whatif or {}).get("twin_output_sqnr_db"), failed=predicted)
    if not options:
        return None
    primary = _choose(options, need=bool(predicted))
    others = [o for o in options if o is not primary]
    alternatives = []
    for kind in ("keep_float", "precision", "search"):  # the best of each other kind of change
        pick = _choose([o for o in others if o["kind"] == kind], need=bool(predicted)) if kind != primary["kind"] else None
        if pick is not None:
            alternatives.append(pick)
    old = target_dict(target)
    advice = {
        "artifact": artifact.filename, "target": target.key, "replace": old, "replace_yaml": flow_yaml(old),
        **_public(primary),
        "not_predicted": [c["name"] for c in failed if c not in predicted and c not in nonfinite],
        "basis": (f"culprit analysis, simulated on {whatif['images']} images: the twin's output SQNR change applied to what "
                  "the gate measured" if whatif else
                  "not predicted: no culprit analysis ran its what-ifs (evaluation.culprits: off, or it failed)"),
        "alternatives": [_public(o) for o in alternatives[:2]],
    }
    return advice


def _is_quality(c: dict, result: dict) -> bool:
    """A task-metric criterion: a drop, an agreement, a skin-tone group (not predicted, but what higher fidelity helps)."""
    return "metrics" in result and not c["name"].startswith(PREDICTED) and (
        " drop vs " in c["name"] or "agreement" in c["name"] or c["name"].startswith("worst skin-tone group"))


def _public(option: dict) -> dict:
    return {k: v for k, v in option.items() if k not in ("target", "delta_db")}


def _options(recipe: Recipe, target: Target, artifact: Artifact, whatif: dict | None, *, twin_db: float | None,
             failed: list[dict]) -> list[dict]:
    """Every change to the target the analysis can speak for, each a valid recipe; in order of preference."""
    from toolkit.verify.culprit import higher_precisions, keeps_float

    fmt, precision = artifact.format, artifact.precision
    candidates: list[tuple[str, dict, dict]] = []  # kind, changed fields, what the analysis says of it
    kept = list(target.keep_float) if isinstance(target.keep_float, tuple) else []
    if whatif:
        for w in whatif.get("keep_float", []):
            if target.keep_float == "auto":
                continue
            layers = kept + [n for n in w["layers"] if n not in kept]
            candidates.append(("keep_float", {"keep_float": layers}, {"layers": w["layers"], "output_sqnr_db": w["output_sqnr_db"]}))
        for w in whatif.get("precisions", []):
            candidates.append(("precision", {"precision": w["precision"]}, {"output_sqnr_db": w["output_sqnr_db"], "simulated": w["simulated"]}))
    else:
        above = higher_precisions(fmt, precision)
        for p in above[:1] + [p for p in ("fp16", "fp32") if p in above[1:]][:1]:
            candidates.append(("precision", {"precision": p}, {}))
    if keeps_float(fmt, precision) and target.keep_float != "auto":
        candidates.append(("search", {"keep_float": "auto"}, {}))

    options = []
    for kind, change, said in candidates:
        new = _changed(recipe, target, change)
        if new is None:
            continue
        delta = None if twin_db is None or "output_sqnr_db" not in said else round(said["output_sqnr_db"] - twin_db, 2)
        new_dict = target_dict(new)
        option = {"kind": kind, "target": new, "with": new_dict, "with_yaml": flow_yaml(new_dict), "change": _describe(kind, change, said, precision),
                  "delta_db": delta}
        if delta is not None:
            option["output_sqnr_db"] = [twin_db, said["output_sqnr_db"]]
            option["simulated"] = said.get("simulated", "the listed layers' float weights, their outputs not quantized")
            option["criteria"] = [_predict(c, delta) for c in failed]
            option["meets"] = all(p["passes"] for p in option["criteria"]) if failed else None
        options.append(option)
    return options


def _describe(kind: str, change: dict, said: dict, precision: str) -> str:
    if kind == "keep_float":
        layers = said["layers"]
        return f"keep {len(layers)} layer{'s' if len(layers) > 1 else ''} float ({', '.join(layers)})"
    if kind == "search":
        return "keep_float: auto (the export searches the fewest layers to keep float that pass the gate)"
    return f"precision {change['precision']} instead of {precision}"


def _changed(recipe: Recipe, target: Target, change: dict) -> Target | None:
    """``target`` with ``change``, dropping options the new precision does not take; None where the recipe would not
    accept it (e.g. it already has that target)."""
    from pydantic import ValidationError

    from toolkit.recipe import Recipe, Target

    fields = {**target_dict(target), **change}
    new = None
    for drop in ((), ("keep_float", "keep_float_max"), ("group_size",), ("keep_float", "keep_float_max", "group_size")):
        try:
            new = Target.model_validate({k: v for k, v in fields.items() if k not in drop or k in change})
            break
        except ValidationError:
            continue
    if new is None or new.key == target.key and new == target:
        return None
    targets = [new if t is target else t for t in recipe.targets]
    try:
        Recipe.model_validate({**recipe.model_dump(), "targets": [target_dict(t) for t in targets]})
    except ValidationError:
        return None
    return new


def _choose(options: list[dict], *, need: bool) -> dict | None:
    """The option to offer first: the first predicted to pass (``need``: a predicted criterion failed); else the first
    adding ``WORTH_DB``; else the one predicted to help most; unpredicted options in their order."""
    if not options:
        return None
    predicted = [o for o in options if o["delta_db"] is not None]
    if not predicted:
        return options[0]
    if need:
        passing = [o for o in predicted if o["meets"]]
        if passing:
            return passing[0]
    else:
        worth = [o for o in predicted if o["delta_db"] >= WORTH_DB]
        if worth:
            return worth[0]
    return max(predicted, key=lambda o: o["delta_db"])


def _predict(c: dict, delta_db: float) -> dict:
    """A numeric criterion's value with the output noise ``delta_db`` lower (cosine: noise-to-signal 1/cos² − 1);
    ``passes`` only with ``SAFETY_DB`` to spare (the simulation's error), ``borderline`` where it passes without."""

    def at(db: float) -> float:
        v = c["value"]
        if c["name"].startswith("cosine"):
            nsr = 1 / v**2 - 1 if 0 < v < 1 else 0.0
            return 1 / math.sqrt(1 + max(nsr, 0.0) * 10 ** (-db / 10)) if v > 0 else v
        return v * 10 ** (-db / 20)

    def ok(value: float) -> bool:
        return bool(value <= c["bound"] if c["op"] == "<=" else value >= c["bound"])

    new = at(delta_db)
    return {"name": c["name"], "value": c["value"], "predicted": new, "op": c["op"], "bound": c["bound"],
            "passes": ok(at(delta_db - SAFETY_DB)), "borderline": ok(new) and not ok(at(delta_db - SAFETY_DB))}


def target_dict(target: Target) -> dict:
    """A target as a recipe writes it: format and precision, then what differs from the defaults."""
    rest = target.model_dump(mode="json", exclude_defaults=True)
    return {"format": target.format, "precision": target.precision,
            **{k: v for k, v in rest.items() if k not in ("format", "precision", "tolerance")},
            **({"tolerance": rest["tolerance"]} if "tolerance" in rest else {})}


def flow_yaml(value: dict) -> str:
    """``value`` as one YAML line, a ``targets[]`` entry: ``- {format: tflite, precision: int8, ...}``."""
    import yaml

    return "- " + yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=2**20).strip()


def apply(recipe_data: dict, advice: dict) -> dict:
    """``recipe_data`` (a recipe as read from YAML) with the advised target in place of the failing one."""
    from toolkit.recipe import Target

    targets = list(recipe_data["targets"])
    keys = [Target.model_validate(t).key for t in targets]
    i = keys.index(advice["target"])
    targets[i] = advice["with"]
    return {**recipe_data, "targets": targets}


def _fmt(v: float) -> str:
    return f"{v:.6f}" if abs(v) < 1.5 and v > 0.9 else f"{v:.4g}"


def prediction_text(option: dict) -> str:
    """What the analysis predicts of an option, in one line."""
    if "output_sqnr_db" not in option:
        return "not predicted"
    before, after = option["output_sqnr_db"]
    parts = [f"output SQNR {before:g} → {after:g} dB ({after - before:+.1f})"]
    parts += [f"{p['name']} {_fmt(p['value'])} → {_fmt(p['predicted'])} (required {p['op']} {p['bound']:g}): "
              f"{'pass' if p['passes'] else 'borderline' if p.get('borderline') else 'still fails'}" for p in option.get("criteria", [])]
    return "; ".join(parts)


def advice_lines(advice: dict, path: str | None = None) -> list[str]:
    """The advice as text: the target line to replace and the one to paste, what is predicted, the alternatives."""
    lines = [f"{path or advice['artifact']}: {advice['change']}",
             "  in the recipe's targets, replace",
             f"    {advice['replace_yaml']}",
             "  with",
             f"    {advice['with_yaml']}"]
    if "output_sqnr_db" in advice:
        lines.append(f"  predicted ({advice['basis']}): {prediction_text(advice)}")
        if advice.get("meets") is False:
            lines.append("  no option the analysis ran is predicted to pass every criterion: this one helps most")
    else:
        lines.append(f"  {advice['basis']}")
    if advice.get("not_predicted"):
        lines.append(f"  not predicted (re-export to confirm): {'; '.join(advice['not_predicted'])}")
    for alt in advice.get("alternatives", []):
        lines.append(f"  or {alt['change']}" + (f" (predicted: {prediction_text(alt)})" if "output_sqnr_db" in alt else ""))
        lines.append(f"    {alt['with_yaml']}")
    return lines


def advice_block(advised: list[tuple[str, dict]]) -> list[str]:
    """What a failing gate prints first: every artifact's advised change (``(path, advice)`` pairs), paste-able."""
    if not advised:
        return []
    lines = [f"suggested recipe change{'s' if len(advised) > 1 else ''} (paste into the recipe's targets, then export again):"]
    for path, advice in advised:
        lines += [f"  {line}" for line in advice_lines(advice, path)]
    return lines


def manifest_advice(manifest: dict) -> list[tuple[str, dict]]:
    """``(path, advice)`` of every artifact a bundle's manifest advises a change for."""
    return [(a["path"], a["verification"]["advice"]) for a in manifest.get("artifacts", [])
            if isinstance(a, dict) and (a.get("verification") or {}).get("advice")]
