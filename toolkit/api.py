"""``toolkit.export``: the Python entry point to the export pipeline, for a recipe or for a plain ``torch.nn.Module``.

A module takes the bring-your-own route of a recipe (``model: {name: file.py:factory, checkpoint, task, input_size,
normalization, labels}``, ``toolkit.load.describe.user_spec``), so it is loaded, probed, converted and judged exactly
as that recipe would be: ``export()`` writes the recipe, a factory that rebuilds the network and its weights into
``<out>/<name>.recipe/``, then runs the same pipeline on it. That folder stays, so ``skinkit export
<out>/<name>.recipe/recipe.yaml`` repeats the export and ``skinkit verify <out>/<name>`` re-checks the bundle (in a
process that can import the network's class).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import BadInputError

if TYPE_CHECKING:
    import torch

    from toolkit.pipeline import ExportResult
    from toolkit.progress import ProgressCallback
    from toolkit.recipe import Recipe

# normalization= shortcuts: what the network was trained to see, as a recipe's model.normalization says it
NORMALIZATIONS: dict[str, dict] = {
    "imagenet": {"pixel_range": "0-1", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "0-1": {"pixel_range": "0-1"},  # pixel / 255
    "0-255": {"pixel_range": "0-255"},  # raw pixels (a network that normalizes itself)
    "-1-1": {"pixel_range": "0-1", "mean": 0.5, "std": 0.5},  # pixel / 127.5 - 1
}

_FACTORY = '''"""Written by toolkit.export(): rebuilds the network it was handed (pickled in module.pt beside this file;
the weights are loaded from weights.pt by the recipe's checkpoint). Unpickling needs the network's class importable."""

from pathlib import Path

import torch


def build():
    return torch.load(Path(__file__).with_name("module.pt"), weights_only=False)  # written by skinkit itself
'''


def export(model: Any, example_input: Any = None, *, targets: Sequence[str | dict] | None = None, data: str | Path | None = None,
           task: str | None = None, labels: Sequence[str] | None = None, normalization: str | dict | None = None,
           out: str | Path = "bundles", name: str | None = None, outputs: Sequence[str | dict] | None = None,
           description: str | None = None, n: int | None = None, ground_truth: str = "labels",
           calibration: str | Path = "synthetic", recipe: dict | None = None, force: bool = False, strict: bool = False,
           check: bool = True, progress: ProgressCallback | None = None, recipe_path: str | Path | None = None,
           out_dir: str | Path | None = None, console=None) -> ExportResult | dict:
    """Export ``model`` to verified on-device artifacts; returns the typed result (bundle path, artifacts with their
    format, precision, verdict, headline metric, drop with its 95 % CI, gate margin and worst skin-tone group, and the
    manifest).

    ``model`` is one of:

    - a ``torch.nn.Module`` (your own; skinkit need not have trained it) with ``example_input``, one image batch
      ``[1, 3, H, W]`` as the network takes it (its size is the input size). Also needed: ``targets`` (e.g.
      ``["onnx", "tflite_int8", "coreml_fp16"]``, or recipe target mappings), ``data`` (a folder of images with a
      labels.csv, as a recipe's ``evaluation.folder``, or ``"synthetic"`` when the task has a generator),
      ``normalization`` (``"imagenet"``, ``"0-1"``, ``"0-255"``, ``"-1-1"`` or ``{pixel_range, mean, std}``) and
      ``task`` (inferred only for class scores whose count matches ``labels``). ``recipe``: further recipe keys
      (``tolerances``, ``benchmark``, ``compress``, ``input`` …), merged in.
    - a ``Recipe`` (with ``recipe_path``, which its relative paths are read against; default the working folder) or
      a recipe file: the export ``skinkit export`` runs. An assessment recipe file returns its manifest.

    ``out`` (or ``out_dir``): the bundle goes to ``out/<name>``. ``progress``: called with each
    ``toolkit.progress.ProgressEvent``. A gate failure raises ``VerificationFailed`` and an incomplete bundle
    ``IncompleteBundle`` (each with ``.summary``) unless ``check=False``, which returns the result (``passed`` False).
    """
    from toolkit.recipe import Recipe

    out = Path(out_dir if out_dir is not None else out)
    if isinstance(model, Recipe):
        path = Path(recipe_path) if recipe_path is not None else Path.cwd() / f"{model.name}.yaml"
        return _run(model, path, out, force=force, strict=strict, check=check, progress=progress, console=console)
    if isinstance(model, (str, Path)):
        return _export_file(Path(model), out, force=force, strict=strict, check=check, progress=progress, console=console)
    import torch

    if not isinstance(model, torch.nn.Module):
        raise BadInputError(f"toolkit.export takes a torch.nn.Module, a Recipe or a recipe file, not {type(model).__name__}",
                            fix="pass your network (with example_input=, targets=, data=, task=, normalization=) or a recipe")
    recipe_obj, source = build_recipe(model, example_input, targets=targets, data=data, task=task, labels=labels,
                                      normalization=normalization, name=name, outputs=outputs, description=description, n=n,
                                      ground_truth=ground_truth, calibration=calibration, extra=recipe)
    folder = out / f"{recipe_obj.name}.recipe"
    if (out / recipe_obj.name).exists() and not force:  # the pipeline refuses; the recipe it was exported from stays as it was
        return _run(recipe_obj, folder / "recipe.yaml", out, force=False, strict=strict, check=check, progress=progress, console=console)
    path = _write_source(folder, model, recipe_obj, source)
    return _run(recipe_obj, path, out, force=force, strict=strict, check=check, progress=progress, console=console)


def build_recipe(model: torch.nn.Module, example_input, *, targets, data, task, labels, normalization, name=None, outputs=None,
                 description=None, n=None, ground_truth="labels", calibration="synthetic", extra=None) -> tuple[Recipe, dict]:
    """The recipe a ``model`` export runs, in memory (its model is ``<name>.py:build`` with ``weights.pt`` beside the
    recipe), and what ``export`` writes beside it. One line naming what to pass when something cannot be inferred."""
    from toolkit.recipe import parse_recipe

    h, w = _input_size(example_input)
    output = _run_once(model, example_input)
    if task is None:
        task = _infer_task(output, labels)
    if normalization is None:
        raise BadInputError("normalization is not given, and what pixel scale the network was trained on cannot be read from it",
                            fix="pass normalization='imagenet', '0-1' (pixel / 255), '0-255' (raw pixels), '-1-1', or "
                                "{'pixel_range': '0-255', 'mean': [...], 'std': [...]}")
    if isinstance(normalization, str):
        if normalization not in NORMALIZATIONS:
            raise BadInputError(f"normalization {normalization!r} is not one of {', '.join(NORMALIZATIONS)}",
                                fix="pass one of those, or {'pixel_range': '0-1' | '0-255', 'mean': [...], 'std': [...]}")
        normalization = NORMALIZATIONS[normalization]
    if not targets:
        raise BadInputError("targets is empty: nothing to export", fix="pass e.g. targets=['onnx', 'tflite_int8', 'coreml_fp16']")
    if data is None:
        raise BadInputError("data is not given: the artifacts are judged against the float model on evaluation images",
                            fix="pass data= a folder of images with labels.csv (as a recipe's evaluation.folder), or 'synthetic'")
    name = name or _snake(type(model).__name__)
    described = {"task": task, "input_size": [h, w], "normalization": normalization, "labels": list(labels) if labels else None,
                 "outputs": list(outputs) if outputs else None, "description": description}
    evaluation = ({"source": "synthetic"} if str(data) == "synthetic"
                  else {"source": "folder", "folder": str(_folder(data, "data"))})
    evaluation["ground_truth"] = ground_truth
    if n is not None:
        evaluation["n"] = n
    recipe = {"name": name, "model": {"name": f"{name}.py:build", "checkpoint": "weights.pt",
                                      **{k: v for k, v in described.items() if v is not None}},
              "targets": [_target(t) for t in targets], "evaluation": evaluation,
              "calibration": {"source": "synthetic"} if str(calibration) == "synthetic"
              else {"source": "folder", "folder": str(_folder(calibration, "calibration"))}}
    for key, value in (extra or {}).items():
        recipe[key] = {**recipe[key], **value} if isinstance(value, dict) and isinstance(recipe.get(key), dict) else value
    return parse_recipe(recipe, source="toolkit.export"), recipe


def _run(recipe: Recipe, path: Path, out: Path, *, force: bool, strict: bool, check: bool, progress, console) -> ExportResult:
    from toolkit.errors import IncompleteBundle, VerificationFailed
    from toolkit.pipeline import export as run_export

    try:
        return run_export(recipe, recipe_path=path, out_dir=out, force=force, strict=strict, progress=progress, console=console)
    except (VerificationFailed, IncompleteBundle) as exc:
        if check or getattr(exc, "result", None) is None:
            raise
        return exc.result


def _export_file(path: Path, out: Path, **kw):
    from toolkit.chain.recipe import is_chain_recipe, parse_chain_recipe
    from toolkit.recipe import parse_recipe, read_yaml

    data = read_yaml(path)
    if is_chain_recipe(data):
        from toolkit.chain.export import export_chain

        return export_chain(parse_chain_recipe(data, source=str(path), base=path.parent), recipe_path=path, out_dir=out,
                            force=kw["force"], console=kw["console"], progress=kw["progress"])
    return _run(parse_recipe(data, source=str(path)), path, out, **kw)


def _write_source(folder: Path, model, recipe: Recipe, source: dict) -> Path:
    """The recipe, the factory, the pickled network and its weights in ``folder``; the recipe's path."""
    import copy

    import torch
    import yaml

    from toolkit._io import output_error, writable_folder, write_atomically

    writable_folder(folder, option="out")
    network = copy.deepcopy(model).cpu().eval()  # the caller's module is left as it was (device, mode)
    try:
        torch.save(network, folder / "module.pt")
    except Exception as exc:  # noqa: BLE001 — pickling runs the user's code: name the cause in one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BadInputError(f"the model cannot be pickled ({type(exc).__name__}: {first}), which export needs to rebuild it",
                            fix="define the network's class at the top level of an importable module (not a lambda or local "
                                "class), or write a recipe with model.name: file.py:factory") from None
    try:
        torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, folder / "weights.pt")
    except OSError as exc:
        raise output_error(folder, exc, option="out") from None
    write_atomically(folder / f"{recipe.name}.py", _FACTORY)  # the artifacts are named after the factory's file
    path = folder / "recipe.yaml"
    write_atomically(path, "# written by toolkit.export(); `skinkit export` this file to repeat the export\n"
                     + yaml.safe_dump(source, sort_keys=False))
    return path


def _input_size(example_input) -> tuple[int, int]:
    import torch

    if not isinstance(example_input, torch.Tensor):
        raise BadInputError(f"example_input is {type(example_input).__name__}, not a torch.Tensor",
                            fix="pass one image batch as the network takes it, e.g. torch.rand(1, 3, 224, 224)")
    shape = list(example_input.shape)
    if len(shape) != 4 or shape[0] != 1 or shape[1] != 3:
        raise BadInputError(f"example_input has shape {shape}, but skinkit exports image networks taking one RGB batch [1, 3, H, W]",
                            fix="pass e.g. torch.rand(1, 3, 224, 224) at the network's input size")
    return shape[2], shape[3]


def _run_once(model, example_input):
    """The model's output on ``example_input``; its failure as one line."""
    import torch

    from toolkit.load.describe import run_once

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return run_once(model, example_input.to(device), what=f"example_input of shape {list(example_input.shape)}",
                    fix="pass an example_input of the shape the network takes, [1, 3, H, W]")


def _infer_task(output, labels) -> str:
    """Class scores whose count matches ``labels`` are a classifier's; nothing else is guessed."""
    import torch

    from toolkit.tasks import TASKS

    if labels and isinstance(output, torch.Tensor) and output.dim() == 2 and output.shape[1] == len(labels):
        return "classification"
    shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    raise BadInputError(f"cannot tell what the model's output ({shape}) means, so neither its metric nor its gate is known",
                        fix=f"pass task= (one of {', '.join(TASKS)}), with labels= for class scores, normalization= and an "
                            "example_input at the input size")


def _target(t: str | dict) -> dict:
    """``"tflite_int8"`` (or ``"onnx"``: fp32) as a recipe target; a mapping as it is."""
    from toolkit.backends import BACKENDS

    if isinstance(t, dict):
        fmt = t.get("format")
        spec = t
    else:
        fmt, _, precision = str(t).partition("_")
        spec = {"format": fmt, **({"precision": precision} if precision else {})}
    if fmt not in BACKENDS:
        raise BadInputError(f"unknown target format {fmt!r} (in {t!r}); known: {', '.join(BACKENDS)}",
                            fix="name targets as FORMAT or FORMAT_PRECISION, e.g. 'onnx', 'tflite_int8', 'coreml_fp16'")
    return spec


def _folder(path, what: str) -> Path:
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise BadInputError(f"{what} {path!s} is not a folder", fix=f"pass {what}= a folder of images with labels.csv, or 'synthetic'")
    return folder


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "model"
