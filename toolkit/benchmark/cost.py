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

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.backends import backend_for_path
from toolkit.backends.base import Cost

if TYPE_CHECKING:
    from toolkit.convert.cache import ConversionCache


def artifact_cost(path: str | Path, cache: ConversionCache | None = None) -> Cost:
    """The cost of one artifact, from its own graph (read by its format's backend). ``cache``: the conversion cache,
    which keeps what was read by the artifact's content (reading a Core ML program imports coremltools: 5–10 s)."""
    path = Path(path)
    if cache is None:
        return backend_for_path(path).cost(path)
    from dataclasses import asdict

    from toolkit.convert.base import file_sha256
    from toolkit.convert.cache import skinkit_version

    key = hashlib.sha256(f"cost {file_sha256(path)} {skinkit_version()}".encode()).hexdigest()
    record = cache.get_record(key)
    if record is not None and record.get("kind") == "cost":
        return Cost(**{**record["cost"], "op_sequence": tuple(record["cost"]["op_sequence"])})
    cost = backend_for_path(path).cost(path)
    cache.put_record(key, {"kind": "cost", "cost": asdict(cost)})
    return cost
