"""One exception type for every user-facing error.

The CLI catches :class:`DermsynthError` and prints its message on one line (no traceback),
so every message should name the file or option at fault and say what was expected.
"""

from __future__ import annotations


class DermsynthError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""


class DataError(DermsynthError):
    """Missing, unreadable or inconsistent data (images, masks, label tables)."""


class CheckpointError(DermsynthError):
    """A checkpoint that is missing, corrupt or does not match the requested model."""
