"""Stage 3: convert the (compressed) PyTorch model to on-device formats.

Each backend lives in its own module and registers one function in ``CONVERTERS``; the table of
supported (format, precision) pairs is the single source the recipe schema validates against.
"""

from toolkit.convert.base import CONVERTERS, SUPPORTED, Artifact, convert_target, file_sha256, tree_size

__all__ = ["CONVERTERS", "SUPPORTED", "Artifact", "convert_target", "file_sha256", "tree_size"]
