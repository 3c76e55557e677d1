"""The old path of ``qtasks_core.global_config``, kept so that code importing from here goes
on working."""

from ..global_config import (
    GlobalConfig,
)

__all__ = [
    "GlobalConfig",
]
