"""Stage 4, verify: every artifact against the float model on the evaluation set; the gate. A compressed
model is also compared with the uncompressed original (its pruning budget), as part of this stage's
record, never by rewriting compression's report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from toolkit import progress
from toolkit.convert.stage import Converted, MixedPrecisionSearch
from toolkit.errors import VerificationError
from toolkit.verify.evaluation import EvaluationSet
from toolkit.verify.outputs import EvaluationOutputs, counted_runner

if TYPE_CHECKING:
    from toolkit.backends.base import Runner
    from toolkit.compress.mixed import Probe
    from toolkit.compress.stage import Compressed
    from toolkit.context import Context
    from toolkit.convert.base import Artifact
    from toolkit.convert.stage import FailedTarget
    from toolkit.data.records import TaskData
    from toolkit.recipe import Recipe, Target
    from toolkit.registry import ModelSpec, Tolerance


@dataclass(frozen=True)
class Verified:
    converted: Converted
    evaluation: EvaluationSet
    results: dict[str, dict]  # artifact file name -> the gate's result, as the manifest records it
    runners: dict[str, Runner]  # artifact file name -> its runner, built once (benchmark reuses them)
    skin_tone: dict  # how the evaluation images were grouped by skin tone
    against_original: dict | None  # a compressed model's float metrics against the original's; None uncompressed

    @property
    def failed(self) -> tuple[FailedTarget, ...]:
        """The recipe targets that did not convert: nothing of theirs to verify."""
        return self.converted.failed


def run(context: Context, converted: Converted, *, evaluation: EvaluationSet, outputs: EvaluationOutputs | None = None) -> Verified:
    """``outputs``: the export's artifacts' outputs on the evaluation images, started during conversion or cached
    (``toolkit.verify.outputs``); without it every artifact runs here."""
    from toolkit._io import captured

    ev = context.recipe.evaluation
    compressed = converted.compressed
    results, runners = {}, {}
    for a in converted.artifacts:
        with progress.step("verify", a.filename, total=len(evaluation.x), unit="images") as step:
            origin, runner = None, None
            try:
                with captured(context.log_path):
                    if outputs is None:
                        runner = make_runner(context, a)
                    else:
                        runner, origin = outputs.runner(a, lambda a=a: _quiet_runner(context, a))
                runners[a.filename] = runner
                res = gate(context, compressed, a, counted_runner(runner, step), evaluation)
            except VerificationError as exc:  # could not execute it: a failed check, never a pass
                res = {"check": "not executed", "passed": False, "error": exc.one_line(),
                       "criteria": [{"name": "artifact executes", "value": exc.cause, "bound": True, "op": "==", "passed": False}]}
            if origin:
                res["outputs"] = origin
            if hasattr(runner, "release"):  # built again when the benchmark times it
                runner.release()
            if "metrics" in res and (ev.culprits == "all" or (ev.culprits == "failed" and not res["passed"])):
                res["culprits"] = _culprits(context, compressed, a, evaluation.data, whatif=not res["passed"])
            if not res["passed"]:
                res.update(_advice(context, compressed, a, res))
            results[a.filename] = res
            step.finish(_verdict_line(res))
    return Verified(converted=converted, evaluation=evaluation, results=results, runners=runners,
                    skin_tone=skin_tone_summary(evaluation.tone, evaluation.data),
                    against_original=against_original(context, compressed, evaluation))


def _verdict_line(res: dict) -> str:
    """An artifact's gate result in a few words, for its progress line."""
    tm = res.get("task_metric")
    figure = f"{tm['name']} drop {tm['drop']:+.4f}" if tm else res.get("check", "")
    return f"{'passed' if res['passed'] else 'FAILED'}" + (f", {figure}" if figure else "")


def make_runner(context: Context, artifact: Artifact) -> Runner:
    from toolkit.backends import get_backend

    inp = context.recipe.input
    if context.runner_factory is not None:
        return context.runner_factory(artifact, threads=context.recipe.benchmark.threads, layout=inp.layout,
                                      pixel_range=inp.pixel_range)
    return get_backend(artifact.format).runner(artifact.path, threads=context.recipe.benchmark.threads, layout=inp.layout,
                                               pixel_range=inp.pixel_range)


def _quiet_runner(context: Context, artifact: Artifact) -> Runner:
    """``make_runner``, the runtime's loading chatter sent to the export's log."""
    from toolkit._io import captured

    with captured(context.log_path):
        return make_runner(context, artifact)


def gate(context: Context, compressed: Compressed, artifact: Artifact, runner: Runner, evaluation: EvaluationSet,
         target: Target | None = None) -> dict:
    """The gate on one artifact: its precision tier's tolerance with the recipe's overrides (the tier's,
    then the target's own; the target is found from the artifact's file name unless given)."""
    from toolkit.convert.stage import target_of
    from toolkit.verify.gate import verify_artifact

    recipe, spec, g = context.recipe, compressed.spec, evaluation
    target = target or target_of(recipe, spec, artifact)
    tol, judged = tolerance_of(recipe, spec, artifact.precision, target)
    ev = recipe.evaluation
    res = verify_artifact(artifact, runner, spec=spec, data=g.data, x=g.x, ref=g.reference, tolerance=tol,
                          layout=recipe.input.layout, tone=g.tone, boot=g.boot, noninferiority=judged,
                          min_group_size=ev.min_group_size)
    res["tolerance"] = {**{k: v for k, v in tol.__dict__.items() if v not in (None, {})}, "noninferiority": judged}
    return res


def tolerance_of(recipe: Recipe, spec: ModelSpec, precision: str, target: Target | None) -> tuple[Tolerance, str]:
    """What an artifact of ``precision`` built for ``target`` is judged by: its tier's tolerance with the recipe's
    overrides (``tolerances.<precision>``, then the target's own), and how drops are judged ('ci' or 'point')."""
    from toolkit.verify.gate import resolve_tolerance

    overrides = (recipe.tolerances.get(precision), target.tolerance if target is not None else None)
    judged = next((o.noninferiority for o in reversed(overrides) if o is not None and o.noninferiority),
                  recipe.evaluation.noninferiority)
    return resolve_tolerance(spec, precision, *overrides), judged


def mixed_precision_search(context: Context, compressed: Compressed, evaluation: EvaluationSet) -> MixedPrecisionSearch:
    """How the convert stage ranks layers and judges each probe of a ``keep_float: auto`` target: the
    culprit finder's ranking and this stage's gate on the evaluation set."""
    from toolkit.compress.mixed import Probe
    from toolkit.convert.base import tree_size
    from toolkit.verify.culprit import locate
    from toolkit.verify.gate import failed_criteria

    images = evaluation.data.inputs[:context.recipe.evaluation.culprit_images]

    def rank(artifact: Artifact) -> list[str]:
        ranked = locate(compressed.model, images, compressed.spec, fmt=artifact.format, path=artifact.path,
                        precision=artifact.precision)["ranking"]
        return [r["layer"] for r in ranked if r.get("artifact_tensor")]

    def probe(artifact: Artifact, target: Target, keep: tuple[str, ...]) -> Probe:
        res = gate(context, compressed, artifact, make_runner(context, artifact), evaluation, target)
        return Probe(keep=keep, passed=res["passed"], failed=tuple(failed_criteria(f"keep {len(keep)}", res["criteria"])),
                     size_bytes=tree_size(artifact.path), loss=(res.get("task_metric") or {}).get("drop"))

    return MixedPrecisionSearch(rank=rank, probe=probe)


def against_original(context: Context, compressed: Compressed, evaluation: EvaluationSet) -> dict | None:
    """For a compressed model, its float metrics against the uncompressed original's on the evaluation
    set: artifacts are gated against the compressed float model, so this is the cost of compression."""
    from toolkit.load.contract import DeviceContract
    from toolkit.load.stage import input_contract
    from toolkit.tasks import headline
    from toolkit.verify.gate import (
        by_group,
        compare_outputs,
        drop_criterion,
        reference_outputs,
        worst_group_criterion,
    )

    if compressed.report is None:
        return None
    key = headline(compressed.spec)
    recipe, spec, g = context.recipe, compressed.spec, evaluation
    layout, ev = recipe.input.layout, recipe.evaluation
    original = DeviceContract(compressed.loaded.module, spec, input_contract(recipe)).eval()
    before = reference_outputs(original, g.x)
    rows = compare_outputs(spec, g.reference, before, g.data.targets, g.boot, layout)
    groups = by_group(spec, g.reference, before, g.data.targets, g.tone, g.boot, layout=layout, probabilities=False)
    p = recipe.compress.pruning
    criteria = [c for c in (
        drop_criterion(key, rows[key], p.max_metric_drop, ev.noninferiority, versus="original float"),
        worst_group_criterion(key, groups, p.max_group_drop, ev.min_group_size, versus="original float"),
    ) if c is not None] if p is not None else []
    return {"metric": key, **rows[key],
            "by_group": {k: {"n": v["n"], **v["metrics"][key]} for k, v in groups.items()},
            "criteria": criteria, "passed": all(c["passed"] for c in criteria)}


def compression_record(report: dict | None, against_original: dict | None) -> dict | None:
    """The manifest's compression section: what compression changed, and its cost against the original."""
    return None if report is None else {**report, "against_original": against_original}


def pruning_criteria(compression: dict | None) -> list[dict]:
    """The pruning budget's criteria in a manifest's compression section; none without a budget."""
    return ((compression or {}).get("against_original") or {}).get("criteria", [])


def compression_passed(compression: dict | None) -> bool:
    """Whether the compressed float model stayed within the recipe's pruning budget (true without one)."""
    return all(c["passed"] for c in pruning_criteria(compression))


def _culprits(context: Context, compressed: Compressed, artifact: Artifact, data: TaskData, *, whatif: bool = False) -> dict:
    """Which layers the artifact degrades (``whatif``: and what keeping them float or a higher precision would do);
    a diagnosis, so its own failure is reported, not raised."""
    from toolkit._io import captured
    from toolkit.verify.culprit import locate

    try:
        with captured(context.log_path):
            return locate(compressed.model, data.inputs[:context.recipe.evaluation.culprit_images], compressed.spec,
                          fmt=artifact.format, path=artifact.path, precision=artifact.precision, whatif=whatif,
                          output_transform=artifact.details.get("output_transform"))
    except Exception as exc:  # noqa: BLE001 — recorded in the report next to the gate's verdict
        return {"error": f"culprit localisation failed: {type(exc).__name__}: {exc}"}


def _advice(context: Context, compressed: Compressed, artifact: Artifact, result: dict) -> dict:
    """``{"advice": ...}``: the recipe change for a failing artifact (``toolkit.verify.advice``), where there is one;
    advice, so its own failure is recorded (``advice_error``), never raised."""
    from toolkit.verify.advice import advise

    try:
        advice = advise(context.recipe, compressed.spec, artifact, result)
    except Exception as exc:  # noqa: BLE001 — the gate's verdict stands without it
        return {"advice_error": f"{type(exc).__name__}: {exc}"}
    return {"advice": advice} if advice else {}


def skin_tone_summary(tone, data: TaskData) -> dict:
    """How the evaluation images were grouped by skin tone, and how that compares with any annotation."""
    from toolkit.data.skin_tone import GROUP_ORDER, agreement_with_annotation

    return {"method": f"ITA° from {tone.method} (CIELab, OpenCV), six Fitzpatrick-proxy bins",
            "groups": {g: tone.groups.count(g) for g in GROUP_ORDER if g in tone.groups},
            "ita": [round(float(v), 3) for v in tone.ita],
            "versus_annotation": agreement_with_annotation(tone, data.ita, data.groups)}

