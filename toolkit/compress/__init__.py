"""Stage 2: compress the float model. Compressors return a new model and never mutate their input."""

from toolkit.compress.pruning import MagnitudePruner

__all__ = ["MagnitudePruner"]
