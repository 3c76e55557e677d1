"""Task storage."""

from .base import Storage

__all__ = ["Storage"]
