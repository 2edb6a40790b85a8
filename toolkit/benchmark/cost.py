"""What an artifact costs to run, read from its graph: MACs, parameters, weight bytes, activation bytes.

- MACs count the multiply-accumulates of convolutions, transposed convolutions, fully-connected layers
  and matrix products (elementwise ops, pooling and normalization are not MACs and are left out).
- Parameters are the elements of the graph's constant tensors; weight bytes are what the file stores
  for them (Core ML: the size of its weight blob, so palettized / sparse / int4 storage counts as stored).
- Activation bytes are the sizes of every tensor an op writes, at the dtype the graph declares; a phone
  moves about weights + 2 × activations per inference (each activation written once, read at least once).
- ``op_sequence`` lists op types in execution order, for counting the partitions an accelerator makes.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.backends import backend_for_path
from toolkit.backends.base import Cost


def artifact_cost(path: str | Path) -> Cost:
    """The cost of one artifact, from its own graph (read by its format's backend)."""
    path = Path(path)
    return backend_for_path(path).cost(path)
