"""skinkit: trained PyTorch skin-analysis models to verified on-device bundles."""

__version__ = "0.1.0"
