"""skinkit: trained PyTorch skin-analysis models to verified on-device bundles.

The public API, imported lazily so that ``import toolkit`` (and ``skinkit --help``) stays instant::

    from toolkit import export                 # a torch.nn.Module (or a recipe) to a verified bundle: ExportResult
    from toolkit import load_recipe, verify_bundle, inspect_artifact, MILProgram, ProgressEvent
    from toolkit import load_chain_recipe, export_chain, verify_pipeline   # assessment bundles (several models)
    from toolkit import load_bundle, assess                                # `skinkit run`: a bundle on a photo
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "load_recipe": "toolkit.recipe",
    "parse_recipe": "toolkit.recipe",
    "export": "toolkit.api",
    "ExportResult": "toolkit.pipeline",
    "ProgressEvent": "toolkit.progress",
    "verify_bundle": "toolkit.verify.bundle",
    "inspect_artifact": "toolkit.convert.inspect",
    "MILProgram": "toolkit.backends.coreml.mil",
    "get_spec": "toolkit.registry",
    "list_models": "toolkit.registry",
    "load_model": "toolkit.load",
    "load_chain_recipe": "toolkit.chain.recipe",
    "export_chain": "toolkit.chain.export",
    "verify_pipeline": "toolkit.chain.verify",
    "load_bundle": "toolkit.client.run",
    "assess": "toolkit.client.run",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
