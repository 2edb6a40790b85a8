"""Exact graph rewrites for known converter gaps.

Users bring their own models, and each converter has ops it refuses, lowers into thousands of ops, or lowers
to different numbers; an equivalent graph avoids the gap. A rewrite (``catalog``) names the gap, the torch
functions it intercepts and a plan that decides on the real tensors of a call whether it needs the rewrite and
what computes the same (``modules``). A backend lists the rewrites its converter needs (``Backend.rewrites``);
``toolkit.convert.base.convert_target`` hands the converter a copy of the model with those rewrites applied
where a forward pass finds them (``apply``), records them in the artifact's details, and keeps the original as
the float reference.
"""

from toolkit.backends.rewrites.apply import Applied, Site, detect, rewritten
from toolkit.backends.rewrites.catalog import REWRITES, Plan, Rewrite, get_rewrite

__all__ = ["REWRITES", "Applied", "Plan", "Rewrite", "Site", "detect", "get_rewrite", "rewritten"]
