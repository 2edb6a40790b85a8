"""The ``skinkit`` command line. A thin layer over the Python API; heavy frameworks load lazily
so that ``skinkit --help`` is instant.

Exit codes: 0 ok; 1 bad input; 2 conversion failure (no target converted, or any with --strict; nothing
written); 3 verification gate failed (report written); 4 bundle incomplete (some targets did not convert, the
others pass the gate; bundle and report written).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from pathlib import Path

import typer

from toolkit.errors import IncompleteBundle, SkinkitError, VerificationFailed

TRAINED_DIR = Path("trained")  # where `skinkit train MODEL` writes unless --out says otherwise

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn trained PyTorch skin-analysis models into verified on-device bundles.")


_GLOBAL = {"quiet": False}  # set by the options before the command (``skinkit --quiet export …``)


@app.callback()
def _options(quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress on stderr, for any command "
                                                                      "(errors are still printed)")) -> None:
    """Turn trained PyTorch skin-analysis models into verified on-device bundles."""
    _GLOBAL["quiet"] = quiet


@contextlib.contextmanager
def _progress(quiet: bool = False):
    """Progress of the long steps run inside the block on stderr (``toolkit.progress``): live bars when stderr is a
    terminal, one plain line per finished step when it is not; nothing with ``--quiet``. Yields the callback."""
    from toolkit.progress import reporting

    if quiet or _GLOBAL["quiet"]:
        with reporting(None):
            yield None
        return
    from toolkit.progress import for_console

    with for_console(_console()) as shown, reporting(shown):
        yield shown


def _json_failure(exc: SkinkitError) -> dict:
    """A failure as ``--json`` prints it on stdout: what failed, the fix, the exit code and the error's kind; for a
    bundle that was written anyway (gate failed, incomplete), its summary too."""
    out = dict(getattr(exc, "summary", None) or {})
    if isinstance(exc, (VerificationFailed, IncompleteBundle)):
        out.setdefault("bundle", exc.bundle_dir)
        out.setdefault("passed", False)
        out["failures"] = getattr(exc, "failures", [])
        out["not_converted"] = exc.not_converted
    return {**out, "error": exc.cause, "fix": exc.fix, "exit_code": exc.exit_code, "kind": type(exc).__name__}


def _errors_to_exit(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VerificationFailed as exc:
            advised = _bundle_advice(exc.bundle_dir)
            if kwargs.get("as_json"):
                print(json.dumps({**_json_failure(exc), "advice": [{"path": p, **a} for p, a in advised]}, indent=2))
            _print_advice(advised, file=sys.stderr)
            print(f"skinkit: {exc.one_line()}", file=sys.stderr)
            for f in exc.failures + exc.not_converted:
                print(f"  - {f}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except IncompleteBundle as exc:
            if kwargs.get("as_json"):
                print(json.dumps(_json_failure(exc), indent=2))
            print(f"skinkit: {exc.one_line()}", file=sys.stderr)
            for f in exc.not_converted:
                print(f"  - {f}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except SkinkitError as exc:
            if kwargs.get("as_json"):  # a machine reading stdout learns what failed too, not only a person on stderr
                print(json.dumps(_json_failure(exc), indent=2))
            print(f"skinkit: error: {exc.one_line()}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
    return wrapper


def _bundle_advice(bundle_dir: str | None) -> list[tuple[str, dict]]:
    """The recipe changes a gate-failing bundle's manifest advises (none for an assessment bundle, or unreadable)."""
    from toolkit.verify.advice import manifest_advice

    try:
        return manifest_advice(json.loads((Path(bundle_dir) / "manifest.json").read_text())) if bundle_dir else []
    except (OSError, ValueError, TypeError, KeyError):
        return []


def _print_advice(advised: list[tuple[str, dict]], file=None) -> None:
    """A failing gate's suggested recipe changes, printed before anything else of its verdict."""
    from toolkit.verify.advice import advice_block

    lines = advice_block(advised)
    if lines:
        print("\n".join(["skinkit: the gate failed; " + lines[0], *lines[1:], ""]), file=file or sys.stdout)


def _console():
    from rich.console import Console

    from toolkit._io import terminal

    return Console(file=terminal(), highlight=False)


@app.command()
@_errors_to_exit
def export(
    recipe: Path = typer.Argument(..., help="export recipe (YAML), e.g. export_recipes/acne_mobilenetv2.yaml"),
    out: Path = typer.Option(Path("bundles"), "--out", "-o", help="folder the bundle is written into"),
    force: bool = typer.Option(False, "--force", help="replace an existing bundle of the same name"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check everything an export can check without converting (model, checkpoint, data, metric "
                                 "names), print the artifacts it would write and the criteria of each, and stop"),
    as_json: bool = typer.Option(False, "--json", help="print a machine summary on stdout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    strict: bool = typer.Option(False, "--strict", help="all or nothing: the first target that fails to convert stops "
                                "the export (exit 2, nothing written) instead of an incomplete bundle (exit 4)"),
) -> None:
    """Load, compress, convert, verify, benchmark and bundle a model as its recipe says.

    A target that fails to convert is reported and the others are bundled, marked incomplete (exit 4)."""
    from toolkit.chain.recipe import is_chain_recipe, parse_chain_recipe
    from toolkit.recipe import parse_recipe, read_yaml

    data = read_yaml(recipe)
    if is_chain_recipe(data):
        return _export_chain(parse_chain_recipe(data, source=str(recipe), base=recipe.parent), recipe, out=out, force=force,
                             dry_run=dry_run, as_json=as_json, quiet=quiet)
    r = parse_recipe(data, source=str(recipe))
    if dry_run:
        from toolkit.pipeline import plan

        resolved = plan(r, recipe_path=recipe, out_dir=out)
        if as_json:
            print(json.dumps(resolved.summary(), indent=2))
        elif not quiet:
            print("\n".join([f"dry run: {recipe} resolves; nothing converted or written", *resolved.lines()]), file=sys.stderr)
        return
    from toolkit.pipeline import export as run_export

    console = None if (quiet or as_json or _GLOBAL["quiet"]) else _console()
    try:
        with _progress(quiet):
            summary = run_export(r, recipe_path=recipe, out_dir=out, force=force, strict=strict).summary()
    except (VerificationFailed, IncompleteBundle) as exc:  # a bundle was written: show it (--json: with the error), then exit 3 or 4
        if console and getattr(exc, "summary", None):
            _print_export(exc.summary, console, as_json=False)
        raise
    _print_export(summary, console, as_json=as_json)


def _export_chain(r, path: Path, *, out: Path, force: bool, dry_run: bool, as_json: bool, quiet: bool) -> None:
    """An assessment recipe: every component's bundle, the device chains and fused graphs judged against the float chain."""
    from toolkit.chain.export import export_chain

    if dry_run:
        from toolkit.chain.export import chain_keys, load_components
        from toolkit.chain.graph import build
        from toolkit.pipeline import plan

        plans = {k: plan(c, recipe_path=path, out_dir=out / r.name / "components") for k, c in r.components.items()}
        components = load_components(r, path, Path(os.devnull))  # every link between them checked too
        graph = build(r, {k: c.io for k, c in components.items()})
        summary = {"bundle": str(out / r.name), "bundle_exists": (out / r.name).exists(),
                   "components": {k: p.summary() for k, p in plans.items()}, "device_chains": chain_keys(r),
                   "fusable": graph.fusable, "host_only_steps": graph.host_only(), "recipe": json.loads(r.canonical_json())}
        if as_json:
            print(json.dumps(summary, indent=2))
        elif not quiet:
            lines = [f"dry run: {path} resolves (an assessment of {len(plans)} components, every link checked); "
                     "nothing converted or written"]
            for k, p in plans.items():
                lines += [f"component {k}:", *(f"  {line}" for line in p.lines())]
            lines.append(f"device chains: {', '.join(chain_keys(r))}; fused graph: {'yes' if graph.fusable else 'no'}")
            print("\n".join(lines), file=sys.stderr)
        return
    console = None if (quiet or as_json or _GLOBAL["quiet"]) else _console()
    try:
        with _progress(quiet):
            manifest = export_chain(r, recipe_path=path, out_dir=out, force=force)
    except (VerificationFailed, IncompleteBundle) as exc:
        if exc.bundle_dir:  # --json: the summary travels with the error, one object on stdout
            exc.summary = _chain_summary(json.loads((Path(exc.bundle_dir) / "manifest.json").read_text()), Path(exc.bundle_dir))
            _print_chain(exc.summary, console, as_json=False)
        raise
    _print_chain(_chain_summary(manifest, out / r.name), console, as_json=as_json)


def _chain_summary(m: dict, bundle: Path) -> dict:
    """An assessment export's machine summary: every gate, and each component's artifacts as a single export lists them."""
    from toolkit.pipeline import ExportResult

    rows = ([{"what": f"component {c['name']}", "passed": c["passed"]} for c in m["components"]]
            + [{"what": f"chain {v['key']}", "passed": v["verification"]["passed"]} for v in m["variants"]]
            + [{"what": f"fused {f['key']}", "passed": f.get("verification", {}).get("passed", False)} for f in m["fused"]])
    components = {}
    for c in m["components"]:
        where = bundle / c["bundle"]
        if (where / "manifest.json").is_file():
            components[c["name"]] = ExportResult(where, json.loads((where / "manifest.json").read_text()), Path(os.devnull)).summary()
    return {"bundle": str(bundle), "passed": m["verdict"]["passed"], "gates": rows, "components": components}


def _print_chain(summary: dict, console, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
    elif console:
        for name, comp in summary["components"].items():
            console.print(f"component {name}:")
            _summary_table(comp, console)
        for row in summary["gates"]:
            console.print(f"  {'[green]pass[/green]' if row['passed'] else '[red]FAIL[/red]'}  {row['what']}")
        console.print(f"bundle: {summary['bundle']} (report.md; app code in app/)")


def _summary_table(summary: dict, console) -> None:
    """One row per artifact: verdict, size, headline metric (float, artifact, drop with its 95 % CI), the gate's margin
    left and the worst skin-tone group; then the targets that did not convert."""
    from rich.text import Text

    from toolkit.pipeline import summary_lines

    for passed, text in summary_lines(summary):
        line = Text("  ")
        if passed is None:
            line.append("    ")
        else:
            line.append("pass" if passed else "FAIL", style="green" if passed else "red")
        console.print(line.append("  " + text), soft_wrap=True)


def _print_export(summary: dict, console, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
    elif console:
        _summary_table(summary, console)
        console.print(f"bundle: {summary['bundle']}{'' if summary['complete'] else ' (incomplete)'}")


@app.command()
@_errors_to_exit
def train(
    model: str = typer.Argument(..., help="registered model name (see `skinkit models`), or a recipe describing your own model"),
    seed: int = typer.Option(0, help="random seed (data, init, order)"),
    epochs: int | None = typer.Option(None, help="override the model's epoch count (your model: default 3)"),
    n_train: int | None = typer.Option(None, help="override the number of training images (your model: default 1200)"),
    out: Path | None = typer.Option(None, help="weights folder (default: trained/ in the current folder; your model: the "
                                               "recipe's model.checkpoint); the package's shipped weights are replaced only "
                                               "when --out names their folder, with --force"),
    threads: int | None = typer.Option(None, help="CPU threads (default: all)"),
    lr: float = typer.Option(1e-3, help="your model: peak learning rate (AdamW, one-cycle)"),
    batch_size: int = typer.Option(32, help="your model: images per step"),
    force: bool = typer.Option(False, "--force", help="replace weights that already exist where training writes"),
    as_json: bool = typer.Option(False, "--json", help="print the model card (weights, metrics, seconds) as JSON on stdout"),
) -> None:
    """Train a reference model, or your own model described by a recipe, on synthetic skin images (CPU) and
    write its checkpoint and card: into trained/ (for your model: where the recipe's model.checkpoint says)."""
    from toolkit._io import writable_folder
    from toolkit.errors import BadInputError
    from toolkit.train import train as run_train

    console = _console()
    if model.endswith((".yaml", ".yml")):
        spec, checkpoint = _recipe_model_to_train(Path(model), epochs=epochs, n_train=n_train, lr=lr, batch_size=batch_size)
        checkpoint = out / checkpoint.name if out else checkpoint
        passed = {"--epochs": epochs, "--n-train": n_train, "--lr": lr, "--batch-size": batch_size}
        # the recipe by file name: the card travels into bundles, which name no folder of this machine
        command = f"skinkit train {Path(model).name} " + " ".join(f"{k} {v}" for k, v in passed.items() if v is not None)
    else:
        from toolkit.registry import get_spec

        spec, command = get_spec(model), None
        checkpoint = (out or TRAINED_DIR) / f"{spec.name}.safetensors"  # never the shipped weights unless --out says so
    if checkpoint.exists() and not force:
        raise BadInputError(f"{checkpoint} exists: training would replace those weights",
                            fix="pass --force to replace them, or --out DIR to write elsewhere")
    writable_folder(checkpoint.parent, option="--out" if out or command is None else "model.checkpoint's folder")
    if not _GLOBAL["quiet"]:
        console.print(f"training {spec.name} ({spec.architecture}) on synthetic data …")
    with _progress():  # a line (or a bar) per epoch, with its loss
        card = run_train(spec, seed=seed, threads=threads, epochs=epochs, n_train=n_train, checkpoint=checkpoint, command=command)
    if as_json:
        print(json.dumps({"weights": str(checkpoint), "card": str(checkpoint.with_suffix(".json")), **card}, indent=2))
        return
    console.print(f"weights: {checkpoint}")
    console.print(f"held-out float metrics: {json.dumps(card['held_out_float_metrics'])} ({card['seconds']['total']} s)")


def _recipe_model_to_train(path: Path, *, epochs: int | None, n_train: int | None, lr: float, batch_size: int):
    """The spec (with a training configuration) of the user's model a recipe describes, and where its weights go."""
    from dataclasses import replace

    from toolkit.errors import BadInputError
    from toolkit.load.describe import untrained
    from toolkit.recipe import load_recipe
    from toolkit.registry import TrainingConfig
    from toolkit.tasks import get_task

    recipe = load_recipe(path)
    if recipe.model.checkpoint is None:
        raise BadInputError(f"{path}: model.checkpoint is not set, so the trained weights have nowhere to go",
                            fix="set model.checkpoint to the .safetensors file to write")
    if recipe.model.checkpoint.suffix != ".safetensors":
        raise BadInputError(f"{path}: model.checkpoint {recipe.model.checkpoint} is not a .safetensors file, which training writes",
                            fix="point model.checkpoint at a .safetensors file")
    spec = untrained(recipe.model, path.parent)
    problem = get_task(spec.task).synthetic_problem(spec)
    if problem:
        raise BadInputError(f"{path}: training uses the synthetic generator, but {problem}",
                            fix="train the model where its labelled data is, then point model.checkpoint at its weights")
    spec = replace(spec, training=TrainingConfig(n_train=n_train or 1200, n_val=200, epochs=epochs or 3, batch_size=batch_size, lr=lr))
    checkpoint = recipe.model.checkpoint
    return spec, checkpoint if checkpoint.is_absolute() else (path.parent / checkpoint).resolve()


@app.command()
@_errors_to_exit
def describe(recipe: Path = typer.Argument(..., help="export recipe (YAML) whose model to check"),
             as_json: bool = typer.Option(False, "--json", help="accepted for uniformity: the contract is always JSON on stdout")) -> None:
    """Load the recipe's model, run it once on one input of its declared size, check what it returns against
    the description, and print the contract it would be exported with (JSON). Seconds, nothing converted."""
    import tempfile
    from dataclasses import asdict

    import torch

    from toolkit.chain.recipe import is_chain_recipe, parse_chain_recipe
    from toolkit.context import Context
    from toolkit.load import stage as load_stage
    from toolkit.outputs import name_outputs
    from toolkit.recipe import parse_recipe, read_yaml
    from toolkit.tasks import get_task

    data = read_yaml(recipe)
    if is_chain_recipe(data):
        return _describe_chain(parse_chain_recipe(data, source=str(recipe), base=recipe.parent), recipe)
    r = parse_recipe(data, source=str(recipe))
    context = Context(recipe=r, recipe_path=recipe.resolve(), staging=Path(tempfile.gettempdir()), log_path=Path(os.devnull))
    loaded = load_stage.run(context, r.model)
    spec = loaded.spec
    with torch.inference_mode():
        named = name_outputs(loaded.module(torch.zeros(1, 3, *spec.input_size)), [o.name for o in spec.outputs])
    print(json.dumps({
        "model": spec.name, "architecture": spec.architecture, "task": spec.task, "metric": spec.metric,
        "input": load_stage.input_contract(r).describe(spec), "labels": list(spec.labels),
        "outputs": [{"name": o.name, "description": o.description, "unit": o.unit, "shape": list(named[o.name].shape[1:]),
                     "read_by_task": o.name in get_task(spec.task).reads(spec)} for o in spec.outputs],
        "output_size": list(spec.output_size) if spec.output_size else None,
        "tolerances": {tier: {k: v for k, v in asdict(t).items() if v not in (None, {})} for tier, t in spec.tolerances.items()},
        "provenance": loaded.provenance,
    }, indent=2))


def _describe_chain(r, path: Path) -> None:
    """An assessment recipe: every component loaded and run once, every link checked; the chain as the manifest
    will state it (steps, values with kinds and shapes), its device chains and whether it fuses. Nothing converted."""
    from toolkit.chain.export import chain_keys, load_components
    from toolkit.chain.graph import build

    components = load_components(r, path, Path(os.devnull))
    graph = build(r, {k: c.io for k, c in components.items()})
    print(json.dumps({
        "name": r.name, "input": {"size": list(r.input.size), "fit": r.input.fit},
        "components": {k: {"model": c.compressed.spec.name, "task": c.compressed.spec.task, "input_size": list(c.io.input_hw),
                           "targets": [t.key for t in r.components[k].targets]} for k, c in components.items()},
        "steps": [s.describe() for s in graph.steps],
        "outputs": [{"name": o.name, "from": o.source, **graph.values[o.source].describe()} for o in r.outputs],
        "device_chains": chain_keys(r), "fusable": graph.fusable, "host_only_steps": graph.host_only(),
    }, indent=2))


@app.command()
@_errors_to_exit
def models(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the registered reference models and their contracts."""
    from toolkit.load.loader import shipped_checkpoint
    from toolkit.registry import list_models

    rows = [{"name": s.name, "task": s.task, "architecture": s.architecture, "input": list(s.input_size),
             "labels": list(s.labels), "outputs": [o.name for o in s.outputs], "metric": s.metric,
             "trained_weights": shipped_checkpoint(s.name).exists()} for s in list_models()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['name']:22s} {r['task']:17s} {r['input'][0]}x{r['input'][1]}  {'trained' if r['trained_weights'] else 'untrained'}  {r['architecture']}")


@app.command()
@_errors_to_exit
def verify(
    bundle: Path = typer.Argument(..., help="a bundle folder written by `skinkit export`"),
    data: Path | None = typer.Option(None, "--data", help="evaluation folder (labels.csv + images); default: the bundle's own evaluation set"),
    n: int | None = typer.Option(None, "--n", help="use only the first N evaluation images"),
    junit: Path | None = typer.Option(None, "--junit", help="also write a JUnit XML report for CI"),
    html: Path | None = typer.Option(None, "--html", help="also write a self-contained HTML report with plots"),
    culprits: str | None = typer.Option(None, "--culprits", help="rank degraded layers for: failed (recipe default), all, off"),
    as_json: bool = typer.Option(False, "--json", help="print the full result as JSON (strict: NaN as null)"),
    public_key: Path | None = typer.Option(None, "--public-key", help="also check the bundle's signature (`skinkit sign`) "
                                                                     "with this Ed25519 public key PEM"),
    recipe: Path | None = typer.Option(None, "--recipe", help="the recipe the bundle was exported from, when the bundle "
                                                              "was moved away from it (its model and data are found beside it)"),
    ray: str | None = typer.Option(None, "--ray", help="shard the images over a Ray cluster: local (one started here), "
                                                       "auto (the one running here) or its address; pip install -e '.[ray]'"),
    workers: int | None = typer.Option(None, "--workers", help="shard the images over this many local processes "
                                                               "(or, with --ray local, CPUs)"),
    shard_images: int = typer.Option(250, "--shard-images", help="images per shard (with --ray or --workers)"),
) -> None:
    """Check a bundle's integrity (and signature, with --public-key) and re-run its verification gate (exit 3 if an artifact fails; 4 if they
    pass but the bundle is incomplete: some recipe targets did not convert at export).

    Reports (JUnit, HTML) are written whether the gate passes or fails."""
    from toolkit._io import captured_quietly, write_atomically
    from toolkit.errors import BadInputError
    from toolkit.verify.bundle import json_safe, junit_xml, read_manifest, verify_bundle

    if culprits not in (None, "failed", "all", "off"):
        raise BadInputError(f"--culprits {culprits!r} is not one of failed, all, off", fix="pass --culprits failed|all|off")
    if (bundle / "manifest.json").is_file() and read_manifest(bundle).get("kind") == "pipeline":
        if data is not None or html is not None:
            raise BadInputError("an assessment bundle is verified on its own held-out photos, with report.md",
                                fix="drop --data and --html (--n, --junit and --json apply)")
        return _verify_pipeline(bundle, n=n, junit=junit, as_json=as_json, public_key=public_key, recipe=recipe)
    if shard_images < 1:
        raise BadInputError(f"--shard-images {shard_images} is not a number of images", fix="pass --shard-images 1 or more")
    with _progress(), captured_quietly(), _sharded(ray, workers, shard_images) as factory:  # per artifact, images/s, on stderr
        summary = verify_bundle(bundle, data=data, n=n, culprits=culprits, public_key=public_key, recipe=recipe,
                                runner_factory=factory)
    if junit is not None:
        write_atomically(junit, junit_xml(summary))
    if html is not None:
        from toolkit.verify.html import render_html

        with captured_quietly():
            write_atomically(html, render_html(summary))
    advised = [(a["path"], a["advice"]) for a in summary["artifacts"] if a.get("advice")]
    _print_advice(advised, file=sys.stderr if as_json else sys.stdout)  # the fix first, then what failed
    if as_json:
        print(json.dumps(json_safe(summary), indent=2, allow_nan=False))
    else:
        ev = summary["evaluation"]
        print(f"{summary['bundle']}: integrity ok ({len(summary['integrity'])} artifacts); "
              f"{ev['n']} images ({ev['source']}), {summary['seconds']} s")
        _signature_lines(summary)
        for a in summary["artifacts"]:
            tm = a.get("task_metric")
            figure = (f"; {tm['name']} {tm['float']:.4f} → {tm['artifact']:.4f}, drop 95 % CI "
                      f"[{tm['drop_ci95'][0]:+.4f}, {tm['drop_ci95'][1]:+.4f}]") if tm else ""
            print(f"  {'pass' if a['passed'] else 'FAIL'}  {a['path']}  ({a['check'].split(';')[0]}{figure})")
            c = a.get("culprits") or {}
            if c.get("suggestion") or c.get("error"):
                print(f"        culprits: {c.get('suggestion') or c.get('error')}")
        if "pruning" in summary:
            pr = summary["pruning"]
            print(f"  {'pass' if pr['passed'] else 'FAIL'}  pruning: {pr['metric']} original {pr['original']:.4f} → pruned float "
                  f"{pr['pruned']:.4f}, drop 95 % CI [{pr['drop']['ci95'][0]:+.4f}, {pr['drop']['ci95'][1]:+.4f}]")
        for f in summary["failed_targets"]:
            print(f"  NOT CONVERTED  {f['key']}")
    incomplete = _not_converted_lines(summary["failed_targets"])
    if not summary["gate_passed"]:
        from toolkit.verify.gate import failed_criteria

        for a in summary["artifacts"]:
            for line in failed_criteria(a["path"], a["criteria"]):
                print(f"  - {line}", file=sys.stderr)
        for line in failed_criteria("pruning", summary.get("pruning", {}).get("criteria", [])):
            print(f"  - {line}", file=sys.stderr)
        print("skinkit: verification gate failed" + (f"; the bundle is also incomplete:\n{incomplete}" if incomplete else ""),
              file=sys.stderr)
        raise typer.Exit(3)
    if incomplete:
        print(f"skinkit: bundle incomplete: {len(summary['failed_targets'])} recipe target(s) did not convert at export "
              f"(the artifacts present pass):\n{incomplete}", file=sys.stderr)
        raise typer.Exit(IncompleteBundle.exit_code)


@contextlib.contextmanager
def _sharded(ray: str | None, workers: int | None, shard_images: int):
    """The runner factory that shards verification (``toolkit.scale.shards``), or None to verify in this process."""
    if ray is None and workers is None:
        yield None
        return
    from toolkit.scale.executor import executor
    from toolkit.scale.shards import ShardedRunners

    ex = executor(ray, workers)
    try:
        yield ShardedRunners(ex, shard_images)
    finally:
        ex.close()


@app.command()
@_errors_to_exit
def batch(
    recipes: list[Path] = typer.Argument(..., help="export recipes (YAML), e.g. export_recipes/*.yaml"),
    out: Path = typer.Option(Path("bundles"), "--out", "-o", help="folder the bundles are written into (workers must reach it)"),
    ray: str | None = typer.Option(None, "--ray", help="run on Ray: local (a cluster started here), auto (the one running "
                                                       "here, `ray start --head`) or an address (ray://host:10001); "
                                                       "default: local processes. pip install -e '.[ray]'"),
    workers: int | None = typer.Option(None, "--workers", help="local processes (default: one per core); with --ray local, CPUs"),
    cache: str | None = typer.Option(None, "--cache", help="conversion cache every worker shares: a folder or fsspec URL, "
                                                           "or off (default: $SKINKIT_CACHE, else ~/.cache/skinkit/conversions)"),
    force: bool = typer.Option(False, "--force", help="replace existing bundles"),
    shard_images: int | None = typer.Option(None, "--shard-images", help="with --ray: images per verification shard (default 250)"),
    as_json: bool = typer.Option(False, "--json", help="print the batch's summary as JSON on stdout"),
) -> None:
    """Export many recipes at once: each target converted as its own task into the shared conversion cache, then each
    recipe's export (verification sharded on Ray). A recipe that fails does not stop the others; the summary lists each
    with its exit code and one-line error. Exit 0 when every recipe passes, else the first failing recipe's code."""
    from toolkit.scale.batch import run_batch

    missing = [str(r) for r in recipes if not r.is_file()]
    if missing:
        from toolkit.errors import BadInputError

        raise BadInputError(f"recipe not found: {', '.join(missing)}", fix="pass recipe files, e.g. export_recipes/*.yaml")
    with _progress():
        result = run_batch([str(r) for r in recipes], out=out, ray=ray, workers=workers,
                           cache=cache,
                           force=force, shard_images=shard_images)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        print(f"batch: {len(result.results)} recipes on {result.workers} in {result.seconds:.1f} s"
              + (f"; conversion cache {result.cache}" if result.cache else "; no conversion cache"), file=sys.stderr)
        for r in result.results:
            arts = (r.summary or {}).get("artifacts") or []
            passed = sum(1 for a in arts if a.get("passed"))
            what = f"{passed}/{len(arts)} artifacts pass" if arts else ""
            converted = f"{len(r.conversions)} conversion tasks" if r.conversions else ""
            detail = "; ".join(x for x in (what, converted, f"{r.seconds:.1f} s") if x)
            print(f"  {'pass' if r.passed else f'exit {r.exit_code}'}  {r.name or r.recipe}  {r.bundle or ''}  ({detail})",
                  file=sys.stderr)
            if r.error:
                print(f"        {r.error}" + (f" — fix: {r.fix}" if r.fix else ""), file=sys.stderr)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _verify_pipeline(bundle: Path, *, n: int | None, junit: Path | None, as_json: bool, public_key: Path | None,
                     recipe: Path | None = None) -> None:
    from toolkit._io import captured_quietly, write_atomically
    from toolkit.chain.verify import junit_xml, verify_pipeline
    from toolkit.verify.bundle import json_safe
    from toolkit.verify.gate import failed_criteria

    with _progress(), captured_quietly():
        summary = verify_pipeline(bundle, n=n, public_key=public_key, recipe_path=recipe)
    if junit is not None:
        write_atomically(junit, junit_xml(summary))
    failures = [line for comp in summary["components"] for a in comp["artifacts"] for line in failed_criteria(a["path"], a["criteria"])]
    failures += [line for kind, rows in (("chain", summary["variants"]), ("fused", summary["fused"])) for x in rows
                 for line in failed_criteria(f"{kind} {x['key']}", x["criteria"])]
    failures += [f"fused {f['key']} not converted at export: {f['error']}" for f in summary["fused"] if "error" in f]
    if as_json:
        print(json.dumps(json_safe(summary), indent=2, allow_nan=False))
    else:
        print(f"{summary['bundle']}: integrity ok ({len(summary['integrity'])} files); {summary['evaluation']['n']} photos, "
              f"{summary['seconds']} s")
        _signature_lines(summary)
        for comp in summary["components"]:
            print(f"  {'pass' if comp['passed'] else 'FAIL'}  component {comp['name']} ({len(comp['artifacts'])} artifacts)")
        for kind, rows in (("chain", summary["variants"]), ("fused", summary["fused"])):
            for x in rows:
                print(f"  {'pass' if x['passed'] else 'FAIL'}  {kind} {x['key']}")
    if not summary["passed"]:
        for line in failures:
            print(f"  - {line}", file=sys.stderr)
        print("skinkit: assessment gate failed", file=sys.stderr)
        raise typer.Exit(VerificationFailed.exit_code)


def _signature_lines(summary: dict) -> None:
    if summary["signature"]["checked"]:
        print(f"  signature ok ({summary['signature']['algorithm']}, key {summary['signature']['public_key_fingerprint'][:23]}…)")
    for note in summary["notes"]:
        print(f"  note: {note}")


@app.command()
@_errors_to_exit
def keygen(out: Path = typer.Option(..., "--out", help="folder for private.pem and public.pem"),
           force: bool = typer.Option(False, "--force", help="replace keys already there"),
           as_json: bool = typer.Option(False, "--json", help="print the key files and fingerprint as JSON on stdout")) -> None:
    """Make an Ed25519 key pair to sign bundles: private.pem (owner-only: keep it secret) and public.pem (ship it)."""
    from toolkit.verify.signing import generate_keys

    private, public, fingerprint = generate_keys(out, force=force)
    if as_json:
        print(json.dumps({"private_key": str(private), "public_key": str(public), "fingerprint": fingerprint}, indent=2))
    print(f"wrote {private} (secret: signs bundles) and {public} (verifies them); key {fingerprint}", file=sys.stderr)


@app.command()
@_errors_to_exit
def sign(bundle: Path = typer.Argument(..., help="a bundle folder (single model or assessment)"),
         key: Path = typer.Option(..., "--key", help="the Ed25519 private key PEM (`skinkit keygen`)"),
         as_json: bool = typer.Option(False, "--json", help="print the signature record as JSON on stdout")) -> None:
    """Sign a bundle: signature.json over manifest.json, which holds every file's sha256 (integrity is checked first)."""
    from toolkit.verify.bundle import sign_bundle
    from toolkit.verify.signing import SIGNATURE_FILE

    signature = sign_bundle(bundle, key)
    if as_json:
        print(json.dumps({"signature": str(bundle / SIGNATURE_FILE), **signature}, indent=2))
    print(f"wrote {bundle / SIGNATURE_FILE} (key {signature['public_key_fingerprint']}); check it with "
          f"`skinkit verify {bundle} --public-key PUBLIC.pem`", file=sys.stderr)


def _not_converted_lines(failed: list[dict]) -> str:
    """One line per recipe target a bundle lacks: its cause and fix."""
    return "\n".join(f"  - {f['key']} not converted: {f['error']}" + (f" — fix: {f['fix']}" if f.get("fix") else "") for f in failed)


@app.command()
@_errors_to_exit
def calibration(
    out: Path = typer.Option(..., "--out", help="manifest to write (YAML)"),
    folder: Path | None = typer.Option(None, "--folder", help="images to describe (every png/jpg/bmp/webp in it)"),
    synthetic: int | None = typer.Option(None, "--synthetic", help="describe N images of the generator's calib split instead"),
    name: str = typer.Option(..., "--name"),
    provenance: str = typer.Option(..., "--provenance", help="where the images come from"),
    consent: str = typer.Option(..., "--consent", help="the basis on which they may be used"),
    crop: str = typer.Option("none", "--crop", help="none, or skin: crop to the skin region before resizing"),
    as_json: bool = typer.Option(False, "--json", help="print what was written as JSON on stdout"),
) -> None:
    """Write a calibration-set manifest: every image by id with its sha256, provenance and consent."""
    import hashlib

    from toolkit._io import writable_folder
    from toolkit.data.calibration import write_manifest
    from toolkit.data.folder import IMAGE_SUFFIXES, image_files
    from toolkit.data.image import check_image, read_file
    from toolkit.errors import BadInputError, DataError

    if (folder is None) == (synthetic is None):
        raise BadInputError("give exactly one of --folder DIR and --synthetic N", fix="e.g. --folder photos/ or --synthetic 64")
    if crop not in ("none", "skin"):
        raise BadInputError(f"--crop {crop!r} is not one of none, skin", fix="--crop none or --crop skin")
    if out.is_dir():
        raise BadInputError(f"--out {out} is a folder, but calibration writes one manifest file", fix="e.g. --out calibration/my_set.yaml")
    writable_folder(out.parent, named=out)
    if synthetic is not None:
        from toolkit.data.calibration import pixel_sha256
        from toolkit.data.synthetic import make_sample

        ids = [str(i) for i in range(synthetic)]
        hashes = [pixel_sha256(make_sample(0, "calib", i, 224).image) for i in range(synthetic)]
        write_manifest(out, name=name, provenance=provenance, consent=consent, source="synthetic", ids=ids, hashes=hashes,
                       generator={"split": "calib", "seed": 0, "size": 224}, crop=crop)
    else:
        if not folder.is_dir():
            raise BadInputError(f"folder not found: {folder}", fix="pass the folder holding the calibration images")
        files = image_files(folder)
        if not files:
            raise BadInputError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})", fix="add calibration images to it")
        hashes, bad = [], []
        for p in files:  # every file is checked as loading will check it, so a manifest never lists an unusable image
            try:
                data = read_file(p, what="calibration image")
                check_image(p, data, what="calibration image")
                hashes.append(hashlib.sha256(data).hexdigest())
            except DataError as exc:
                bad.append(exc.cause)
        if bad:
            raise DataError(f"{len(bad)} of {len(files)} images in {folder} cannot be used: " + "; ".join(bad),
                            fix="re-export those images or remove them from the folder, then write the manifest again (nothing was written)")
        rel = os.path.relpath(folder.resolve(), out.resolve().parent)
        write_manifest(out, name=name, provenance=provenance, consent=consent, source="folder", ids=[p.name for p in files],
                       hashes=hashes, folder=rel, crop=crop)
    if as_json:
        print(json.dumps({"manifest": str(out), "images": len(hashes)}, indent=2))
    else:
        print(f"wrote {out}")


@app.command()
@_errors_to_exit
def bench(
    bundle: Path = typer.Argument(..., help="a bundle folder written by `skinkit export`"),
    threads: str = typer.Option("1,2", "--threads", help="host thread counts, comma-separated"),
    device: list[str] | None = typer.Option(None, "--device", help="device profile name or YAML (repeat; default: all in benchmarks/devices)"),
    warmup: int = typer.Option(5, min=0, help="untimed runs first"),
    repeats: int = typer.Option(30, min=1, help="timed runs (p50/p90 over these)"),
    android: bool = typer.Option(False, "--android", help="also run TFLite artifacts on attached Android phones (adb)"),
    benchmark_model: Path | None = typer.Option(None, "--benchmark-model", help="TFLite benchmark_model binary to push to the phone"),
    as_json: bool = typer.Option(False, "--json", help="print the full result as JSON"),
) -> None:
    """Host latency (measured), cost from the graph, and phone latency (estimated per device profile).

    An incomplete bundle (some recipe targets did not convert) is measured as it is, then exits 4."""
    from toolkit._io import captured_quietly
    from toolkit.benchmark.bench import bench_bundle
    from toolkit.errors import BadInputError

    try:
        counts = tuple(sorted({int(t) for t in threads.split(",")}))
    except ValueError:
        raise BadInputError(f"--threads {threads!r} is not a comma-separated list of integers", fix="e.g. --threads 1,2") from None
    if not counts or min(counts) < 1:
        raise BadInputError(f"--threads {threads!r} needs positive thread counts", fix="e.g. --threads 1,2")
    with captured_quietly():
        result = bench_bundle(bundle, threads=counts, profiles=device, warmup=warmup, repeats=repeats, android=android,
                              benchmark_binary=benchmark_model)
    if as_json:
        from toolkit.verify.bundle import json_safe

        print(json.dumps(json_safe(result), indent=2, allow_nan=False))
    else:
        from toolkit.benchmark.render import render_bench

        print(render_bench(result))
    if result["failed_targets"]:
        print(f"skinkit: bundle incomplete: {len(result['failed_targets'])} recipe target(s) did not convert at export:\n"
              + _not_converted_lines(result["failed_targets"]), file=sys.stderr)
        raise typer.Exit(IncompleteBundle.exit_code)


@app.command()
@_errors_to_exit
def inspect(
    artifact: Path = typer.Argument(..., help="a .tflite, .onnx or .mlpackage file"),
    as_json: bool = typer.Option(False, "--json", help="print the full structure as JSON"),
) -> None:
    """Show what is inside an artifact: I/O, ops, weight dtypes, transposes, GPU / Neural Engine eligibility."""
    from toolkit._io import captured_quietly
    from toolkit.convert.inspect import inspect_artifact, render

    with captured_quietly():
        d = inspect_artifact(artifact)
    print(json.dumps(d, indent=2) if as_json else render(d))


@app.command()
@_errors_to_exit
def matrix(as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the supported format × precision table, with the reason for every unsupported pair."""
    from toolkit.convert.matrix import support_rows, support_table

    print(json.dumps(support_rows(), indent=2) if as_json else support_table())


@app.command()
@_errors_to_exit
def run(
    bundle: Path = typer.Argument(..., help="a bundle folder (an assessment bundle or a single model's)"),
    photos: list[Path] = typer.Argument(..., help="photos (JPEG, PNG, WebP, BMP, TIFF; HEIC with pillow-heif)"),
    variant: str | None = typer.Option(None, help="which artifacts run: a target key (e.g. tflite_int8) or fused:<key>; "
                                                  "default: the first device chain that passed its gate"),
    overlay: Path | None = typer.Option(None, "--overlay", help="write <photo>_overlay.png (masks and regions) into this folder"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per photo on stdout"),
) -> None:
    """Run a bundle on photos the way an app does, and print the assessment (every output with its unit)."""
    from toolkit.client.run import assess, load_bundle
    from toolkit.errors import BadInputError

    loaded = load_bundle(bundle, variant=variant)
    if overlay is not None:
        from toolkit._io import writable_folder

        writable_folder(overlay, option="--overlay")
    console = None if as_json else _console()
    records, failed = [], 0
    for photo in photos:  # a bad photo is reported and the others still run; the exit code says some failed
        try:
            record = assess(loaded, photo, overlay_dir=overlay)
        except BadInputError as exc:
            if len(photos) == 1:
                raise
            failed += 1
            record = {"photo": str(photo), "error": exc.cause, "fix": exc.fix}
            print(f"skinkit: error: {exc.one_line()}", file=sys.stderr)
        records.append(record)
        if console and "error" not in record:
            _print_assessment(record, console)
    if as_json:
        print(json.dumps(records if len(records) > 1 else records[0], indent=2))
    if failed:
        raise typer.Exit(BadInputError.exit_code)


def _print_assessment(r: dict, console) -> None:
    console.print(f"[bold]{r['photo']}[/bold]  ({r['photo_size'][1]}×{r['photo_size'][0]}; {r['bundle']} {r['variant']})")
    for name, v in r["outputs"].items():
        if "label" in v:
            console.print(f"  {name}: {v['label']} ({v['probability']:.2f})")
        elif "values" in v:
            console.print(f"  {name}: " + ", ".join(f"{k} {x:.3g}" for k, x in v["values"].items()) + f" {v['unit']}".rstrip())
        elif "instances" in v:
            found = ", ".join(f"{i['class']} {i['score']:.2f} ({i['fraction_of_picture']:.1%})" for i in v["instances"])
            console.print(f"  {name}: {v['count']} found" + (f": {found}" if found else ""))
        elif isinstance(v.get("fraction_of_picture"), float):
            console.print(f"  {name}: {v['fraction_of_picture']:.1%} of the picture")
        elif "fraction_of_picture" in v:
            console.print(f"  {name}: " + ", ".join(f"{k} {x:.1%}" for k, x in v["fraction_of_picture"].items()))
        else:
            console.print(f"  {name}: shape {v['shape']}, {v['min']:.3g} … {v['max']:.3g} {v['unit']}".rstrip())
    for flag in r["flags"]:
        console.print(f"  [yellow]flag: {flag}[/yellow]")
    if "overlay" in r:
        console.print(f"  overlay: {r['overlay']}")


@app.command("manifest-schema")
@_errors_to_exit
def manifest_schema(pipeline: bool = typer.Option(False, "--pipeline", help="the assessment bundle's manifest"),
                    as_json: bool = typer.Option(False, "--json", help="accepted for uniformity: the schema is JSON")) -> None:
    """Print the JSON Schema of a bundle's manifest.json (a single model's, or --pipeline an assessment's)."""
    if pipeline:
        from toolkit.chain.bundle import schema
    else:
        from toolkit.bundle.manifest import schema
    print(json.dumps(schema(), indent=2))


@app.command("recipe-schema")
@_errors_to_exit
def recipe_schema(assessment: bool = typer.Option(False, "--assessment", help="the schema of an assessment recipe "
                                                                              "(components, chain, outputs)"),
                  as_json: bool = typer.Option(False, "--json", help="accepted for uniformity: the schema is JSON")) -> None:
    """Print the JSON schema of export recipes (of one model, or --assessment of several and their glue): the one
    shipped in toolkit/schema/, which a recipe's first line points editors at."""
    from toolkit.recipe import json_schema, schema_text

    if assessment:
        from toolkit.chain.recipe import json_schema
    print(schema_text(json_schema()), end="")


@app.command()
@_errors_to_exit
def data(
    model: str = typer.Argument(..., help="registered model whose task shapes the data"),
    out: Path = typer.Option(..., "--out", "-o", help="folder to write images and labels.csv into"),
    n: int = typer.Option(200, help="number of images"),
    split: str = typer.Option("test", help="synthetic split: train, val, test or calib"),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="print what was written as JSON on stdout"),
) -> None:
    """Write synthetic evaluation data in the folder format `evaluation.folder` reads."""
    from toolkit._io import writable_folder
    from toolkit.registry import get_spec
    from toolkit.tasks.data import task_data, write_folder

    spec = get_spec(model)
    write_folder(task_data(spec, n, split=split, seed=seed), spec, writable_folder(out))
    if as_json:
        print(json.dumps({"folder": str(out), "images": n, "labels": str(out / "labels.csv")}, indent=2))
    else:
        print(f"wrote {n} images and labels.csv to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
