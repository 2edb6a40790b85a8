"""Assessment recipes: several models (``components``), the glue between them (``chain``), and what the
chain reports (``outputs``), parsed once into a typed ``ChainRecipe``. Unknown keys are errors.

A component is a single-model recipe — a file (``recipe: skin_segmenter.yaml``) or its keys inline — with its
own targets and tolerances. A chain step either runs a component on a picture (``run: skin, input: image``)
or applies one glue op (``toolkit.glue``) to earlier values. A value is named ``image`` (the photo as the
chain takes it), ``<step>`` (an op's one output) or ``<step>.<output>`` (a component's output, or an op's
named one such as ``stats.area``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit.data.photo import FIT_MODES
from toolkit.errors import RecipeError
from toolkit.recipe import SCHEMA_DRAFT, Recipe, also_accepts, format_error, load_recipe, parse_recipe, read_yaml

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
TRUTHS = ("acne_grade", "skin_mask", "segmentation", "regions", "hydration", "tewl", "lesion_area", "lesion_intensity",
          "lesion_regions", "float")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChainInput(_Strict):
    size: tuple[int, int] = Field(description="[height, width] of the picture the chain takes (or one number)",
                                  json_schema_extra=also_accepts({"type": "integer"}))
    fit: Literal[FIT_MODES] = Field(  # type: ignore[valid-type]
        "center_crop", description="how an app makes that picture of a photo: the largest centred crop of the chain's "
                                   "aspect ratio, resized; or the whole photo resized")

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, value):
        return (value, value) if isinstance(value, int) else value


class ChainStep(BaseModel):
    """``{id, run: component, input: value}`` or ``{id, op: glue op, inputs: {port: value}, <op parameters>}``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(pattern=IDENT, description="the step's name; its outputs are <id> or <id>.<output>")
    run: str | None = Field(None, description="a component to run on the picture `input`")
    input: str | None = Field(None, description="the picture a component runs on (default: image)")
    op: str | None = Field(None, description="a glue op (toolkit.glue): resize, softmax, argmax, class_mask, threshold, "
                                              "apply_mask, crop_to_mask, coverage, region_stats, count_regions")
    inputs: dict[str, str] = Field({}, description="an op's inputs: {port: value}")

    @model_validator(mode="after")
    def _one_kind(self) -> "ChainStep":
        if (self.run is None) == (self.op is None):
            raise ValueError(f"step {self.id!r} needs exactly one of run: <component> or op: <glue op>")
        if self.run is not None and (self.inputs or self.params):
            raise ValueError(f"step {self.id!r} runs a component: give its picture as input: <value>, nothing else")
        if self.op is not None and self.input is not None:
            raise ValueError(f"step {self.id!r} is an op: give its inputs as inputs: {{port: value}}")
        return self

    @property
    def params(self) -> dict:
        return dict(self.model_extra or {})


Margin = float | dict[str, float]


class ChainOutput(_Strict):
    """One result of the assessment: which value it is, what it means, and how the chain is judged on it."""

    name: str = Field(pattern=IDENT)
    source: str = Field(alias="from", description="the value it is: <step> or <step>.<output>")
    description: str = ""
    unit: str | None = Field(None, description="default: the value's own (e.g. an op's 'fraction')")
    judge: str | None = Field(None, description="the task whose metrics judge it (classification, segmentation, regression, "
                                                "super_resolution); none: shown, gated on numerics against float alone")
    truth: Literal[TRUTHS] | None = Field(  # type: ignore[valid-type]
        None, description="the generator's ground truth it is scored against; 'float': the float chain's own output")
    metric: str | None = Field(None, description="the metric the gate reads (default: the judging task's headline), e.g. "
                                                 "psnr_vs_float for an output whose truth is the float chain's")
    max_drop: Margin | None = Field(
        None, description="non-inferiority margin of that metric (float chain minus device chain, in its better direction); "
                          "one number, or one per precision tier {fp32: .., fp16: .., int8: .., lowbit: ..}")
    limit: Margin | None = Field(
        None, description="the worst that metric may be for the device chain: a least value for a higher-is-better metric "
                          "(psnr_vs_float), a most for a lower-is-better one (mae_vs_float); judged on the worse end of its "
                          "95 % CI (or the point estimate with noninferiority: point). For metrics measured against the float chain")
    min_agreement: Margin | None = Field(None, description="classification/segmentation: agreement with the float chain")
    flag_below: float | None = Field(None, description="a quality flag: the result is marked when this value is below it "
                                                       "(e.g. skin coverage)")
    flag: str | None = Field(None, pattern=IDENT, description="the flag's name, e.g. low_skin_coverage")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> "ChainOutput":
        if (self.flag_below is None) != (self.flag is None):
            raise ValueError(f"output {self.name!r}: flag and flag_below go together")
        if self.judge is not None and self.truth is None:
            raise ValueError(f"output {self.name!r} is judged by {self.judge}: name its truth (a generator field, or float)")
        if self.judge is None and any(v is not None for v in (self.max_drop, self.min_agreement, self.limit, self.metric)):
            raise ValueError(f"output {self.name!r}: metric, max_drop, limit and min_agreement need a judge")
        return self

    def margin(self, which: str, tier: str) -> float | None:
        value = getattr(self, which)
        return value.get(tier) if isinstance(value, dict) else value


class FusedTarget(_Strict):
    """A graph of the whole chain: the app makes one call. Precisions that need no calibration images."""

    format: str
    precision: str = "fp32"

    @model_validator(mode="after")
    def _supported(self) -> "FusedTarget":
        from toolkit.backends import BACKENDS
        from toolkit.backends.precisions import PRECISIONS

        if self.format not in BACKENDS:
            raise ValueError(f"fused format {self.format!r} is not one of {', '.join(BACKENDS)}")
        backend = BACKENDS[self.format]
        if self.precision not in backend.precisions:
            raise ValueError(f"{self.format} supports precisions {', '.join(backend.precisions)}, not {self.precision!r}")
        if PRECISIONS[self.precision].calibrated:
            raise ValueError(f"fused {self.format} {self.precision} needs calibration of the whole chain, which skinkit does not do; "
                             f"use fp32, fp16 or a weight-only precision (the components' own targets carry {self.precision})")
        return self

    @property
    def key(self) -> str:
        return f"{self.format}_{self.precision}"


class ChainEvaluation(_Strict):
    n: int = Field(200, ge=10, le=100_000, description="held-out synthetic photos the chain is judged on")
    seed: int = 0
    bootstrap: int = Field(1000, ge=100, le=100_000)
    noninferiority: Literal["ci", "point"] = "ci"
    min_group_size: int = Field(10, ge=1)
    loss_by_component: bool = Field(True, description="also run each chain with one component on device at a time")


class ChainRecipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str = "0.1.0"
    description: str = ""
    input: ChainInput
    components: dict[str, Recipe]
    chain: tuple[ChainStep, ...] = Field(min_length=1)
    outputs: tuple[ChainOutput, ...] = Field(min_length=1)
    variants: tuple[str, ...] | None = Field(
        None, description="the target keys (e.g. tflite_int8) run as whole chains, each with every component's artifact "
                          "of that key; default: every key all components have")
    fused: tuple[FusedTarget, ...] = Field((), description="targets of one graph holding the whole chain (fusable glue only)")
    overlay: tuple[str, ...] | None = Field(
        None, description="the values `skinkit run --overlay` draws on the photo (masks, label maps, dense class scores), "
                          "e.g. [skin_mask, lesion_labels]; default: the outputs that are such values")
    evaluation: ChainEvaluation = ChainEvaluation()

    @field_validator("components")
    @classmethod
    def _names(cls, components):
        import re

        bad = [k for k in components if not re.match(IDENT, k)]
        if bad:
            raise ValueError(f"component name {bad[0]!r} is not an identifier")
        if not components:
            raise ValueError("components is empty")
        return components

    @model_validator(mode="after")
    def _refs(self) -> "ChainRecipe":
        ids = [s.id for s in self.chain]
        repeated = sorted({i for i in ids if ids.count(i) > 1} | ({"image"} & set(ids)))
        if repeated:
            raise ValueError(f"chain step id {repeated[0]!r} is used twice (or is 'image', the chain's input)")
        for s in self.chain:
            if s.run is not None and s.run not in self.components:
                raise ValueError(f"step {s.id!r} runs {s.run!r}, which is not a component ({', '.join(self.components)})")
        names = [o.name for o in self.outputs]
        if len(set(names)) < len(names):
            raise ValueError(f"outputs name {sorted({n for n in names if names.count(n) > 1})[0]!r} twice")
        return self

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json", by_alias=True)
        data["components"] = {k: json.loads(r.canonical_json()) for k, r in self.components.items()}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def _component(key: str, value: object, base: Path, source: str) -> Recipe:
    if isinstance(value, dict) and "recipe" in value:
        if set(value) != {"recipe"}:
            raise RecipeError(f"{source}: components.{key} names a recipe file: it takes no other keys "
                              f"(got {', '.join(sorted(set(value) - {'recipe'}))})", fix="put them in that recipe, or inline the recipe")
        path = Path(value["recipe"])
        recipe = load_recipe(path if path.is_absolute() else base / path)
        return recipe.model_copy(update={"name": key})
    if not isinstance(value, dict):
        raise RecipeError(f"{source}: components.{key} must be a mapping (a recipe's keys, or recipe: <file>)",
                          fix="see export_recipes/acne_gated.yaml")
    if "name" in value:
        raise RecipeError(f"{source}: components.{key} takes no name: the component's key names it", fix="remove name:")
    return parse_recipe({"name": key, **value}, source=f"{source}: components.{key}")


def is_chain_recipe(data: object) -> bool:
    return isinstance(data, dict) and "components" in data


def parse_chain_recipe(data: dict, *, source: str, base: Path) -> ChainRecipe:
    if not isinstance(data.get("components"), dict):
        raise RecipeError(f"{source}: components must map names to recipes", fix="see export_recipes/acne_gated.yaml")
    components = {k: _component(k, v, base, source) for k, v in data["components"].items()}
    try:
        return ChainRecipe.model_validate({**data, "components": components})
    except ValidationError as exc:
        problems = [format_error(e, ChainRecipe) for e in exc.errors()]
        raise RecipeError(f"{source}: " + "; ".join(problems), fix="correct the key(s) named; see export_recipes/acne_gated.yaml") from None


def load_chain_recipe(path: str | Path) -> ChainRecipe:
    path = Path(path)
    return parse_chain_recipe(read_yaml(path), source=str(path), base=path.parent)


SCHEMA_FILE = Path(__file__).parent.parent / "schema" / "assessment.schema.json"  # shipped beside recipe.schema.json


def json_schema() -> dict:
    """The JSON Schema of an assessment recipe file, generated from :class:`ChainRecipe`. A component is written as
    ``{recipe: FILE}`` or as a single-model recipe's keys without ``name`` (its key names it), so the file's schema
    says that where the typed recipe holds the parsed :class:`Recipe`."""
    schema = ChainRecipe.model_json_schema()
    defs = schema["$defs"]
    recipe = defs.pop("Recipe")
    defs["Component"] = {**recipe, "title": "Component",
                         "description": "a single-model recipe's keys, without name: the component's key names it",
                         "properties": {k: v for k, v in recipe["properties"].items() if k != "name"},
                         "required": [k for k in recipe["required"] if k != "name"]}
    defs["ComponentFile"] = {"title": "ComponentFile", "type": "object", "additionalProperties": False, "required": ["recipe"],
                             "properties": {"recipe": {"type": "string", "description": "a single-model recipe file, "
                                                                                          "relative to this one"}}}
    schema["properties"]["components"]["additionalProperties"] = {"anyOf": [{"$ref": "#/$defs/ComponentFile"},
                                                                            {"$ref": "#/$defs/Component"}]}
    schema["properties"]["components"]["minProperties"] = 1
    return {"$schema": SCHEMA_DRAFT, **schema, "title": "skinkit assessment recipe",
            "description": "Several models, the glue between them and what the assessment reports (skinkit export RECIPE)."}
