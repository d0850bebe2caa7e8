"""The zoo's errors: each is reported as one `error:` line, never a traceback."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work; raised before any training starts."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or holds more than plain data."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that cannot be written (full disk, read-only or unwritable folder)."""


class DoesNotFitError(ValueError):
    """A model that cannot take this kind of data (say, a CNN on sequences)."""


def first_line(message: str) -> str:
    """The first non-empty line of an error message."""
    return next((line for line in message.splitlines() if line.strip()), "no message")
