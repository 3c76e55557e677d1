"""The global config."""

from .base import GlobalConfig

__all__ = ["GlobalConfig"]
