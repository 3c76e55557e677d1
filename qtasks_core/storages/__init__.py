"""The old home of ``Storage`` (now in ``qtasks_core.storage``), kept so that code
importing it from here goes on working."""

from ..storage import Storage

__all__ = ["Storage"]
