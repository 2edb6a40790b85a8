"""``skinkit export`` of an assessment recipe: several models, the glue between them, one bundle. Steps, in order:

1. load     — every component's float model; the chain's links checked (kinds, shapes) before anything converts
2. export   — each component as its own verified bundle (``components/<name>/``: its artifacts, its gate)
3. float    — the float chain on held-out photos: components' float models, glue in NumPy
4. chains   — per variant (a target key every component has), the device chain run as an app runs it: each
              component's artifact through its runtime, the same glue; judged against the float chain
              (task metrics with paired CIs, skin-tone groups), and the loss each component's artifact causes
5. fused    — one graph of the whole chain per fused target (when its glue is tensor arithmetic), judged the same way
6. bundle   — the pipeline manifest (glue contract, JSON Schema'd), report.md, app code; renamed into place atomically
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.chain.graph import ChainGraph, ComponentIO, build, component_io, execute, fused_module
from toolkit.chain.judge import ChainData, chain_data, judge_chain, tier_of
from toolkit.chain.recipe import ChainRecipe
from toolkit.errors import IncompleteBundle, SkinkitError, VerificationError, VerificationFailed
from toolkit.progress import ProgressCallback, reporting, step


class _Parts:
    """The assessment's progress from its numbered lines: a part (``1/6 load: …``) is a step that ends when the next
    part starts, an item in it (``    acne …``: a component, a device chain) one that ends when the next line comes.
    ``console``, when given, also prints each line."""

    def __init__(self, console=None):
        self.console, self.part, self.item = console, None, None

    def __call__(self, text: str) -> None:
        if self.console:
            self.console.print(text)
        plain = re.sub(r"\[/?bold\]", "", text).removesuffix(" …")
        self._end("item")
        if text.startswith(" "):
            self.item = self._start(plain.strip(), "")
        else:
            self._end("part")
            name, _, what = plain.partition(": ")
            self.part = self._start(name, what)

    def close(self) -> None:
        self._end("item")
        self._end("part")

    @staticmethod
    def _start(name: str, message: str):
        block = step("assessment", name, message=message)
        block.__enter__()
        return block

    def _end(self, level: str) -> None:
        block = getattr(self, level)
        if block is not None:
            block.__exit__(None, None, None)
            setattr(self, level, None)


@dataclass(frozen=True)
class Component:
    name: str
    compressed: object  # toolkit.compress.stage.Compressed: the float reference
    io: ComponentIO


def load_components(recipe: ChainRecipe, recipe_path: Path, log_path: Path) -> dict[str, Component]:
    """Step 1: each component's float model (load and compress, as its own export does)."""
    from toolkit.compress import stage as compress
    from toolkit.context import Context
    from toolkit.load import stage as load

    out = {}
    for name, r in recipe.components.items():
        context = Context(recipe=r, recipe_path=recipe_path.resolve(), staging=Path(tempfile.gettempdir()), log_path=log_path)
        compressed = compress.run(context, load.run(context, r.model))
        out[name] = Component(name, compressed, component_io(compressed.wrapped, compressed.spec,
                                                                      r.input.layout, r.input.pixel_range))
    return out


def float_call(components: dict[str, Component]):
    """Each component's float model, fed the chain's pictures (NHWC, 0–255): its outputs channel-first."""
    from toolkit.load.contract import DeviceContract, InputContract
    from toolkit.verify.gate import reference_outputs, to_nchw

    wrappers = {k: DeviceContract(c.compressed.model, c.compressed.spec, InputContract()) for k, c in components.items()}

    def call(name: str, x: np.ndarray) -> dict[str, np.ndarray]:
        return to_nchw(reference_outputs(wrappers[name], np.ascontiguousarray(x, dtype=np.float32)), "nhwc")

    return call, wrappers


def device_call(runners: dict, ios: dict[str, ComponentIO], fallback=None):
    """Each component's artifact (``runners``; components without one use ``fallback``), fed as its contract says."""
    from toolkit.backends.base import run_checked
    from toolkit.verify.gate import to_nchw

    def call(name: str, x: np.ndarray) -> dict[str, np.ndarray]:
        if name not in runners:
            return fallback(name, x)
        io = ios[name]
        x = x.astype(np.float32) / (255.0 if io.pixel_range == "0-1" else 1.0)
        if io.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        out = run_checked(runners[name], np.ascontiguousarray(x), f"component {name}",  # fails: the chain is not verified
                          fix="drop that target from the component, or keep the failing layers float (targets[].keep_float)")
        return to_nchw(out, io.layout)

    return call


def run_chain(graph: ChainGraph, data: ChainData, call, batch: int = 25) -> dict[str, np.ndarray]:
    """Every value of the chain over the data, in batches."""
    parts = [execute(graph, data.images[i:i + batch].astype(np.float32), call) for i in range(0, len(data), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def export_chain(recipe: ChainRecipe, *, recipe_path: Path, out_dir: Path, force: bool = False, console=None,
                 progress: ProgressCallback | None = None) -> dict:
    """Every step into a staging folder renamed to ``out_dir/<recipe.name>``; returns the manifest.

    ``progress``: called with a ``toolkit.progress.ProgressEvent`` as each part (``assessment``), each component's
    export stages and each device chain advance (default: the caller's ``toolkit.progress.reporting``);
    ``console``: a ``rich`` console that also gets one line per part.

    Raises ``BadInputError`` (a link that does not connect: nothing written), ``ConversionError`` (a component
    converted nothing), ``VerificationFailed`` (bundle written; a component's or a chain's gate failed) or
    ``IncompleteBundle`` (bundle written; some targets did not convert, everything else passes)."""
    from toolkit.bundle.writer import commit_bundle, staged_bundle
    from toolkit.chain.bundle import write_bundle
    from toolkit.pipeline import export
    from toolkit.verify.bundle import read_manifest
    from toolkit.verify.stats import Bootstrap

    if progress is not None:
        with reporting(progress):
            return export_chain(recipe, recipe_path=recipe_path, out_dir=out_dir, force=force, console=console)
    say = _Parts(console)
    final = out_dir / recipe.name
    with staged_bundle(out_dir, recipe.name, force=force) as staging:  # locked: one export of this bundle at a time
        fd, log_name = tempfile.mkstemp(prefix=f"skinkit-{recipe.name}-", suffix=".log")
        os.close(fd)
        t0 = time.perf_counter()
        try:
            say(f"[bold]1/6[/bold] load: {len(recipe.components)} components; every link of the chain, its outputs' metrics "
                "and truths checked on the float chain …")
            components = load_components(recipe, recipe_path, Path(log_name))
            graph = build(recipe, {k: c.io for k, c in components.items()})
            chain_keys(recipe)
            if recipe.fused and not graph.fusable:
                from toolkit.glue import GlueError

                raise GlueError(f"fused targets need a chain of tensor ops, but {', '.join(graph.host_only())} run on the host only",
                                fix="drop fused: (the components still ship with the glue contract), or replace those steps")

            ev = recipe.evaluation
            data = chain_data(ev.n, recipe.input.size, seed=ev.seed)
            fcall, wrappers = float_call(components)
            floats = run_chain(graph, data, fcall)
            check_judging(recipe, graph, floats, data)

            say("[bold]2/6[/bold] export: each component as its own verified bundle …")
            comp_results = {}
            for name, r in recipe.components.items():
                say(f"    {name} ({r.model.name}) …")
                problem = None
                try:
                    export(r, recipe_path=recipe_path, out_dir=staging / "components", force=True)
                except (VerificationFailed, IncompleteBundle) as exc:  # the bundle is written: judged below, listed in the verdict
                    problem = exc.one_line()
                comp_results[name] = {"manifest": read_manifest(staging / "components" / name), "problem": problem}

            say(f"[bold]3/6[/bold] float chain on {ev.n} held-out photos (run in step 1) …")
            boot = Bootstrap.draw(len(data), replicates=ev.bootstrap, seed=ev.seed)

            say("[bold]4/6[/bold] device chains, run as an app runs them …")
            manifests = {k: v["manifest"] for k, v in comp_results.items()}
            variants = judge_variants(recipe, manifests, staging, components, graph, data, floats, fcall, boot, say)

            say("[bold]5/6[/bold] fused graphs …")
            fused = _fused(recipe, graph, wrappers, data, floats, boot, staging, Path(log_name), say)

            say("[bold]6/6[/bold] bundle: manifest, report, app code …")
            manifest = write_bundle(staging, recipe, recipe_path, graph, components, comp_results, variants, fused, data,
                                    seconds=time.perf_counter() - t0)
            commit_bundle(staging, final, force=force)
            say.close()
        finally:
            Path(log_name).unlink(missing_ok=True)
    _raise_verdict(manifest, final)
    return manifest


def judge_variants(recipe, manifests: dict[str, dict], root: Path, components, graph, data, floats, fcall, boot, say) -> list[dict]:
    """Step 4: per variant, the chain with every component's artifact of that key (in ``root/components/<name>``),
    judged against the float chain; and the chain with one component's artifact at a time (loss by component)."""
    from toolkit.backends import get_backend
    from toolkit.convert.base import artifact_key

    by_key: dict[str, dict[str, dict]] = {}
    for name, m in manifests.items():
        for a in m["artifacts"]:
            by_key.setdefault(artifact_key(a, m["model"]["name"]), {})[name] = a
    ios = {k: c.io for k, c in components.items()}
    out = []
    for key in chain_keys(recipe):
        entries = by_key.get(key, {})
        if len(entries) < len(components):  # a component's target did not convert: this chain cannot run
            missing = [n for n in components if n not in entries]
            tier = tier_of([t.precision for r in recipe.components.values() for t in r.targets if t.key == key])
            out.append({"key": key, "tier": tier,
                        "artifacts": {n: f"components/{n}/{a['path']}" for n, a in entries.items()}, "components_passed": False,
                        "verification": {"passed": False, "tier": None, "outputs": {}, "criteria": [
                            {"name": "every component's artifact converted", "value": f"missing: {', '.join(missing)}",
                             "bound": "none missing", "op": "==", "passed": False}]},
                        "loss_by_component": {}, "seconds": 0.0})
            continue
        say(f"    {key} …")
        tier = tier_of([a["precision"] for a in entries.values()])
        base = {"key": key, "tier": tier, "artifacts": {n: f"components/{n}/{a['path']}" for n, a in entries.items()},
                "components_passed": all(a["verification"]["passed"] for a in entries.values())}
        try:
            runners = {}
            for name, a in entries.items():
                inp = manifests[name]["input"]
                runners[name] = get_backend(a["format"]).runner(root / "components" / name / a["path"], layout=inp["layout"].lower(),
                                                                 pixel_range="0-255" if inp["range"][1] == 255 else "0-1")
            t0 = time.perf_counter()
            device = run_chain(graph, data, device_call(runners, ios))
            seconds = time.perf_counter() - t0
        except VerificationError as exc:  # an artifact that cannot run here: the chain is recorded as not verified
            out.append({**base, "verification": not_executed(exc), "loss_by_component": {}, "seconds": 0.0})
            continue
        verdict = judge_chain(recipe, graph, device, floats, data, boot, tier)
        loss = {}
        if recipe.evaluation.loss_by_component and len(components) > 1:
            for name in components:  # this component on device, the others float: the loss it alone causes
                alone = run_chain(graph, data, device_call({name: runners[name]}, ios, fallback=fcall))
                judged = judge_chain(recipe, graph, alone, floats, data, boot, tier)
                # a metric measured against the float chain itself has no drop: its value stands for the loss
                loss[name] = {o: {"metric": r["metric"], **{k: v for k, v in r["metrics"][r["metric"]].items() if k in ("drop", "artifact")}}
                              for o, r in judged["outputs"].items() if "metric" in r}
        out.append({**base, "verification": verdict, "loss_by_component": loss, "seconds": round(seconds, 1)})
    return out


def _fused(recipe, graph: ChainGraph, wrappers: dict, data, floats, boot, staging: Path, log_path: Path, say) -> list[dict]:
    import torch

    from toolkit._io import captured
    from toolkit.backends import get_backend
    from toolkit.convert.base import convert_target, describe_failure, file_sha256, tree_size
    from toolkit.registry import ModelSpec, OutputSpec
    from toolkit.tasks import TASKS

    if not recipe.fused:
        return []
    names = tuple(o.name for o in recipe.outputs)
    sources = tuple(o.source for o in recipe.outputs)
    module = fused_module(graph, wrappers, sources)
    h, w = recipe.input.size
    # The task only picks converter conventions for a classifier, which a chain is not (class_scores: False below).
    spec = ModelSpec(name=f"{recipe.name}_fused", task=next(iter(TASKS)), architecture="skinkit chain",
                     factory=lambda: module, description=recipe.description or recipe.name, input_size=(h, w),
                     outputs=tuple(OutputSpec(o.name, o.description, o.unit or graph.values[o.source].unit) for o in recipe.outputs),
                     tolerances={})
    sample = torch.rand(1, h, w, 3) * 255.0
    out_dir = staging / "fused"
    out_dir.mkdir()
    results = []
    for t in recipe.fused:
        say(f"    {t.key} …")
        backend = get_backend(t.format)
        options = {**backend.options().model_dump(), "class_scores": False, "pixel_range": "0-255", "layout": "nhwc",
                   "calibration": None, "keep_float": (), "metadata": {"bundle": recipe.name, "version": recipe.version,
                                                                      "model": spec.name, "outputs": list(names)}}
        before = set(out_dir.iterdir())
        try:
            with captured(log_path):
                artifact = convert_target(module, sample, spec, fmt=t.format, precision=t.precision, out_dir=out_dir,
                                          stem=spec.name, options=options)
        except Exception as exc:  # the backend's own check, or the converter's failure named with op and module
            err = exc if isinstance(exc, SkinkitError) else describe_failure(exc, t.format, spec.name, module=module, sample=sample)
            for leftover in set(out_dir.iterdir()) - before:  # a half-written file must not reach the bundle
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            results.append({"key": t.key, "format": t.format, "precision": t.precision, "error": err.one_line()})
            continue
        try:
            verdict, seconds = judge_fused(recipe, graph, artifact, data, floats, boot)
        except VerificationError as exc:  # it converted but cannot run here: recorded as a failed check
            verdict, seconds = not_executed(exc), 0.0
        results.append({"key": t.key, "path": f"fused/{artifact.filename}", "format": t.format, "precision": t.precision,
                        "sha256": file_sha256(artifact.path), "size_bytes": tree_size(artifact.path),
                        "conversion_seconds": round(artifact.seconds, 1), "structure": artifact.details,
                        "outputs": [{"name": n, "from": s, **graph.values[s].describe()} for n, s in zip(names, sources)],
                        "verification": verdict, "seconds": round(seconds, 1)})
    return results


def check_judging(recipe: ChainRecipe, graph: ChainGraph, floats: dict, data: ChainData) -> None:
    """Before anything converts: every output's metric, truth and gate keys computed once, float chain against itself
    (two bootstrap replicates: the names and shapes, not the intervals). A mismatch is one RecipeError."""
    from toolkit.errors import RecipeError
    from toolkit.verify.stats import Bootstrap

    try:
        judge_chain(recipe, graph, floats, floats, data, Bootstrap.draw(len(data), replicates=2), "fp32")
    except RecipeError:
        raise
    except (KeyError, ValueError, IndexError) as exc:
        raise RecipeError(f"the chain's outputs cannot be judged as the recipe says: {type(exc).__name__}: {exc}",
                          fix="check each output's judge, truth and metric against the value it names (skinkit describe shows them)") from None


def not_executed(exc) -> dict:
    """The verdict of a device chain or fused graph the host could not run: one failed criterion naming why."""
    return {"passed": False, "tier": None, "outputs": {}, "criteria": [
        {"name": "executed on the host", "value": exc.one_line(), "bound": "runs", "op": "==", "passed": False}]}


def chain_keys(recipe: ChainRecipe) -> list[str]:
    """The device chains to run: ``variants``, or every target key all components have (in the first's order).
    A variant some component has no target for is one error, before anything converts."""
    from toolkit.errors import RecipeError

    keys = [[t.key for t in r.targets] for r in recipe.components.values()]
    common = [k for k in keys[0] if all(k in other for other in keys[1:])]
    if recipe.variants is None:
        return common
    missing = [k for k in recipe.variants if k not in common]
    if missing:
        raise RecipeError(f"variant {missing[0]} is not a target every component has ({', '.join(common) or 'none in common'})",
                          fix="list in variants: keys every component's targets share")
    return list(recipe.variants)


def judge_fused(recipe, graph: ChainGraph, artifact, data: ChainData, floats: dict, boot) -> tuple[dict, float]:
    """A fused graph (an ``Artifact``) of the whole chain through its runtime, judged as a device chain is; with its
    backend's structural checks. Returns the verdict and the seconds the set took."""
    from toolkit.backends import get_backend
    from toolkit.verify.gate import structural_checks

    names = tuple(o.name for o in recipe.outputs)
    sources = tuple(o.source for o in recipe.outputs)
    h, w = recipe.input.size
    runner = get_backend(artifact.format).runner(artifact.path)
    t0 = time.perf_counter()
    outs = [runner.run(data.images[i:i + 25].astype(np.float32)) for i in range(0, len(data), 25)]
    seconds = time.perf_counter() - t0
    device = {src: np.concatenate([o[n] for o in outs]).reshape((len(data), *graph.values[src].shape)) for n, src in zip(names, sources)}
    structure = structural_checks(artifact, (1, h, w, 3), {n: (1, *graph.values[src].shape) for n, src in zip(names, sources)})
    verdict = judge_chain(recipe, graph, device, floats, data, boot, tier_of([artifact.precision]))
    verdict["criteria"] = structure + verdict["criteria"]
    verdict["passed"] = all(c["passed"] for c in verdict["criteria"])
    return verdict, seconds


def _raise_verdict(manifest: dict, final: Path) -> None:
    from toolkit.verify.gate import failed_criteria

    v = manifest["verdict"]
    if v["passed"]:
        return
    lines = [f"component {c['name']}: {c['problem']}" for c in manifest["components"] if c.get("problem")]
    lines += [line for x in manifest["variants"] for line in failed_criteria(f"chain {x['key']}", x["verification"]["criteria"])]
    lines += [line for x in manifest["fused"] if "verification" in x
              for line in failed_criteria(f"fused {x['key']}", x["verification"]["criteria"])]
    not_converted = [f"fused {x['key']} not converted: {x['error']}" for x in manifest["fused"] if "error" in x]
    if len(lines) == 0 and not_converted:
        raise IncompleteBundle(f"bundle incomplete: {len(not_converted)} fused target(s) did not convert; everything else passes; "
                               f"bundle kept at {final}", not_converted=not_converted, bundle_dir=str(final),
                               fix="drop or fix the fused targets (below)")
    raise VerificationFailed(f"assessment gate failed ({len(lines)} criteria or components); bundle and report kept at {final}",
                             failures=lines, bundle_dir=str(final), not_converted=not_converted,
                             fix="see report.md: the component or chain that fails, and the loss each component causes")
