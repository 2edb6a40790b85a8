"""Stage 1, load: the recipe's model reference to an eval-mode network, its spec and its provenance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolkit.load.loader import LoadedModel, load_model

if TYPE_CHECKING:
    import numpy as np

    from toolkit.context import Context
    from toolkit.load.contract import InputContract
    from toolkit.recipe import ModelRef, Recipe


def input_contract(recipe: Recipe) -> InputContract:
    """The device contract the recipe asks for (layout, pixel range)."""
    from toolkit.load.contract import InputContract

    return InputContract(layout=recipe.input.layout, pixel_range=recipe.input.pixel_range)


def contract_images(images: np.ndarray, pixel_range: str, layout: str) -> np.ndarray:
    """uint8 NHWC RGB images as the device contract takes them (float, range, layout)."""
    import numpy as np

    x = images.astype(np.float32)
    if pixel_range == "0-1":
        x = x / 255.0
    return x if layout == "nhwc" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def run(context: Context, model: ModelRef) -> LoadedModel:
    """Load the model, then run it once on one input of its contract and check what it returns against the
    description (names, shapes, what the task reads) and that the evaluation data can be annotated for it:
    a mismatch stops here, in one line, before anything converts."""
    from dataclasses import replace

    from toolkit.load.describe import check_synthetic, probe, user_spec

    spec = user_spec(model, "user") if model.is_user_model else None
    loaded = load_model(model.name, checkpoint=model.checkpoint, spec_from=model.spec_from, base_dir=context.recipe_dir, spec=spec)
    loaded = replace(loaded, spec=probe(loaded.module, loaded.spec))
    if context.recipe.evaluation.source == "synthetic" and context.recipe.evaluation.ground_truth == "labels":
        check_synthetic(loaded.spec, "evaluation")
    return loaded
