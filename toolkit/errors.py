"""Typed errors. Each carries the exit code the CLI returns and a one-line hint naming the fix."""

from __future__ import annotations


class SkinkitError(Exception):
    """Base class. ``str(err)`` is the cause; ``err.fix`` says what to do about it."""

    exit_code = 1

    def __init__(self, cause: str, *, fix: str | None = None):
        super().__init__(cause)
        self.cause = cause
        self.fix = fix

    def one_line(self) -> str:
        return f"{self.cause} — fix: {self.fix}" if self.fix else self.cause


class BadInputError(SkinkitError):
    """A recipe, file, model name or data folder the user gave is wrong (exit 1)."""

    exit_code = 1


class RecipeError(BadInputError):
    """A recipe does not parse or does not validate."""


class CheckpointError(BadInputError):
    """A checkpoint is missing, corrupt, or does not match the model."""


class DataError(BadInputError):
    """An evaluation or calibration data source is missing, empty or unreadable."""


class ConversionError(SkinkitError):
    """A backend failed to produce an artifact (exit 2 when no target converts, or with ``--strict``).
    ``op`` and ``module`` name the torch op and the PyTorch module the converter failed on, where known."""

    exit_code = 2

    def __init__(self, cause: str, *, fix: str | None = None, op: str | None = None, module: str | None = None):
        super().__init__(cause, fix=fix)
        self.op = op
        self.module = module


class VerificationFailed(SkinkitError):
    """The verification gate refused at least one artifact (exit 3). The bundle and report are kept.
    ``not_converted``: one line per recipe target that also failed to convert (the bundle is incomplete too)."""

    exit_code = 3

    def __init__(self, cause: str, *, failures: list[str], bundle_dir: str | None = None, fix: str | None = None,
                 not_converted: list[str] | None = None):
        super().__init__(cause, fix=fix)
        self.failures = failures
        self.bundle_dir = bundle_dir
        self.not_converted = not_converted or []


class IncompleteBundle(SkinkitError):
    """Some recipe targets failed to convert; the others were verified, pass the gate and were bundled
    (exit 4). The bundle is written and marked incomplete. ``not_converted``: one line per failed target
    (cause — fix); ``summary``: the export's machine summary."""

    exit_code = 4

    def __init__(self, cause: str, *, not_converted: list[str], bundle_dir: str | None = None, fix: str | None = None,
                 summary: dict | None = None):
        super().__init__(cause, fix=fix)
        self.not_converted = not_converted
        self.bundle_dir = bundle_dir
        self.summary = summary


class VerificationError(SkinkitError):
    """An artifact could not be executed for verification (e.g. an op the Core ML interpreter lacks).
    The export records it as a failed check; on its own it exits 2."""

    exit_code = 2


def did_you_mean(word: object, choices) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to a misspelt ``word``; empty when none is close."""
    import difflib

    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
