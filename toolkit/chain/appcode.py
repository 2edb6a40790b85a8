"""App code for an assessment bundle: its chain as an Android source file (Kotlin, TFLite) and an iOS one (Swift,
Core ML), generated from manifest.json alone.

Each file holds ``fit`` (``toolkit.data.photo.fit``: a photo to the chain's picture), a runner for the components'
artifacts, one function per glue op the chain uses (the op's NumPy form in ``toolkit.glue`` is the definition; each
function quotes it and names the steps that use it), and ``run``: the manifest's steps in order, the chain's outputs
by name. Sizes, class indices and the ops' parameters are written in as literals.

skinkit has no Kotlin or Swift compiler, so neither file is compiled here; each says so at its top.

    write_app_code(manifest, bundle_dir / "app", variant="tflite_int8")
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from toolkit.chain import appcode_kotlin, appcode_swift
from toolkit.data.photo import FIT_MODES
from toolkit.errors import BadInputError
from toolkit.glue import LUMA, OPS, Value, resolve_params

_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")
_HELPERS_OF = {"resize": ("bilinear",), "crop_to_mask": ("bilinear",)}  # op -> the shared helpers its function calls


# --- the two languages: how each writes what the generator needs --------------------------------------------
def _f32(x: float) -> str:
    """The float32 value NumPy compares and computes with (a weak Python float meets float32 arrays), shortest."""
    return np.format_float_positional(np.float32(x), unique=True, trim="0")


def _f64(x: float) -> str:
    return np.format_float_positional(float(x), unique=True, trim="0")


def _quoted(s: str, *, dollar: bool) -> str:
    body = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + (body.replace("$", "\\$") if dollar else body) + '"'


@dataclass(frozen=True)
class _Lang:
    templates: ModuleType  # CLASS, MODEL, RUN, COMPONENT_STEP, FIT, COMPONENT, OPS, HELPERS
    suffix: str
    doc: str  # the prefix of a line in the doc comment above run
    ref: Callable[[str], str]  # a value the chain holds
    ints: Callable[[Sequence[int]], str]
    f32: Callable[[float], str]
    none: str
    named: Callable[[str, str], str]  # a labelled argument
    string: Callable[[str], str]
    out: Callable[[str, tuple[int, int, int], tuple[str, ...]], str]  # a component output's Out(...)
    entry: Callable[[str, str], str]  # one entry of run's result
    unpack: Callable[[str, list[tuple[str, str, int]]], str]  # a multi-output call into (ref, output, index)...


KOTLIN = _Lang(
    templates=appcode_kotlin, suffix=".kt", doc="     *  ",
    ref=lambda r: f'v.getValue("{r}")',
    ints=lambda xs: f"intArrayOf({', '.join(str(int(x)) for x in xs)})",
    f32=lambda x: _f32(x) + "f", none="null",
    named=lambda k, x: f"{k} = {x}",
    string=lambda s: _quoted(s, dollar=True),
    out=lambda name, chw, labels: f"Out({_quoted(name, dollar=True)}, {chw[0]}, {chw[1]}, {chw[2]})",
    entry=lambda name, ref: f'{_quoted(name, dollar=True)} to v.getValue("{ref}"),',
    unpack=lambda call, outs: f"{call}.let {{ r -> " + "; ".join(  # a Pair: no op makes more than two outputs
        f'v["{ref}"] = r.{("first", "second")[i]}' for ref, _, i in outs) + " }",
)

SWIFT = _Lang(
    templates=appcode_swift, suffix=".swift", doc="    ///  ",
    ref=lambda r: f'v["{r}"]!',
    ints=lambda xs: f"[{', '.join(str(int(x)) for x in xs)}]",
    f32=_f32, none="nil",
    named=lambda k, x: f"{k}: {x}",
    string=lambda s: _quoted(s, dollar=False),
    out=lambda name, chw, labels: (f"Out(name: {_quoted(name, dollar=False)}, channels: {chw[0]}, height: {chw[1]}, "
                                   f"width: {chw[2]}, labels: [{', '.join(_quoted(x, dollar=False) for x in labels)}])"),
    entry=lambda name, ref: f'{_quoted(name, dollar=False)}: v["{ref}"]!,',
    unpack=lambda call, outs: f"do {{ let r = {call}; " + "; ".join(f'v["{ref}"] = r.{name}' for ref, name, _ in outs) + " }",
)


@dataclass(frozen=True)
class _Platform:
    name: str
    format: str  # the artifact keys it runs are <format>_<precision>
    lang: _Lang


PLATFORMS = (_Platform("Android", "tflite", KOTLIN), _Platform("iOS", "coreml", SWIFT))


# --- the chain as the manifest states it ----------------------------------------------------------------------
@dataclass(frozen=True)
class _Step:
    id: str
    inputs: dict[str, str]  # port -> value reference
    reads: dict[str, Value]  # port -> the value it reads
    makes: dict[str, Value]  # value reference -> value
    component: str | None = None
    op: str | None = None
    params: dict = field(default_factory=dict)  # the op's parameters, defaults filled in, and `_<resolved>`

    @property
    def out(self) -> Value:
        (value,) = self.makes.values()
        return value


@dataclass(frozen=True)
class _Chain:
    bundle: str
    version: str
    size: tuple[int, int]
    fit: str
    components: dict[str, dict]
    steps: tuple[_Step, ...]
    outputs: tuple[dict, ...]
    values: dict[str, Value]

    @property
    def class_name(self) -> str:
        words = re.findall(r"[A-Za-z0-9]+", self.bundle)
        name = "".join(w[:1].upper() + w[1:] for w in words) or "Skinkit"
        return ("Bundle" + name if name[0].isdigit() else name) + "Chain"

    def run_components(self) -> list[str]:
        return list(dict.fromkeys(s.component for s in self.steps if s.component is not None))


def _need(d: object, key: str, where: str):
    if not isinstance(d, dict) or key not in d:
        raise BadInputError(f"manifest.json: {where} has no {key!r}", fix="write app code from a chain bundle's own manifest.json")
    return d[key]


def _value(d: dict, where: str) -> Value:
    return Value(_need(d, "kind", where), tuple(int(x) for x in _need(d, "shape", where)), tuple(d.get("names", ())), d.get("unit", ""))


def _hw(value: Value, where: str) -> tuple[int, int]:
    if value.hw is None:
        raise BadInputError(f"manifest.json: {where} reads a {value.kind} of shape {list(value.shape)}, not a dense value",
                            fix="export the chain again: its graph check rejects this link")
    return value.hw


def _read_chain(manifest: dict) -> _Chain:
    """The manifest's chain, every reference checked: each step reads values made before it, runs a component the
    manifest lists or a glue op skinkit knows; each output is a value the chain makes."""
    bundle = (manifest.get("bundle") or manifest.get("name")) if isinstance(manifest, dict) else None
    if not bundle:
        raise BadInputError("manifest.json names no bundle (bundle: <name>)", fix="write app code from a chain bundle's own manifest.json")
    inp = _need(manifest, "input", "the manifest")
    size = tuple(int(x) for x in _need(inp, "size", "input"))
    fit = inp.get("fit", "center_crop")
    if len(size) != 2 or fit not in FIT_MODES:
        raise BadInputError(f"manifest.json: input is {inp!r}", fix=f"input: {{size: [h, w], fit: {' | '.join(FIT_MODES)}}}")
    components = {_need(c, "name", "a component"): c for c in _need(manifest, "components", "the manifest")}
    values: dict[str, Value] = {"image": Value("image", (*size, 3))}
    steps = []
    for raw in _need(_need(manifest, "chain", "the manifest"), "steps", "chain"):
        sid = _need(raw, "id", "a chain step")
        where = f"step {sid!r}"
        inputs = dict(_need(raw, "inputs", where))
        for port, ref in inputs.items():
            if ref not in values:
                raise BadInputError(f"manifest.json: {where} reads {ref!r} (as {port}), which no earlier step makes",
                                    fix=f"name one of: {', '.join(values)}")
        reads = {port: values[ref] for port, ref in inputs.items()}
        makes = {ref: _value(v, f"{where} output {ref}") for ref, v in _need(raw, "outputs", where).items()}
        if "run" in raw:
            name = raw["run"]
            if name not in components:
                raise BadInputError(f"manifest.json: {where} runs {name!r}, which is not a component", fix=f"components: {', '.join(components)}")
            _need(inputs, "image", where)
            picture = reads["image"]
            want = tuple(int(x) for x in _need(components[name], "input_size", f"component {name!r}"))
            if picture.kind != "image" or _hw(picture, where) != want:
                raise BadInputError(f"manifest.json: {where} feeds {name} a {picture.kind} of shape {list(picture.shape)}, "
                                    f"it takes a {want[0]}x{want[1]}x3 picture",
                                    fix="export the chain again: its graph check resizes or rejects this link")
            steps.append(_Step(sid, inputs, reads, makes, component=name))
        else:
            op = _need(raw, "op", where)
            if op not in OPS or op not in KOTLIN.templates.OPS or op not in SWIFT.templates.OPS:
                raise BadInputError(f"manifest.json: {where} uses glue op {op!r}, which skinkit cannot write app code for",
                                    fix=f"use one of: {', '.join(OPS)}")
            params = resolve_params(OPS[op], dict(raw.get("params", {})), f"manifest.json: {where}")
            params.update({f"_{k}": v for k, v in raw.get("resolved", {}).items()})
            steps.append(_Step(sid, inputs, reads, makes, op=op, params=params))
        values.update(makes)
    outputs = tuple(_need(manifest, "outputs", "the manifest"))
    for o in outputs:
        if _need(o, "from", f"output {o.get('name')!r}") not in values:
            raise BadInputError(f"manifest.json: output {o.get('name')!r} is {o['from']!r}, which the chain does not make",
                                fix=f"name one of: {', '.join(values)}")
    return _Chain(bundle, str(manifest.get("version", "")), size, fit, components, tuple(steps), outputs, values)


# --- the glue ops' call sites: arguments from the manifest, as literals -----------------------------------------
def _resolved(s: _Step, key: str):
    if f"_{key}" not in s.params:
        raise BadInputError(f"manifest.json: step {s.id!r} ({s.op}) has no resolved.{key}", fix="export the chain again with this skinkit")
    return s.params[f"_{key}"]


def _within(s: _Step, L: _Lang) -> str:
    return L.ref(s.inputs["within"]) if "within" in s.inputs else L.none


def _positions(x: Value) -> tuple[int, int]:
    return x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64))


def _resize_args(s: _Step, L: _Lang) -> list:
    x = s.reads["x"]
    nearest = x.kind in ("mask", "labels")
    channels = 3 if x.kind == "image" else 1 if nearest else x.shape[0]
    return [L.ref(s.inputs["x"]), channels, *_hw(x, s.id), *_hw(s.out, s.id),
            L.named("nearest", str(nearest).lower()), L.named("channelLast", str(x.kind == "image").lower())]


ARGS: dict[str, Callable[[_Step, _Lang], list]] = {
    "resize": _resize_args,
    "softmax": lambda s, L: [L.ref(s.inputs["x"]), *_positions(s.reads["x"])],
    "argmax": lambda s, L: [L.ref(s.inputs["x"]), *_positions(s.reads["x"])],
    "class_mask": lambda s, L: [L.ref(s.inputs["x"]), int(_resolved(s, "index"))],
    "threshold": lambda s, L: [L.ref(s.inputs["x"]), L.f32(s.params["value"])],
    "apply_mask": lambda s, L: [L.ref(s.inputs["image"]), L.ref(s.inputs["mask"]), L.f32(s.params["fill"])],
    "crop_to_mask": lambda s, L: [L.ref(s.inputs["image"]), L.ref(s.inputs["mask"]), *_hw(s.reads["image"], s.id),
                                  *_hw(s.out, s.id), _f64(s.params["margin"])],
    "coverage": lambda s, L: [L.ref(s.inputs["x"])],
    "region_stats": lambda s, L: [L.ref(s.inputs["labels"]), L.ref(s.inputs["image"]), _within(s, L), L.ints(_resolved(s, "indices"))],
    "count_regions": lambda s, L: [L.ref(s.inputs["labels"]), _within(s, L), *_hw(s.reads["labels"], s.id),
                                   L.ints(_resolved(s, "indices")), int(s.params["min_pixels"])],
    "to_image": lambda s, L: [L.ref(s.inputs["x"]), *_hw(s.out, s.id), L.f32(s.params["scale"])],
    "paste_instances": lambda s, L: [*(L.ref(s.inputs[p]) for p in ("boxes", "scores", "classes", "masks", "count")),
                                     s.reads["scores"].shape[0], s.reads["masks"].shape[-1], *_hw(s.out, s.id),
                                     L.f32(s.params["threshold"])],
}


def function_name(op: str) -> str:
    """The app-code function of a glue op: class_mask -> classMask."""
    head, *rest = op.split("_")
    return head + "".join(w.title() for w in rest)


def _op_statement(s: _Step, L: _Lang) -> str:
    call = f"{function_name(s.op)}({', '.join(str(a) for a in ARGS[s.op](s, L))})"
    outputs = OPS[s.op].outputs
    if outputs == ("",):
        return f'v["{s.id}"] = {call}'
    return L.unpack(call, [(f"{s.id}.{o}", o, i) for i, o in enumerate(outputs)])


def _component_statement(chain: _Chain, s: _Step, L: _Lang) -> str:
    outs = []
    for ref, value in s.makes.items():
        if len(value.shape) == 3:
            chw = value.shape
        elif len(value.shape) == 1:
            chw = (value.shape[0], 1, 1)
        else:
            raise BadInputError(f"manifest.json: {ref} has shape {list(value.shape)}; component outputs are C x H x W or K",
                                fix="export the chain again with this skinkit")
        outs.append(L.out(ref.split(".", 1)[1], chw, value.names))
    h, w = chain.components[s.component]["input_size"]
    return _fill(L.templates.COMPONENT_STEP, NAME=s.component, PICTURE=L.ref(s.inputs["image"]), HEIGHT=h, WIDTH=w,
                 OUTS=", ".join(outs), ID=s.id)


def _step_comment(s: _Step, path: str | None) -> str:
    reads = ", ".join(f"{p}={r}" for p, r in s.inputs.items())
    if s.component is not None:
        return f"// step {s.id}: run {s.component} ({path}) on {s.inputs['image']}"
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in s.params.items() if not k.startswith("_"))
    resolved = ", ".join(f"{k.lstrip('_')} {json.dumps(v)}" for k, v in s.params.items() if k.startswith("_"))
    return f"// step {s.id}: {s.op}({reads}{', ' + params if params else ''}){'; ' + resolved if resolved else ''}"


# --- assembly ----------------------------------------------------------------------------------------------------
def _fill(template: str, **values) -> str:
    """``template`` with each ``@@NAME@@`` replaced (inserted text is not scanned again)."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def _indent(lines: list[str], spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in lines)


def _op_function(L: _Lang, op: str, step_ids: list[str], scalars: dict) -> str:
    definition = textwrap.wrap(OPS[op].doc, 108)
    comment = [f"// glue op {op} (toolkit.glue; its NumPy form is the definition):", *(f"//   {line}" for line in definition),
               f"// used by step{'s' if len(step_ids) > 1 else ''}: {', '.join(step_ids)}"]
    body = _fill(L.templates.OPS[op], **scalars)
    return _indent(comment, 4) + "\n" + body + "\n"


def _output_doc(chain: _Chain, o: dict) -> str:
    v = chain.values[o["from"]]
    kind, shape = o.get("kind", v.kind), o.get("shape", list(v.shape))
    names, unit = o.get("names", list(v.names)), o.get("unit") or v.unit
    text = f"{o['name']}: {kind} {list(shape)}{' ' + unit if unit else ''}{' (' + ', '.join(names) + ')' if names else ''}, from {o['from']}"
    return text.replace("*/", "* /")


def _header(chain: _Chain, platform: _Platform, key: str, note: str, filename: str) -> str:
    from toolkit import __version__

    lines = [f"{filename}: generated by skinkit {__version__} from manifest.json of bundle {chain.bundle}"
             f"{', version ' + chain.version if chain.version else ''}.",
             f"Variant {key}: each component's {key} artifact ({platform.name}).",
             *textwrap.wrap(note, 110),
             "Not compiled by skinkit: check it builds in your app, and that its outputs match the bundle's host chain",
             "on a few photos, before you ship it. Regenerate it from the bundle rather than edit it."]
    return "\n".join("// " + line if line else "//" for line in lines)


def _render(chain: _Chain, platform: _Platform, key: str, note: str) -> str:
    L, t = platform.lang, platform.lang.templates
    paths = {name: next(a["path"] for a in chain.components[name]["artifacts"] if a.get("key") == key) for name in chain.run_components()}
    used: dict[str, list[str]] = {op: [] for op in OPS}
    steps = []
    for s in chain.steps:
        steps.append(_step_comment(s, paths.get(s.component)))
        if s.component is not None:
            steps.append(_component_statement(chain, s, L))
        else:
            steps.append(_op_statement(s, L))
            used[s.op].append(s.id)
    ops = [op for op, ids in used.items() if ids]
    helpers = list(dict.fromkeys(h for op in ops for h in _HELPERS_OF.get(op, ())))
    run = _fill(t.RUN, OUTPUT_DOCS=_indent([L.doc + _output_doc(chain, o) for o in chain.outputs], 0),
                STEPS=_indent(steps, 8), RETURNS=_indent([L.entry(o["name"], o["from"]) for o in chain.outputs], 12))
    cls = chain.class_name
    h, w = chain.size
    scalars = dict(CLASS=cls, BUNDLE=chain.bundle, KEY=key, HEIGHT=h, WIDTH=w, CENTER_CROP=str(chain.fit == "center_crop").lower(),
                   FIT_MODE=chain.fit, LUMA_R=LUMA[0], LUMA_G=LUMA[1], LUMA_B=LUMA[2])
    return _fill(
        t.CLASS, HEADER=_header(chain, platform, key, note, cls + L.suffix), RUN=run,
        MODELS="\n".join(_fill(t.MODEL, NAME=name, PATH=L.string(path)[1:-1], **scalars) for name, path in paths.items()),
        FIT=_fill(t.FIT, **scalars), COMPONENT=_fill(t.COMPONENT, **scalars),
        OPS="\n".join(_op_function(L, op, used[op], scalars) for op in ops),
        HELPERS="\n".join(_fill(t.HELPERS[name], **scalars) + "\n" for name in helpers), **scalars,
    )


def _choose_key(chain: _Chain, variant: str, platform: _Platform) -> tuple[str, str] | None:
    """The artifact key ``platform`` runs for ``variant``, and a note when it is not ``variant`` itself: the variant
    when it is one of the platform's keys (every component must have it), else the first key of the platform that
    every component has (None: there is none)."""
    prefix = f"{platform.format}_"
    keys = {name: [a.get("key") for a in chain.components[name].get("artifacts", [])] for name in chain.run_components()}
    if variant.startswith(prefix):
        missing = [name for name, ks in keys.items() if variant not in ks]
        if missing:
            raise BadInputError(f"variant {variant}: component{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                f"{'have' if len(missing) > 1 else 'has'} no {variant} artifact",
                                fix="name a variant every component has: " + ", ".join(sorted(set.intersection(*map(set, keys.values())))))
        return variant, ""
    first, *rest = keys.values() or [[]]
    common = [k for k in first if k.startswith(prefix) and all(k in ks for ks in rest)]
    if not common:
        return None
    return common[0], (f"The variant asked for, {variant}, is not a {platform.format} key: this file runs {common[0]}, the first "
                       f"{prefix}* key every component has.")


def write_app_code(manifest: dict, out_dir: Path, *, variant: str) -> list[Path]:
    """Write the chain's app code into ``out_dir`` (e.g. ``<bundle>/app/``): ``<Name>Chain.kt`` (Android, each
    component's TFLite artifact) and ``<Name>Chain.swift`` (iOS 16+, its Core ML artifact), for ``variant``, a target
    key such as ``tflite_int8``. The platform of ``variant`` runs exactly it (every component must have it); the other
    platform runs the first of its keys every component has, and its file says so. A platform none of whose keys
    every component has gets no file. Returns the files written.

    Raises ``BadInputError`` for a manifest that states no chain, an unknown glue op, or a variant a component lacks."""
    chain = _read_chain(manifest)
    chosen = [(p, _choose_key(chain, variant, p)) for p in PLATFORMS]
    if not any(choice for _, choice in chosen):
        raise BadInputError(f"no {' or '.join(p.format for p in PLATFORMS)} artifact that every component has",
                            fix="export the chain with a tflite_* or coreml_* target for every component")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for platform, choice in chosen:
        if choice is None:
            continue
        path = out_dir / f"{chain.class_name}{platform.lang.suffix}"
        path.write_text(_render(chain, platform, *choice))
        written.append(path)
    return written
