"""Stage 1: load a trained model and its preprocessing contract."""

from toolkit.load.loader import LoadedModel, load_model

__all__ = ["LoadedModel", "load_model"]
