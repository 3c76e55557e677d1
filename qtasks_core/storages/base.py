"""The old path of ``qtasks_core.storage``, kept so that code importing from here goes
on working."""

from ..storage import (
    KNOWN_STATUSES,
    Storage,
    UniqueHeld,
    error_line,
)

__all__ = [
    "KNOWN_STATUSES",
    "Storage",
    "UniqueHeld",
    "error_line",
]
