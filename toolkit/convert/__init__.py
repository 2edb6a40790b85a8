"""Stage 3: convert the (compressed) PyTorch model to on-device formats.

Each format is a backend (``toolkit.backends``); this stage converts a recipe's targets through the
registry, names the artifacts and describes a backend's failure.
"""

from toolkit.convert.base import Artifact, convert_target, file_sha256, tree_size

__all__ = ["Artifact", "convert_target", "file_sha256", "tree_size"]
