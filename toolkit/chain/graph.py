"""A chain as a typed graph: every link's kind and shape checked before anything converts, then run on the
host (NumPy glue, any component callable: the float model or an artifact's runner) or as one torch module
(the fused graph)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from toolkit.glue import GlueError, Op, Value, get_op, infer, resolve_params, run_numpy, run_torch

INPUT = "image"


@dataclass(frozen=True)
class ComponentIO:
    """What a chain sees of a component: the picture size it takes and its outputs (dense ones channel-first)."""

    input_hw: tuple[int, int]
    outputs: dict[str, Value]
    layout: str = "nhwc"  # its artifacts' input contract
    pixel_range: str = "0-255"


@dataclass(frozen=True)
class Step:
    id: str
    inputs: dict[str, str]  # port -> value reference
    component: str | None = None
    op: Op | None = None
    params: dict = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # port -> kind of the value it reads
    makes: dict[str, Value] = field(default_factory=dict)  # value reference -> value

    def describe(self) -> dict:
        """The step as the manifest's glue contract states it."""
        base = {"id": self.id, "inputs": dict(self.inputs),
                "outputs": {ref: v.describe() for ref, v in self.makes.items()}}
        if self.component is not None:
            return {**base, "run": self.component}
        params = {k: v for k, v in self.params.items() if not k.startswith("_")}
        resolved = {k: v for k, v in self.params.items() if k.startswith("_")}
        return {**base, "op": self.op.name, "params": params,
                **({"resolved": {k.lstrip("_"): v for k, v in resolved.items()}} if resolved else {}),
                "fusable": self.op.fusable}


@dataclass(frozen=True)
class ChainGraph:
    input: Value
    steps: tuple[Step, ...]
    values: dict[str, Value]  # every value reference, in the order steps make them

    @property
    def fusable(self) -> bool:
        return all(s.op is None or s.op.fusable for s in self.steps)

    def host_only(self) -> list[str]:
        return [f"{s.id} ({s.op.name})" for s in self.steps if s.op is not None and not s.op.fusable]


def component_io(wrapped, spec, layout: str = "nhwc", pixel_range: str = "0-255") -> ComponentIO:
    """A component's inputs and outputs from one forward pass of its float model on a zero picture."""
    import torch

    from toolkit.outputs import name_outputs

    h, w = spec.input_size
    with torch.inference_mode():
        named = name_outputs(wrapped.model(torch.zeros(1, 3, h, w)), wrapped.output_names)
    units = {o.name: o.unit for o in spec.outputs}
    outputs = {}
    for name, t in named.items():
        shape = tuple(int(d) for d in t.shape[1:])
        labels = tuple(spec.labels)
        if len(shape) in (1, 3) and labels and shape[0] == len(labels):
            outputs[name] = Value("scores", shape, labels, units.get(name, ""))
        elif len(shape) == 1:
            outputs[name] = Value("vector", shape, (name,) if shape[0] == 1 else tuple(f"{name}_{i}" for i in range(shape[0])),
                                  units.get(name, ""))
        else:
            outputs[name] = Value("map", shape if len(shape) == 3 else (1, *shape[-2:]), (), units.get(name, ""))
    return ComponentIO(tuple(spec.input_size), outputs, layout, pixel_range)


def build(recipe, components: dict[str, ComponentIO]) -> ChainGraph:
    """The recipe's chain with every link checked: each reference made by an earlier step, each component fed a
    picture of its size, each op's inputs of the kinds and sizes it takes, each output a value the chain makes.
    A link that does not connect is one error naming both ends."""
    h, w = recipe.input.size
    values: dict[str, Value] = {INPUT: Value("image", (h, w, 3))}
    steps = []
    for s in recipe.chain:
        refs = {"image": s.input or INPUT} if s.run is not None else dict(s.inputs)
        for port, ref in refs.items():
            if ref not in values:
                raise GlueError(f"step {s.id!r} reads {ref!r} (as {port}), which no earlier step makes",
                                fix=f"name one of: {', '.join(values)}")
        if s.run is not None:
            io = components[s.run]
            pic = values[refs["image"]]
            if pic.kind != "image" or pic.hw != io.input_hw:
                got = f"a {pic.kind} of shape {list(pic.shape)}"
                raise GlueError(f"link {refs['image']} → {s.id}.image does not connect: {s.run} takes a {io.input_hw[0]}x{io.input_hw[1]}x3 "
                                f"picture, {refs['image']} is {got}",
                                fix=f"add a step {{op: resize, inputs: {{x: {refs['image']}}}, size: {list(io.input_hw)}}} and run {s.run} on it"
                                if pic.kind == "image" else "run a component on a picture (image, or an apply_mask/crop_to_mask/resize of it)")
            makes = {f"{s.id}.{name}": v for name, v in io.outputs.items()}
            steps.append(Step(s.id, refs, component=s.run, kinds={"image": "image"}, makes=makes))
        else:
            steps.append(op_step(s.id, s.op, refs, s.params, values))
        values.update(steps[-1].makes)
    for o in recipe.outputs:
        if o.source not in values:
            raise GlueError(f"output {o.name!r} is {o.source!r}, which the chain does not make", fix=f"name one of: {', '.join(values)}")
    drawable = [r for r, v in values.items() if v.drawable]
    for ref in recipe.overlay or ():
        if ref not in drawable:
            raise GlueError(f"overlay names {ref!r}, which is not a mask, label map or dense class scores the chain makes",
                            fix=f"name one of: {', '.join(drawable) or '(none)'}")
    return ChainGraph(values[INPUT], tuple(steps), values)


def op_step(sid: str, op_name: str, refs: dict[str, str], given: dict, values: dict[str, Value]) -> Step:
    """A glue-op step reading ``refs`` (port -> value reference) of ``values``: its parameters resolved and the values it
    makes inferred (``sid`` for its one output, ``sid.<output>`` for several); one GlueError naming the step if not."""
    op = get_op(op_name)
    where = f"step {sid!r} ({op.name}: " + ", ".join(f"{p} ← {r}" for p, r in refs.items()) + ")"
    params = resolve_params(op, given, where)
    made = infer(op, {p: values[r] for p, r in refs.items()}, params, where)
    makes = {(f"{sid}.{o}" if o else sid): v for o, v in made.items()}
    return Step(sid, refs, op=op, params=params, kinds={p: values[r].kind for p, r in refs.items()}, makes=makes)


def overlay_values(recipe, graph: ChainGraph) -> list[str]:
    """What ``skinkit run --overlay`` draws: the recipe's ``overlay``, or the outputs that are masks or maps."""
    if recipe.overlay is not None:
        return list(recipe.overlay)
    return [o.source for o in recipe.outputs if graph.values[o.source].drawable]


Call = Callable[[str, np.ndarray], dict[str, np.ndarray]]  # component, pictures (N x H x W x 3, 0–255) -> its outputs


def execute(graph: ChainGraph, image: np.ndarray, call: Call) -> dict[str, np.ndarray]:
    """Every value of the chain on ``image`` (N x H x W x 3 float32, 0–255): components through ``call``, glue in NumPy."""
    values: dict[str, np.ndarray] = {INPUT: image.astype(np.float32)}
    for s in graph.steps:
        if s.component is not None:
            outs = call(s.component, values[s.inputs["image"]])
            values.update({f"{s.id}.{name}": outs[name] for name in (ref.split(".", 1)[1] for ref in s.makes)})
        else:
            made = run_numpy(s.op, {p: values[r] for p, r in s.inputs.items()}, s.params, s.kinds)
            values.update({(f"{s.id}.{o}" if o else s.id): v for o, v in made.items()})
    return values


def fused_module(graph: ChainGraph, wrappers: dict, outputs: tuple[str, ...]):
    """One torch module for the whole chain: the chain's picture (N x H x W x 3, 0–255) in, ``outputs`` (value
    references) out, float32, dense ones as the chain holds them (label maps as float class indices).
    ``wrappers``: each component's float model behind its device contract (NHWC, 0–255)."""
    import torch
    from torch import nn

    from toolkit.outputs import name_outputs

    if not graph.fusable:
        raise GlueError(f"the chain cannot be one graph: {', '.join(graph.host_only())} run on the host only",
                        fix="drop fused: from the recipe (each component still ships), or use fusable ops")

    class FusedChain(nn.Module):
        def __init__(self):
            super().__init__()
            self.components = nn.ModuleDict(wrappers)
            self.input_layout = "nhwc"

        def with_input_layout(self, layout: str) -> "FusedChain":
            """The same chain fed in ``layout`` (a Core ML image input arrives channel-first); shares the weights."""
            import copy

            twin = copy.copy(self)
            twin.input_layout = layout
            return twin

        def forward(self, x: torch.Tensor):
            values = {INPUT: x.permute(0, 2, 3, 1) if self.input_layout == "nchw" else x}
            for s in graph.steps:
                if s.component is not None:
                    wrapper = self.components[s.component]
                    named = name_outputs(wrapper(values[s.inputs["image"]]), wrapper.output_names)
                    for ref in s.makes:
                        t = named[ref.split(".", 1)[1]]
                        values[ref] = t.permute(0, 3, 1, 2) if t.dim() == 4 and wrapper.layout == "nhwc" else t
                else:
                    made = run_torch(s.op, {p: values[r] for p, r in s.inputs.items()}, s.params, s.kinds)
                    values.update({(f"{s.id}.{o}" if o else s.id): v for o, v in made.items()})
            outs = tuple(values[o].to(torch.float32) for o in outputs)
            return outs[0] if len(outs) == 1 else outs

    return FusedChain().eval()


def from_manifest(chain: dict) -> ChainGraph:
    """The graph an assessment bundle's manifest states (``chain``): what ``skinkit run`` executes."""
    values = {ref: Value(v["kind"], tuple(v["shape"]), tuple(v.get("names", ())), v.get("unit", "")) for ref, v in chain["values"].items()}
    steps = []
    for s in chain["steps"]:
        makes = {ref: values[ref] for ref in s["outputs"]}
        kinds = {port: values[ref].kind for port, ref in s["inputs"].items()}
        if "run" in s:
            steps.append(Step(s["id"], dict(s["inputs"]), component=s["run"], kinds=kinds, makes=makes))
        else:
            params = {**s["params"], **{f"_{k}": v for k, v in s.get("resolved", {}).items()}}
            steps.append(Step(s["id"], dict(s["inputs"]), op=get_op(s["op"]), params=params, kinds=kinds, makes=makes))
    return ChainGraph(values[INPUT], tuple(steps), values)
