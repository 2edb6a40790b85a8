"""``skinkit verify`` of an assessment bundle: integrity, then every gate again — each component's (its own bundle,
``toolkit.verify.bundle``), each device chain's and each fused graph's against the float chain rebuilt from the
manifest's recipe. Nothing in the bundle is rewritten."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from toolkit.verify.bundle import check_pipeline_integrity, integrity_notes, manifest_bytes, read_manifest, signature_notes, signature_status


def verify_pipeline(bundle: str | Path, *, n: int | None = None, public_key: Path | None = None, recipe_path: Path | None = None) -> dict:
    """The signature (with ``public_key``), integrity, each component's gate, then every device chain and fused graph
    against the float chain."""
    from toolkit.chain.export import float_call, judge_fused, judge_variants, load_components, not_executed, run_chain
    from toolkit.chain.graph import build
    from toolkit.chain.judge import chain_data
    from toolkit.chain.recipe import ChainRecipe
    from toolkit.context import names_files, recorded_recipe
    from toolkit.convert.base import Artifact
    from toolkit.errors import BadInputError, VerificationError
    from toolkit.verify.bundle import check_checkpoint, verify_bundle
    from toolkit.verify.stats import Bootstrap

    bundle = Path(bundle)
    raw = manifest_bytes(bundle)
    manifest = read_manifest(bundle, raw)
    signature = signature_status(bundle, public_key, manifest, raw)
    integrity = check_pipeline_integrity(bundle, manifest)
    t0 = time.perf_counter()
    recipe = ChainRecipe.model_validate(manifest["recipe"]["resolved"])
    if n is not None:
        recipe = recipe.model_copy(update={"evaluation": recipe.evaluation.model_copy(update={"n": n})})
    fd, log_name = tempfile.mkstemp(prefix="skinkit-verify-", suffix=".log")
    os.close(fd)
    try:
        recipe_path = recorded_recipe(bundle, manifest["recipe"]["path"], override=recipe_path,
                                      needed=any(names_files(c, evaluation=False) for c in recipe.components.values()))
        components = load_components(recipe, recipe_path, Path(log_name))
        manifests = {c["name"]: read_manifest(bundle / c["bundle"]) for c in manifest["components"]}
        for name, c in components.items():
            check_checkpoint(manifests[name], c.compressed.loaded)
        graph = build(recipe, {k: c.io for k, c in components.items()})
        if [s.describe() for s in graph.steps] != manifest["chain"]["steps"]:
            raise BadInputError("the chain rebuilt from the bundle's recipe differs from the one its manifest states "
                                "(a component's outputs changed since export)", fix="re-export the bundle")
        component_rows = []
        for c in manifest["components"]:
            s = verify_bundle(bundle / c["bundle"], n=n, recipe=recipe_path if recipe_path.is_file() else None)
            component_rows.append({"name": c["name"], "passed": s["passed"], "artifacts": [
                {"path": f"{c['bundle']}/{a['path']}", "passed": a["passed"], "criteria": a["criteria"], "check": a["check"]}
                for a in s["artifacts"]], "failed_targets": s["failed_targets"]})
        ev = recipe.evaluation
        data = chain_data(ev.n, recipe.input.size, seed=ev.seed)
        fcall, _ = float_call(components)
        floats = run_chain(graph, data, fcall)
        boot = Bootstrap.draw(len(data), replicates=ev.bootstrap, seed=ev.seed)
        variants = judge_variants(recipe, manifests, bundle, components, graph, data, floats, fcall, boot, lambda _: None)
        fused = []
        for f in manifest["fused"]:
            if "path" not in f:
                fused.append({"key": f["key"], "passed": False, "error": f["error"], "criteria": []})
                continue
            artifact = Artifact(format=f["format"], precision=f["precision"], path=bundle / f["path"], seconds=0.0, details=f["structure"])
            try:
                verdict, _ = judge_fused(recipe, graph, artifact, data, floats, boot)
            except VerificationError as exc:
                verdict = not_executed(exc)
            fused.append({"key": f["key"], "path": f["path"], "passed": verdict["passed"], "criteria": verdict["criteria"],
                          "outputs": verdict["outputs"]})
    finally:
        Path(log_name).unlink(missing_ok=True)
    rows = [{"key": v["key"], "tier": v["tier"], "passed": v["verification"]["passed"], "criteria": v["verification"]["criteria"],
             "outputs": v["verification"]["outputs"], "loss_by_component": v["loss_by_component"]} for v in variants]
    passed = all(c["passed"] for c in component_rows) and all(r["passed"] for r in rows) and all(f["passed"] for f in fused)
    return {"bundle": str(bundle), "kind": "pipeline", "model": manifest["bundle"], "passed": passed, "integrity": integrity,
            "signature": signature, "notes": integrity_notes(manifest) + signature_notes(signature),
            "evaluation": {"n": len(data), "seed": ev.seed, "bootstrap": ev.bootstrap},
            "components": component_rows, "variants": rows, "fused": fused, "seconds": round(time.perf_counter() - t0, 1)}


def junit_xml(summary: dict) -> str:
    """JUnit XML: one test case per component artifact, per device chain and per fused graph."""
    from xml.sax.saxutils import quoteattr

    from toolkit.verify.bundle import testcase

    cases = [testcase(f"{summary['model']}.{c['name']}", a["path"], a["criteria"], a["check"]) for c in summary["components"]
             for a in c["artifacts"]]
    cases += [testcase(f"{summary['model']}.chain", f"chain {v['key']}", v["criteria"]) for v in summary["variants"]]
    cases += [testcase(f"{summary['model']}.fused", f"fused {f['key']}", f["criteria"],
                        not_converted={"error": f["error"]} if "error" in f else None) for f in summary["fused"]]
    head = (f'<testsuite name={quoteattr("skinkit verify " + summary["bundle"])} tests="{len(cases)}" '
            f'failures="{sum(failed for _, failed in cases)}" time="{summary["seconds"]}">')
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + head + "\n" + "\n".join(xml for xml, _ in cases) + "\n</testsuite>\n"
