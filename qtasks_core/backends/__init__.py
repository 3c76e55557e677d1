"""Engines under the components: Redis (the real one) and memory (one process)."""

from .._urls import mask_url
from .base import Backend, BackendStats, Claim, Claimed
from .memory import MemoryBackend
from .redis import RedisBackend

__all__ = [
    "Backend",
    "BackendStats",
    "Claim",
    "Claimed",
    "MemoryBackend",
    "RedisBackend",
    "mask_url",
]
