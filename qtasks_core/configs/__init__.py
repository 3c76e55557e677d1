"""The old home of ``GlobalConfig`` (now in ``qtasks_core.global_config``), kept so that code
importing it from here goes on working."""

from ..global_config import GlobalConfig

__all__ = ["GlobalConfig"]
