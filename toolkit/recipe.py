"""Export recipes: YAML parsed once into a typed, validated object. Unknown keys are errors."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from toolkit.backends import BACKENDS
from toolkit.backends.precisions import PRECISIONS
from toolkit.errors import RecipeError, did_you_mean
from toolkit.tasks import TASKS

Precision = Literal[tuple(PRECISIONS)]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_SCHEMA_TYPE_KEYS = ("type", "items", "prefixItems", "minItems", "maxItems", "$ref")


def also_accepts(alternative: dict, *, per_item: bool = False):
    """``json_schema_extra`` for a field whose before-validator takes a shorthand the typed field does not show (one
    number for a square size or for all three channels, a bare name for an output), so the shipped JSON Schema
    accepts what the loader accepts; ``per_item``: the shorthand is of each list item."""
    def extra(schema: dict) -> None:
        if "anyOf" not in schema:
            schema["anyOf"] = [{k: schema.pop(k) for k in _SCHEMA_TYPE_KEYS if k in schema}]
        if not per_item:
            schema["anyOf"].insert(0, alternative)
            return
        for option in schema["anyOf"]:
            if "items" in option:
                option["items"] = {"anyOf": [alternative, option["items"]]}
    return extra


OUTPUT_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class OutputDecl(_Strict):
    """One output of a user's model, as its artifacts will name it."""

    name: str = Field(pattern=OUTPUT_NAME, description="the output's name in every artifact (an identifier)")
    description: str = ""
    unit: str = ""
    shape: tuple[int | None, ...] | None = Field(
        None, description="per image, as the PyTorch model returns it (no batch axis; null: any size), e.g. [4] or [5, 96, 96]; "
                          "checked on one forward pass before anything converts")

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape):
        if shape is not None and any(d is not None and d < 1 for d in shape):
            raise ValueError(f"shape sizes must be >= 1 or null (got {list(shape)})")
        return shape


class NormalizationDecl(_Strict):
    """What the network was trained to see: ``(pixel - mean) / std``, with pixels in ``pixel_range``."""

    pixel_range: Literal["0-1", "0-255"] = Field("0-1", description="the range mean and std are expressed in")
    mean: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="one number, or one per channel in the network's channel order",
                                             json_schema_extra=also_accepts({"type": "number"}))
    std: tuple[float, float, float] = Field((1.0, 1.0, 1.0), description="one number, or one per channel in the network's channel order",
                                            json_schema_extra=also_accepts({"type": "number"}))

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _broadcast(cls, value, info):
        if isinstance(value, (int, float)):
            return (value,) * 3
        if isinstance(value, (list, tuple)) and len(value) != 3:
            raise ValueError(f"{info.field_name} is one number or one per channel (three), got {len(value)}")
        return value

    @field_validator("std")
    @classmethod
    def _nonzero(cls, std):
        if any(not v > 0 for v in std):
            raise ValueError(f"std must be > 0 (got {list(std)})")
        return std

    def unit_scale(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """mean and std in 0–1 pixel units, as a spec keeps them."""
        k = 255.0 if self.pixel_range == "0-255" else 1.0
        return tuple(m / k for m in self.mean), tuple(s / k for s in self.std)


# What describes a user's model, each overriding the borrowed spec's (``spec_from``); unset, they leave a
# recipe's hash as it was.
DESCRIPTION_FIELDS = ("outputs", "task", "description", "input_size", "output_size", "channel_order", "normalization",
                      "labels", "metric", "task_output")


class ModelRef(_Strict):
    name: str = Field(description="a registered model, 'path/to/file.py:factory', or 'path/to/program.pt2'")
    checkpoint: Path | None = Field(None, description="weights (.safetensors, .pt/.pth); default: the shipped trained weights")
    spec_from: str | None = Field(None, description="registered model whose contract a user model borrows; "
                                                    "each field below overrides the borrowed one")
    outputs: tuple[OutputDecl, ...] | None = Field(
        None, description="a user model's outputs, in the order it returns them (or the keys of the dict it returns); "
                          "a name or {name, description, unit, shape} each; default: the spec_from model's outputs, "
                          "else the task's one output",
        json_schema_extra=also_accepts({"type": "string", "pattern": OUTPUT_NAME}, per_item=True))
    task: str | None = Field(None, description=f"what the outputs mean and how they are judged: one of {', '.join(TASKS)}")
    description: str | None = Field(None, description="one line on what the model does (manifest, report)")
    input_size: tuple[int, int] | None = Field(None, description="[height, width] of the network's input (or one number)",
                                               json_schema_extra=also_accepts({"type": "integer"}))
    output_size: tuple[int, int] | None = Field(
        None, description="[height, width] of a dense output (segmentation, super-resolution); default: what the model returns",
        json_schema_extra=also_accepts({"type": "integer"}))
    channel_order: Literal["RGB", "BGR"] | None = Field(
        None, description="the channel order the network was trained on; apps always hand over RGB (a BGR network's graph swaps)")
    normalization: NormalizationDecl | None = Field(
        None, description="{pixel_range, mean, std}: the network sees (pixel - mean) / std; "
                          "a model that normalizes itself: {pixel_range: 0-255} (or 0-1) alone")
    labels: tuple[str, ...] | None = Field(None, description="class names, in the order of the class scores")
    metric: str | None = Field(None, description="the headline task metric the gate judges (default: the task's)")
    task_output: str | None = Field(None, description="the output the task's metrics read (default: the first); "
                                                      "the others are gated on numerics")

    @field_validator("outputs", mode="before")
    @classmethod
    def _names(cls, value):
        if isinstance(value, (list, tuple)):
            return tuple({"name": v} if isinstance(v, str) else v for v in value)
        return value

    @field_validator("input_size", "output_size", mode="before")
    @classmethod
    def _square(cls, value):
        return (value, value) if isinstance(value, int) else value

    @field_validator("input_size", "output_size")
    @classmethod
    def _sizes(cls, value):
        if value is not None and not all(8 <= v <= 8192 for v in value):
            raise ValueError("sizes are 8 to 8192 pixels")
        return value

    @field_validator("task")
    @classmethod
    def _known_task(cls, task):
        if task is not None and task not in TASKS:
            raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
        return task

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, labels):
        if labels is not None:
            if not labels:
                raise ValueError("labels is empty: name the classes in the order of the class scores")
            repeated = sorted({x for x in labels if labels.count(x) > 1})
            if repeated:
                raise ValueError(f"labels names {', '.join(repeated)} more than once")
        return labels

    @property
    def is_user_model(self) -> bool:
        return self.name.endswith(".pt2") or ":" in self.name

    @model_validator(mode="after")
    def _describes_user_model(self) -> "ModelRef":
        given = [f for f in DESCRIPTION_FIELDS if getattr(self, f) is not None]
        if given and not self.is_user_model:
            raise ValueError(f"model.{given[0]} describes your own model ('file.py:factory' or '.pt2'); "
                             f"the registered model {self.name!r} declares its own {given[0].replace('_', ' ')}")
        if self.outputs is not None:
            names = [o.name for o in self.outputs]
            if not names:
                raise ValueError("model.outputs is empty: name at least one output")
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"model.outputs names {', '.join(repeated)} more than once")
            if "image" in names:
                raise ValueError("model.outputs may not be named 'image': that is the artifacts' input")
            if self.task_output is not None and self.task_output not in names:
                raise ValueError(f"model.task_output {self.task_output!r} is not one of model.outputs ({', '.join(names)})")
        if self.is_user_model and self.spec_from is None:
            self._check_complete()
        return self

    def _check_complete(self) -> None:
        """Without ``spec_from`` the recipe is the whole description: what no default can stand for is named."""
        missing = [f for f in ("task", "input_size", "normalization") if getattr(self, f) is None]
        if self.task is not None:
            task = TASKS[self.task]
            if task.needs_labels and self.labels is None:
                missing.append("labels")
            if task.default_output is None and self.outputs is None:
                missing.append("outputs")
        if missing:
            raise ValueError(f"model {self.name!r} borrows no spec (spec_from), so the recipe must give "
                             f"model.{', model.'.join(missing)}")


class InputConfig(_Strict):
    layout: Literal["nhwc", "nchw"] = "nhwc"
    pixel_range: Literal["0-255", "0-1"] = "0-255"


class ToleranceOverride(_Strict):
    max_abs: float | None = Field(None, gt=0, description="absolute bound on each output's max abs error vs float, "
                                                          "in the output's own units")
    max_rel: float | None = Field(None, gt=0, description="bound on each output's max abs error vs float divided by "
                                                          "its range (max - min of the float output over the evaluation "
                                                          "set; an integer output's quantization step, 1): scales with the model's outputs")
    min_sqnr_db: float | None = Field(None, description="lower bound on each output's SQNR vs float, in dB")
    min_cosine: float | None = Field(None, ge=-1, le=1)
    min_agreement: float | None = Field(None, ge=0, le=1)
    max_metric_drop: float | None = Field(None, ge=0, description="non-inferiority margin of the headline task metric")
    margins: dict[str, float] = Field({}, description="non-inferiority margins on other task metrics, e.g. {recall.severe: 0.02}")
    max_group_drop: float | None = Field(None, ge=0, description="largest headline-metric drop allowed in any skin-tone group")
    noninferiority: Literal["ci", "point"] | None = Field(
        None, description="how these margins are judged (default: evaluation.noninferiority); 'point' suits a budget "
                          "tighter than the set's sampling error, e.g. 0.5 pt on 200 images")

    @field_validator("margins")
    @classmethod
    def _non_negative(cls, margins: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in margins.items() if not v >= 0]
        if bad:
            raise ValueError(f"margins must be >= 0 (got {', '.join(f'{k}: {margins[k]}' for k in bad)})")
        return margins


class _TargetFields(_Strict):
    """What every target has; each backend's options (``toolkit.backends``) join these in :data:`Target`."""

    format: str
    precision: Precision = "fp32"
    tolerance: ToleranceOverride | None = Field(
        None, description="this target's own gate (an accuracy budget), on top of tolerances.<precision>; "
                          "with keep_float: auto, the budget the search meets")

    @model_validator(mode="after")
    def _supported(self) -> "_TargetFields":
        backend = BACKENDS[self.format]
        if self.precision not in backend.precisions:
            why = backend.why_unsupported(self.precision)
            raise ValueError(f"{self.format} supports precisions {', '.join(backend.precisions)}, not {self.precision!r}"
                             + (f" ({why})" if why else ""))
        for name, owners in _OPTION_OWNER.items():  # another format's option, set: name the formats it belongs to
            if backend not in owners and getattr(self, name) != owners[0].options.model_fields[name].default:
                where = " and ".join(o.options.applies_to.get(name, f"{o.name} targets") for o in owners)
                raise ValueError(f"{name} applies to {where} only")
        self.backend_options.check_precision(self.precision)
        return self

    @property
    def backend_options(self):
        """This target's options, typed by its backend (``toolkit.backends.<format>``)."""
        options = BACKENDS[self.format].options
        return options(**{name: getattr(self, name) for name in options.model_fields})

    @property
    def variant(self) -> str:
        """The precision plus what distinguishes two targets of one precision (a palette's grouping)."""
        return self.precision + self.backend_options.variant_suffix()

    @property
    def key(self) -> str:
        return f"{self.format}_{self.variant}"


def _target_model() -> type[_TargetFields]:
    """The ``targets[]`` schema, generated from the backend registry: the common fields, every backend's
    typed options (each valid on its own format's targets only), and ``format`` one of the registered ones."""
    fields: dict = {"format": (Literal[tuple(BACKENDS)], ...)}  # type: ignore[valid-type]
    for backend in BACKENDS.values():
        for name, info in backend.options.model_fields.items():
            if name in _OPTION_OWNER:  # one option shared by several formats: the same type, default and meaning
                first = fields[name][1]
                if (info.annotation, info.default, info.metadata) != (first.annotation, first.default, first.metadata):
                    raise TypeError(f"target option {name!r} of backend {backend.name} differs from {_OPTION_OWNER[name][0].name}'s")
                _OPTION_OWNER[name].append(backend)
                continue
            if name in fields or name in _TargetFields.model_fields:
                raise TypeError(f"target option {name!r} of backend {backend.name} is defined twice")
            _OPTION_OWNER[name] = [backend]
            fields[name] = (info.annotation, info)
    return create_model("Target", __base__=_TargetFields, **fields)


_OPTION_OWNER: dict = {}  # option name -> the backends it belongs to
Target = _target_model()


def _check_source(cfg, section: str):
    """An image source is the synthetic generator or a folder, and a folder only with source 'folder'."""
    if cfg.source == "folder" and cfg.folder is None:
        raise ValueError(f"source 'folder' needs {section}.folder")
    if cfg.source == "synthetic" and cfg.folder is not None:
        raise ValueError(f"{section}.folder is set but source is 'synthetic'; set source: folder")
    return cfg


class CalibrationConfig(_Strict):
    """Images whose activation ranges set the scales of full-integer targets (int8, int16x8)."""

    source: Literal["synthetic", "folder", "manifest"] = "synthetic"
    n: int = Field(64, ge=1, le=10_000)
    seed: int = 0
    folder: Path | None = None
    manifest: Path | None = Field(None, description="source manifest: a calibration set manifest (calibration/*.yaml), hashes checked")
    allow_unreadable: bool = Field(False, description="manifest: skip (and report) unreadable or changed images instead of failing")

    @model_validator(mode="after")
    def _folder(self) -> "CalibrationConfig":
        if self.source == "manifest":
            if self.manifest is None:
                raise ValueError("source 'manifest' needs calibration.manifest")
            if self.folder is not None:
                raise ValueError("calibration.folder is set but source is 'manifest'")
            return self
        if self.manifest is not None:
            raise ValueError("calibration.manifest is set but source is not 'manifest'; set source: manifest")
        return _check_source(self, "calibration")


class DistillConfig(_Strict):
    """Label-free recovery after pruning: the pruned network learns the float network's outputs."""

    n: int = Field(1024, ge=1, le=100_000, description="unlabeled images (the generator's train split)")
    epochs: int = Field(3, ge=1, le=100)
    lr: float = Field(1e-3, gt=0)
    seed: int = 0


class PruningConfig(_Strict):
    method: Literal["magnitude", "channels"] = Field(
        "magnitude", description="magnitude: zero individual weights (stored sparse by coreml sparse); "
                                 "channels: remove whole channels, dependency-aware, so the graph itself shrinks")
    sparsity: float = Field(gt=0.0, lt=1.0, description="fraction of weights (magnitude) or of each layer's channels (channels) removed")
    scope: Literal["global", "per_layer"] = "global"
    exclude: tuple[str, ...] = Field((), description="module-name prefixes left dense (e.g. the classifier)")
    overrides: dict[str, float] = Field(
        {}, description="a ratio per module type (Linear, Conv2d, a block class) or module name (path, prefix or glob such "
                        "as 'blocks.*.mlp.0'); a name beats a type, a type beats sparsity; 0 leaves the layer alone")
    distill: DistillConfig | None = Field(None, description="recover accuracy by distillation from the float model (no labels)")
    max_metric_drop: float | None = Field(
        None, ge=0, description="budget: largest headline-metric drop of the pruned float model against the original "
                                "(judged as evaluation.noninferiority says); over it, the export fails (exit 3)")
    max_group_drop: float | None = Field(None, ge=0, description="budget: the same, in the worst skin-tone group (point estimate)")

    @field_validator("overrides")
    @classmethod
    def _ratios(cls, overrides: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in overrides.items() if not 0.0 <= v < 1.0]
        if bad:
            raise ValueError(f"override ratios must be in [0, 1) (got {', '.join(f'{k}: {overrides[k]}' for k in bad)})")
        return overrides


class CompressConfig(_Strict):
    pruning: PruningConfig | None = None


class EvaluationConfig(_Strict):
    source: Literal["synthetic", "folder"] = "synthetic"
    n: int = Field(200, ge=1, le=100_000)
    seed: int = 0
    split: Literal["test", "val"] = "test"
    folder: Path | None = None
    ground_truth: Literal["labels", "float"] = Field(
        "labels", description="'labels': the folder's labels.csv (or the synthetic annotations); 'float': no labels — the "
                              "float model's own decisions stand for the truth, so every metric measures agreement with it "
                              "(a folder then needs no labels.csv)")
    bootstrap: int = Field(1000, ge=100, le=100_000, description="bootstrap replicates for 95 % confidence intervals")
    noninferiority: Literal["ci", "point"] = Field(
        "ci", description="'ci': a metric's drop passes if the upper end of its paired 95 % CI is within the margin; "
                          "'point': if the point estimate is")
    min_group_size: int = Field(10, ge=1, description="skin-tone groups with fewer images are reported but not gated")
    culprits: Literal["failed", "all", "off"] = Field(
        "failed", description="rank the layers each artifact degrades (per-layer SQNR against float): for failing artifacts, all, or none")
    culprit_images: int = Field(16, ge=1, le=256, description="evaluation images the culprit finder runs")

    @model_validator(mode="after")
    def _folder(self) -> "EvaluationConfig":
        return _check_source(self, "evaluation")


class BenchmarkConfig(_Strict):
    enabled: bool = True
    warmup: int = Field(3, ge=0)
    repeats: int = Field(20, ge=1)
    threads: int = Field(2, ge=1)
    # Seconds the warm-up, and again the timed runs, of one artifact may take: a slow runtime stops early (after 3 runs
    # at least) and its record says so; null: always every run.
    max_seconds: float | None = Field(3.0, gt=0)


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="bundle name")
    version: str = "0.1.0"
    model: ModelRef
    input: InputConfig = InputConfig()
    compress: CompressConfig = CompressConfig()
    targets: tuple[Target, ...] = Field(min_length=1)  # type: ignore[valid-type]
    calibration: CalibrationConfig = CalibrationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tolerances: dict[Precision, ToleranceOverride] = {}
    benchmark: BenchmarkConfig = BenchmarkConfig()

    @field_validator("targets")
    @classmethod
    def _unique(cls, targets: tuple) -> tuple:
        keys = [t.key for t in targets]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"targets listed twice: {', '.join(dupes)}")
        return targets

    @model_validator(mode="after")
    def _sparse_needs_pruning(self) -> "Recipe":
        for t in self.targets:
            if PRECISIONS[t.precision].needs_sparsity and (self.compress.pruning is None or self.compress.pruning.method != "magnitude"):
                raise ValueError(f"target {t.key} stores pruned weights sparse: it needs compress.pruning with method: magnitude")
        return self

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json")
        for key in DESCRIPTION_FIELDS:  # unset, they leave the hash of every recipe written before them as it was
            if data["model"][key] is None:
                del data["model"][key]
        if data["evaluation"]["ground_truth"] == "labels":
            del data["evaluation"]["ground_truth"]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def format_error(err: dict, root: type[BaseModel] | None = None) -> str:
    """One pydantic error as one phrase; a misspelt key or choice with the closest one it may have meant
    (keys as ``root``, the recipe's schema, allows them where the error is)."""
    loc = ".".join(str(p) if str(p).isprintable() else repr(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key {err['loc'][-1]!r} at {loc}" + did_you_mean(err["loc"][-1], _keys_at(root or Recipe, err["loc"][:-1]))
    if err["type"] == "missing":
        return f"missing required key {loc}"
    msg = err["msg"].removeprefix("Value error, ").replace("\n", "\\n")  # one line, whatever the recipe's values hold
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    if err["type"] == "literal_error":
        shown += did_you_mean(got, re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", "")))
    return f"{loc}: {msg}{shown}"


def _keys_at(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the schema allows in the mapping at ``loc`` (list indices and dict keys pass through)."""
    models = [root]
    for part in loc:
        inner = [m for model in models if part in model.model_fields for m in _models_in(model.model_fields[part].annotation)]
        if inner:
            models = inner
    return sorted({k for m in models for k in m.model_fields})


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (``X | None``, ``tuple[X, ...]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def parse_recipe(data: object, *, source: str = "<recipe>") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe must be a mapping of keys, got {type(data).__name__}",
                          fix="start from one of the files in export_recipes/")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        problems = [format_error(e) for e in exc.errors()]
        raise RecipeError(f"{source}: " + "; ".join(problems), fix="correct the key(s) named; `skinkit recipe-schema` lists every key") from None


def read_yaml(path: str | Path) -> object:
    """A recipe file's YAML; one error for a missing file, bad syntax (line and column) or a key given twice."""
    import yaml

    from toolkit._io import DuplicateKeyError, yaml_load

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}", fix="pass a YAML file such as export_recipes/acne_mobilenetv2.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot be read as UTF-8 text ({exc})", fix="save the recipe as a UTF-8 YAML file") from None
    try:
        return yaml_load(text)
    except DuplicateKeyError as exc:
        raise RecipeError(f"{path}: {exc}", fix=f"keep one {exc.key!r}: YAML would silently drop all but the last") from None
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply to read", fix="a recipe is a few levels of keys and lists") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise RecipeError(f"{path}: not valid YAML{where}: {problem}", fix="fix the YAML syntax") from None


def load_recipe(path: str | Path) -> Recipe:
    return parse_recipe(read_yaml(path), source=str(path))


SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = Path(__file__).parent / "schema" / "recipe.schema.json"  # shipped; a test keeps it equal to json_schema()


def json_schema() -> dict:
    """The JSON Schema of a recipe file, generated from :class:`Recipe` (the registry's formats, precisions and
    target options included): what ``skinkit recipe-schema`` prints and ``SCHEMA_FILE`` holds, for editors that
    read a recipe's first line ``# yaml-language-server: $schema=<relative path to SCHEMA_FILE>``. Checks that
    span keys (a format's precisions, another format's option) are the loader's: the schema states the keys and types."""
    return {"$schema": SCHEMA_DRAFT, **Recipe.model_json_schema(), "title": "skinkit export recipe",
            "description": "One model exported to on-device targets and verified (skinkit export RECIPE)."}


def schema_text(schema: dict) -> str:
    """A schema as written to its shipped file and printed by the CLI."""
    return json.dumps(schema, indent=2) + "\n"
