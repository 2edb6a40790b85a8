"""Stage 4: verify every artifact against the float PyTorch reference; fail closed."""

from toolkit.verify.gate import reference_outputs, resolve_tolerance, verify_artifact

__all__ = ["reference_outputs", "resolve_tolerance", "verify_artifact"]
