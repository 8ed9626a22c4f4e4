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


def require_at_least(option: str, value: float | None, minimum: float = 1) -> None:
    """A one-line :class:`DermsynthError` naming ``option`` unless ``value`` is ``None`` (not given: its default)
    or at least ``minimum`` (so that 0 or a negative number never silently means "the default")."""
    if value is not None and not value >= minimum:
        raise DermsynthError(f"{option} must be >= {minimum:g}, got {value}")
