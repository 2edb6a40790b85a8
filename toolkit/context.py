"""What every stage runs with: the parsed recipe, where it lives, and where the export writes."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toolkit.data.records import TaskData
    from toolkit.recipe import Recipe
    from toolkit.registry import ModelSpec


@dataclass(frozen=True)
class Context:
    recipe: Recipe
    recipe_path: Path  # paths inside the recipe are relative to its folder
    staging: Path  # the bundle being written (the bundle itself when `skinkit verify` re-checks one)
    log_path: Path  # the backends' own output; kept when an export fails
    cache: str | None = None  # the conversion cache (a folder or fsspec URL, ``toolkit.convert.cache``); None: none
    # Builds an artifact's runner for verification in place of the in-process one (``toolkit.scale`` shards the
    # evaluation images over workers with it): ``runner_factory(artifact, threads=, layout=, pixel_range=)``.
    runner_factory: Callable | None = None

    @property
    def recipe_dir(self) -> Path:
        return self.recipe_path.parent

    def resolve(self, path: Path) -> Path:
        """A path from the recipe, absolute."""
        return (path if path.is_absolute() else self.recipe_dir / path).resolve()

    def images(self, spec: ModelSpec, section, *, split: str, labelled: bool = True) -> TaskData:
        """The images a recipe section (evaluation, calibration) names: the synthetic generator's
        ``split``, or a folder relative to the recipe; with their targets when ``labelled``."""
        from toolkit.tasks.data import load_folder, task_data

        if section.source == "folder":
            return load_folder(spec, self.resolve(section.folder), limit=section.n, labelled=labelled)
        return task_data(spec, section.n, split=split, seed=section.seed, labelled=labelled)


def portable(path: Path, base: Path) -> str:
    """``path`` as a manifest records it: relative to ``base`` when it lies under it, else its file name only, so a
    bundle never names the folders of the machine it was built on."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return path.name


def recipe_record(recipe_path: Path, bundle: Path) -> str:
    """Where a bundle's manifest says its recipe is: relative to the bundle, so that ``skinkit verify`` finds the
    recipe's model files from the bundle without the build machine's absolute paths; its file name only when the two
    share no folder below the root."""
    recipe_path, bundle = Path(recipe_path).resolve(), Path(bundle).resolve()
    if os.path.commonpath([recipe_path, bundle]) == recipe_path.anchor:
        return recipe_path.name
    return Path(os.path.relpath(recipe_path, bundle)).as_posix()


def recorded_recipe(bundle: Path, recorded: str, *, override: Path | None = None, needed: bool = False) -> Path:
    """The recipe path a manifest records, absolute: relative to the bundle (manifests before that named it absolute),
    or ``override`` (``--recipe``: the bundle was moved away from its recipe). ``needed``: the recipe names files
    beside it (a model factory, a checkpoint, data folders), so a recipe that is not there is an error."""
    from toolkit.errors import BadInputError

    if override is not None:
        if not Path(override).is_file():
            raise BadInputError(f"--recipe {override} is not a file", fix="pass the recipe the bundle was exported from")
        return Path(override).resolve()
    path = Path(recorded)
    path = path if path.is_absolute() else (Path(bundle) / path).resolve()
    if path.is_relative_to(Path(bundle).resolve()):  # code and weights beside it would then come from the bundle
        raise BadInputError(f"the manifest names a recipe inside the bundle ({recorded!r}); an export never puts its "
                            "recipe there, so the manifest was edited", fix="re-export the bundle, or pass --recipe PATH "
                                                                           "to the recipe it was exported from")
    if needed and not path.is_file():
        raise BadInputError(f"the recipe this bundle was exported from is not at {path} (the manifest records it as "
                            f"{recorded!r}, relative to the bundle), and its model or data are found beside it",
                            fix="pass --recipe PATH to that recipe (the bundle was moved), or verify the bundle where it was written")
    return path


def names_files(recipe, *, evaluation: bool = True) -> bool:
    """Whether re-checking a bundle needs files its recipe names relative to itself: a user's model or checkpoint,
    or (``evaluation``) the evaluation folder."""
    m = recipe.model
    return bool(":" in m.name or m.name.endswith(".pt2") or m.checkpoint
                or (evaluation and recipe.evaluation.folder is not None))
