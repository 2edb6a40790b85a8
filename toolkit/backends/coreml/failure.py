"""Which torch op coremltools was converting when it failed. Its torch frontend converts the traced graph
node by node (``frontend/torch/ops.py``: ``convert_single_node(context, node)``) and re-raises whatever an
op's conversion raises; the message often names neither the op nor the module (a MIL op's type check:
"rank 3 or rank 5 input is only supported when all the values of alpha are same"). The node is still a
local of that frame in the exception's traceback, with its op kind and the module hierarchy it was
traced in."""

from __future__ import annotations

from toolkit.backends.base import FailureSite

_FRONTEND = "coremltools.converters.mil.frontend.torch."


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _failing_node(exc: BaseException):
    """The innermost node the frontend was converting in the traceback of ``exc`` or of what caused it."""
    for e in _chain(exc):
        node, tb = None, e.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_name == "convert_single_node" and frame.f_globals.get("__name__", "").startswith(_FRONTEND):
                node = frame.f_locals.get("node", node)
            tb = tb.tb_next
        if node is not None:
            return node
    return None


def failure_site(exc: BaseException) -> FailureSite | None:
    node = _failing_node(exc)
    if node is None:
        return None
    op = str(getattr(node, "kind", "") or "?")
    meta = getattr(node, "meta", None)
    stack = meta.get("nn_module_stack") if isinstance(meta, dict) else None
    if stack:  # the torch.export frontend: the fx node's module stack, {key: (dotted path, qualified class)}
        path, cls = list(stack.values())[-1]
        return FailureSite(op=op, scope=tuple(path.split(".")) if path else (), module_type=str(cls).rsplit(".", 1)[-1])
    try:  # TorchScript: "name(Type).name(Type)..." with the node itself appended last
        names, types = node.get_scope_info()
    except (AttributeError, ValueError):
        return FailureSite(op=op)
    return FailureSite(op=op, scope=tuple(names[:-1]), module_type=types[-2] if len(types) > 1 else None)
