"""The backend interface: everything skinkit needs from one on-device format, behind one class.

A backend is a package ``toolkit/backends/<format>/`` whose ``BACKEND`` object implements :class:`Backend`
and is listed once in ``toolkit.backends.BACKENDS``. The stages never name a format: they look the backend up
by the recipe target's ``format`` (or an artifact's path) and call its hooks. Heavy libraries are imported
inside the hooks, so that importing a backend is instant.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from toolkit.outputs import Outputs

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Runner:
    """An artifact loaded into a host runtime: ``run(batch of contract inputs) -> Outputs`` (every output
    by name, leading batch axis)."""

    run: Callable[["np.ndarray"], Outputs]
    check: str  # what actually executed, recorded in the report
    note: str = ""
    timed: bool = True  # its latency means something (a real runtime, not a reference interpreter)


def run_checked(runner: Runner, x: "np.ndarray", what: str, *, fix: str) -> Outputs:
    """``runner.run(x)``; a runtime that refuses the graph while running it (an int8 kernel's own check, an op the
    interpreter lacks) is a ``VerificationError`` naming ``what`` failed and the cause, never a traceback."""
    from toolkit.errors import SkinkitError, VerificationError

    try:
        return runner.run(x)
    except SkinkitError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise VerificationError(f"{what} fails while running in {runner.check}: {type(exc).__name__}: {first}", fix=fix) from None


def per_sample(fn: Callable[[np.ndarray], Outputs]) -> Callable[[np.ndarray], Outputs]:
    """Run ``fn`` one sample at a time (artifacts are exported at batch 1, as phones run them) and stack
    each named output along the batch axis."""
    def run(x: np.ndarray) -> Outputs:
        import numpy as np

        outs = [fn(x[i:i + 1]) for i in range(len(x))]
        return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}
    return run


def numel(shape) -> int:
    """Elements of a tensor of ``shape`` (1 for a scalar)."""
    import numpy as np

    return int(np.prod([int(s) for s in shape])) if len(shape) else 1


# What a device cost model charges per op class: MACs for the first three, elements written for the last two.
# "elementwise": activations, arithmetic, normalization, pooling, softmax (an activation fused into the MAC op before
# it, as TFLite stores it and device compilers fuse it, is free); "memory": data movement (resize, transpose, concat,
# pad, slice, gather, depth-to-space). Reshapes and casts are free. Each backend's graph reader fills it.
OP_CLASSES = ("conv", "depthwise", "matmul", "elementwise", "memory")


class OpTally:
    """Per-class totals an artifact's cost reader accumulates, op by op."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(OP_CLASSES, 0)

    def add(self, op_class: str | None, amount: int) -> None:
        if op_class is not None:
            self.totals[op_class] += int(amount)


@dataclass(frozen=True)
class Cost:
    """What an artifact costs to run, read from its graph (see ``toolkit.benchmark.cost``)."""

    format: str
    macs: int
    params: int
    weight_bytes: int
    activation_bytes: int
    op_sequence: tuple[str, ...] = field(repr=False)
    op_classes: Mapping[str, int] = field(default_factory=dict)  # OP_CLASSES -> MACs or elements written; {} if unread

    @property
    def traffic_bytes(self) -> int:
        """Bytes an inference moves through memory, at least: weights once, activations written and read."""
        return self.weight_bytes + 2 * self.activation_bytes

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("op_sequence")
        d.update(ops=len(self.op_sequence), traffic_bytes=self.traffic_bytes)
        return d


@dataclass(frozen=True)
class ArtifactWeight:
    name: str  # the tensor's or op's name in the artifact
    array: "np.ndarray"  # dense float32, in the file's axis order


@dataclass(frozen=True)
class OpSupport:
    """A device unit's documented op list: which op types it executes. A static check, labelled as such."""

    description: str
    ops: frozenset[str]
    outside_graph: tuple[str, ...] = ()  # op types that are not compute (constants, label lookup)
    outside_prefixes: tuple[str, ...] = ()

    def runs(self, op: str) -> bool:
        return op in self.ops or op in self.outside_graph or op.startswith(self.outside_prefixes or ("\0",))

    def eligibility(self, ops: Mapping[str, int], *, float32: bool) -> dict:
        """Which of a program's ops (an op histogram) the unit can take, for ``inspect`` (a float16 unit: none of a
        float32 program's)."""
        compute = {op: n for op, n in ops.items() if op not in self.outside_graph and not op.startswith(self.outside_prefixes or ("\0",))}
        if float32:
            return {"check": "static", "neural_engine": "none: the Neural Engine computes float16; a float32 program runs on GPU/CPU",
                    "ops_off_neural_engine": compute}
        off = {op: n for op, n in compute.items() if not self.runs(op)}
        return {"check": self.description, "neural_engine": "all ops eligible" if not off else "partial", "ops_off_neural_engine": off,
                "share_eligible": round(1 - sum(off.values()) / max(sum(compute.values()), 1), 3)}


@dataclass(frozen=True)
class FailureSite:
    """Where a converter was when it raised: the torch op it was converting, and the module that calls it in the
    module the converter was given (its attribute path, outermost first, and its class name)."""

    op: str
    scope: tuple[str, ...] = ()
    module_type: str | None = None


def check(name: str, value, bound, ok: bool, op: str = "==") -> dict:
    """One structural criterion, in the gate's record shape."""
    return {"name": name, "value": value, "bound": bound, "op": op, "passed": bool(ok)}


class TargetOptions(BaseModel):
    """A backend's typed recipe-target options. Its fields join the recipe's ``targets[]`` schema; a field
    set on another format's target is an error naming the format it belongs to."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    applies_to: ClassVar[Mapping[str, str]] = {}  # field -> which targets it applies to, where narrower than the format

    def check_precision(self, precision: str) -> None:
        """Raise ``ValueError`` where an option does not fit the target's precision."""

    def variant_suffix(self) -> str:
        """What distinguishes two targets of one precision in the artifact's file name (e.g. ``_g8``)."""
        return ""


class NoOptions(TargetOptions):
    pass


class PaletteGroupOptions(TargetOptions):
    """``group_size``: one lookup table per this many output channels, for formats that palettize (Core ML, Core AI)."""

    group_size: int | None = Field(None, ge=1, description="coreml and coreai palettize*: one lookup table per this many output channels")

    def check_precision(self, precision: str) -> None:
        if self.group_size is not None and not precision.startswith("palettize"):
            raise ValueError("group_size applies to palettize4/6/8 only")

    def variant_suffix(self) -> str:
        return f"_g{self.group_size}" if self.group_size else ""


class Backend(ABC):
    """One on-device format. Subclasses set the class attributes and implement every hook; a backend that
    lacks one cannot be instantiated (structural checks included: verification fails closed)."""

    name: ClassVar[str]
    suffix: ClassVar[str]  # the artifact's file (or package directory) suffix
    precisions: ClassVar[tuple[str, ...]]  # what it produces
    unsupported: ClassVar[Mapping[str, str]] = {}  # precision -> why it is not offered
    unsupported_default: ClassVar[str] = ""  # why, for a precision not listed in ``unsupported``
    options: ClassVar[type[TargetOptions]] = NoOptions
    op_support: ClassVar[Mapping[str, OpSupport]] = {}  # device op tables, by the name device profiles use
    activation_bits_by_precision: ClassVar[Mapping[str, int]] = {"int8": 8}  # quantized activations, for the culprit twin
    phones: ClassVar[tuple[str, ...]] = ()  # phone platforms whose benchmark runner takes this format's artifacts
    # Exact graph rewrites its converter needs (names in ``toolkit.backends.rewrites.REWRITES``), applied to a copy of the
    # network where a forward pass finds a call that needs one, before ``convert``; recorded in the artifact's details.
    rewrites: ClassVar[tuple[str, ...]] = ()
    # The host runtime every other artifact's latency is compared with ("ratio to ..."), where this format's runtime is
    # that baseline: its fp32 artifact, and the int8 twin ``int8_baseline`` quantizes from it.
    baseline_runtime: ClassVar[str | None] = None
    # Its host runtime is slow enough (seconds per image) that an export converts its targets first and runs them on
    # the evaluation set in the background while the other targets convert (``toolkit.verify.outputs``).
    slow_runtime: ClassVar[bool] = False
    # How long its targets take to convert, relative to the others: an export's second conversion process takes the
    # format group that costs most (``toolkit.convert.stage.second_process_share``).
    conversion_cost: ClassVar[int] = 1

    def why_unsupported(self, precision: str) -> str:
        return self.unsupported.get(precision, self.unsupported_default)

    def detects(self, path: Path) -> bool:
        """Whether ``path`` is an artifact of this format."""
        return Path(path).suffix == self.suffix

    def activation_bits(self, precision: str) -> int | None:
        return self.activation_bits_by_precision.get(precision)

    def int8_baseline(self, float_path: Path, calibration: np.ndarray, out_dir: Path) -> Path:
        """The int8 artifact this format's users would build from the float one themselves (``baseline_runtime`` set)."""
        raise NotImplementedError(f"{self.name} builds no int8 baseline")

    def unit_refuses(self, unit: str, precision: str) -> str | None:
        """Why a device unit (npu, gpu, cpu) cannot run this format at ``precision``, or None."""
        return None

    def failure_site(self, exc: BaseException) -> FailureSite | None:
        """The op (and its module scope) this format's converter was converting when it raised ``exc``, where
        the converter leaves that to be found and its message does not say; None otherwise."""
        return None

    @abstractmethod
    def convert(self, module, sample, spec, *, precision: str, path: Path, options: dict) -> dict:
        """Write ``module`` (the DeviceContract-wrapped network, eval mode) to ``path``, its graph outputs named
        ``spec.outputs[i].name``; return the structure read back from the file."""

    @abstractmethod
    def runner(self, path: Path, *, threads: int = 2, layout: str = "nhwc", pixel_range: str = "0-255") -> Runner:
        """The artifact loaded into a host runtime (raises ``VerificationError`` if the runtime refuses it)."""

    @abstractmethod
    def structural_checks(self, details: dict, precision: str, *, input_shape: tuple[int, ...],
                          output_shapes: Mapping[str, tuple[int, ...]]) -> list[dict]:
        """What the saved file itself must show, on every platform (``details``: what ``inspect`` read back;
        shapes are batch-1): the contract's I/O and the asked-for storage precision."""

    @abstractmethod
    def weights(self, path: Path) -> list[ArtifactWeight]:
        """The weight tensors of the artifact's conv / linear / matmul ops, dense float32, in graph order."""

    @abstractmethod
    def cost(self, path: Path) -> Cost:
        """MACs, parameters, weight and activation bytes, op sequence: read from the artifact's graph."""

    @abstractmethod
    def inspect(self, path: Path) -> dict:
        """I/O, op histogram, weight dtypes and the format's own extras (device op support, metadata)."""
