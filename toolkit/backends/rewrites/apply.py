"""Finding where rewrites apply, on the actual model, and applying them to a copy.

``detect`` runs one forward pass on the sample under a ``TorchFunctionMode`` that sees every call of the
intercepted torch functions (whether an ``nn.PReLU`` makes it or a user's ``forward`` calls ``F.interpolate``)
while module hooks say which module is running; each rewrite's plan decides on the real tensors, and a planned
replacement is kept only if it computes the call's value there. ``rewritten`` deep-copies the model and gives
each module that made such a call a forward that runs under a mode replacing exactly the planned calls (matched
by function, argument shapes and non-tensor arguments) with their planned modules, registered on that module so
every tracer (``jit.trace``, ``torch.export``, ``torch.fx``) stores their constants as weights. Module paths,
class names and weights are unchanged; the caller's model is never modified.
"""

from __future__ import annotations

import copy
import functools
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from toolkit.backends.rewrites.catalog import Rewrite, get_rewrite
from toolkit.errors import ConversionError

_TABLE = "skinkit_rewrites"  # the ModuleDict of planned replacements on a rewritten module
_KEYS = "_skinkit_rewrite_calls"  # (function, argument signature) -> key in that ModuleDict


@dataclass(frozen=True)
class Site:
    """One call that a rewrite replaces."""

    rewrite: str
    path: str  # module path ('' for the model itself)
    cls: str  # the module's class
    function: Callable
    signature: str
    call: str
    replacement: nn.Module

    @property
    def where(self) -> str:
        return f"{self.path or '(top level)'} ({self.cls})"


@dataclass(frozen=True)
class Applied:
    """What one rewrite did to a model: the record an artifact's details carry under ``rewrites``."""

    name: str
    why: str
    where: tuple[str, ...]  # module paths (with class) whose calls were replaced
    count: int  # calls replaced
    calls: tuple[str, ...]  # what they were, e.g. "area resize 100×100 → 48×48"

    def as_dict(self) -> dict:
        return {"name": self.name, "why": self.why, "where": list(self.where), "count": self.count, "calls": list(self.calls)}


class _Symbolic(Exception):
    """An argument is an fx Proxy (symbolic tracing): shapes are unknown, the call is left as it is."""


def _describe(v) -> str:
    if isinstance(v, torch.fx.Proxy):
        raise _Symbolic
    if isinstance(v, torch.Tensor):
        return f"T{tuple(int(s) for s in v.shape)}"
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(_describe(i) for i in v) + ")"
    return repr(v)


def signature(args: tuple, kwargs: dict) -> str | None:
    """What identifies a call's arguments across tracers: tensor shapes and the other values (None when symbolic)."""
    try:
        return f"({','.join(_describe(a) for a in args)};{','.join(f'{k}={_describe(v)}' for k, v in sorted(kwargs.items()))})"
    except (_Symbolic, TypeError, ValueError):
        return None


def _agrees(got, want) -> bool:
    """A planned replacement computes the call's value on the real tensors (to float32 rounding); where PyTorch does
    something else (an antialiased resize to width 1 takes another code path), the call is left as it is."""
    if not (isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor)) or got.shape != want.shape:
        return False
    scale = max(1.0, float(want.detach().abs().nan_to_num(0, 0, 0).max())) if want.numel() else 1.0
    return bool(torch.allclose(got.detach().float(), want.detach().float(), rtol=0, atol=1e-5 * scale, equal_nan=True))


def detect(module: nn.Module, sample: torch.Tensor, rewrites: Sequence[Rewrite]) -> list[Site]:
    """Every call in ``module``'s forward pass on ``sample`` that one of ``rewrites`` replaces, in call order."""
    by_function: dict[Callable, list[Rewrite]] = {}
    for r in rewrites:
        for f in r.functions:
            by_function.setdefault(f, []).append(r)
    running: list[tuple[str, nn.Module]] = [("", module)]
    sites: list[Site] = []

    class Detect(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            for r in by_function.get(func, ()):
                path, owner = running[-1]
                try:
                    plan = r.plan(func, args, kwargs)
                    sig = signature(args, kwargs)
                    kept = plan is not None and sig is not None and _agrees(plan.replacement(*args, **kwargs), result)
                except Exception as exc:  # a call the plan did not foresee: say which, rather than convert around it
                    raise ConversionError(
                        f"rewrite {r.name} could not handle a call in {path or '(top level)'} ({type(owner).__name__}): "
                        f"{type(exc).__name__}: {exc}",
                        fix="report the call's arguments; meanwhile drop this target from the recipe") from exc
                if kept:
                    sites.append(Site(r.name, path, type(owner).__name__, func, sig, plan.call, plan.replacement))
                    break
            return result

    def enter(name: str, sub: nn.Module) -> Callable:
        def hook(*_) -> None:
            running.append((name, sub))
        return hook

    def leave(*_) -> None:
        running.pop()

    hooks = []
    for name, sub in module.named_modules():
        if name:
            hooks.append(sub.register_forward_pre_hook(enter(name, sub)))
            hooks.append(sub.register_forward_hook(leave, always_call=True))
    try:
        with torch.no_grad(), Detect():
            module(sample)
    finally:
        for h in hooks:
            h.remove()
    return sites


class _Rewriting(TorchFunctionMode):
    """Active while a rewritten module's own forward runs: its planned calls go to their replacements."""

    def __init__(self, owner: nn.Module):
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        calls = getattr(self.owner, _KEYS)
        key = calls.get((func, signature(args, kwargs))) if any(func is f for f, _ in calls) else None
        if key is not None:
            return getattr(self.owner, _TABLE)[key](*args, **kwargs)
        return func(*args, **kwargs)


_CLASSES: dict[type, type] = {}


def _rewriting_class(cls: type) -> type:
    """``cls`` with its forward run under :class:`_Rewriting`; same name, module and qualified name, so that
    converters that name tensors after the module stack name them as before."""
    if cls not in _CLASSES:
        @functools.wraps(cls.forward)  # the same signature: tracers read the root's arguments from it
        def forward(self, *args, **kwargs):
            with _Rewriting(self):
                return cls.forward(self, *args, **kwargs)
        _CLASSES[cls] = type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__, "__qualname__": cls.__qualname__})
    return _CLASSES[cls]


def apply(module: nn.Module, sites: Sequence[Site]) -> nn.Module:
    """A copy of ``module`` in which the calls of ``sites`` are replaced."""
    twin = copy.deepcopy(module)
    by_path: dict[str, list[Site]] = {}
    for s in sites:
        by_path.setdefault(s.path, []).append(s)
    for path, group in by_path.items():
        owner = twin.get_submodule(path) if path else twin
        table, calls = nn.ModuleDict(), {}
        for s in group:
            if (s.function, s.signature) not in calls:
                calls[(s.function, s.signature)] = str(len(table))
                table[str(len(table))] = s.replacement
        owner.add_module(_TABLE, table)
        setattr(owner, _KEYS, calls)
        owner.__class__ = _rewriting_class(type(owner))
    return twin


def summarize(sites: Sequence[Site]) -> tuple[Applied, ...]:
    """One record per rewrite, in catalog order of first use."""
    out: dict[str, list[Site]] = {}
    for s in sites:
        out.setdefault(s.rewrite, []).append(s)
    return tuple(Applied(name, get_rewrite(name).why, tuple(dict.fromkeys(s.where for s in group)), len(group),
                         tuple(dict.fromkeys(s.call for s in group))) for name, group in out.items())


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def rewritten(module: nn.Module, sample: torch.Tensor, names: Sequence[str]) -> tuple[nn.Module, tuple[Applied, ...]]:
    """``module`` with the named rewrites applied where its forward pass on ``sample`` needs them, and what was
    applied; ``module`` itself when none applies. Cached per module and sample shape, so that the targets of one
    export share one rewritten copy (a backend may cache its lowering per module)."""
    if not names:
        return module, ()
    key = (tuple(names), tuple(sample.shape), sample.dtype)
    per_module = _CACHE.setdefault(module, {})
    if key not in per_module:
        sites = detect(module, sample, [get_rewrite(n) for n in names])
        per_module[key] = (apply(module, sites), summarize(sites)) if sites else None  # never the module itself: a weak key
    return per_module[key] or (module, ())
