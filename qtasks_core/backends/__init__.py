"""Engines under the components: Redis (the real one) and memory (one process)."""

from .base import BACKEND_ERRORS, Backend, BackendStats, Claimed
from .memory import MemoryBackend
from .redis import RedisBackend, mask_url

__all__ = [
    "BACKEND_ERRORS",
    "Backend",
    "BackendStats",
    "Claimed",
    "MemoryBackend",
    "RedisBackend",
    "mask_url",
]
