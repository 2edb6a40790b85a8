"""Which layers a compressor touches, and how hard: one global ratio, refined by module type and module name.

``overrides`` maps a key to a ratio (0 leaves the layer alone):

- a **module type**: a class name (``Linear``, ``Conv2d``, or a block of the model such as
  ``SqueezeExcite``); it applies to the weighted layers of that type and to those inside modules of it;
- a **module name**: an exact path, a prefix (``features.1`` covers ``features.1.conv``) or a glob
  (``blocks.*.mlp.0``).

A name beats a type, a longer (more specific) name beats a shorter one (a plain name beats a glob of
the same length), and a type beats the global ratio. ``exclude`` is shorthand for a name override of 0.
A key that matches nothing is an error that lists what exists, so a typo never silently compresses the
whole model.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from toolkit.backends.weights import weighted_layers
from toolkit.errors import RecipeError


def _name_matches(name: str, pattern: str) -> bool:
    return name == pattern or name.startswith(pattern + ".") or fnmatchcase(name, pattern) or fnmatchcase(name, pattern + ".*")


def layer_ratios(model, ratio: float, overrides: dict[str, float] | None = None, exclude: tuple[str, ...] = ()) -> dict[str, float]:
    """The ratio for every weighted layer of ``model`` (see the module docstring for precedence)."""
    overrides = {**(overrides or {}), **{p: 0.0 for p in exclude}}
    modules = dict(model.named_modules())
    types = {type(m).__name__ for m in modules.values()}
    names = [n for n in modules if n]
    unknown = [k for k in overrides if k not in types and not any(_name_matches(n, k) for n in names)]
    if unknown:
        blocks = sorted(types - {"Sequential", "ModuleList", "ModuleDict"})
        raise RecipeError(f"pruning overrides/exclude name nothing in {type(model).__name__}: {', '.join(map(repr, unknown))}",
                          fix=f"use a module type ({', '.join(blocks[:12])}…) or a module path such as {names[0]!r} "
                              "(a prefix or a glob like 'blocks.*.mlp.0')")
    globbed = lambda k: any(c in k for c in "*?[")  # noqa: E731
    by_name = sorted(((k, v) for k, v in overrides.items() if k not in types), key=lambda kv: (-len(kv[0]), globbed(kv[0])))
    by_type = {k: v for k, v in overrides.items() if k in types}
    out = {}
    for name, _ in weighted_layers(model):
        hit = next((v for k, v in by_name if _name_matches(name, k)), None)
        if hit is None:
            parts = name.split(".")
            owners = [modules[".".join(parts[:i])] for i in range(len(parts), -1, -1)]  # the layer, its parents, the model
            hit = next((by_type[type(o).__name__] for o in owners if type(o).__name__ in by_type), None)
        out[name] = ratio if hit is None else hit
    return out
