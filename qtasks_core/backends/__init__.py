"""Engines under the components: Redis (the real one) and memory (one process)."""

from .._urls import mask_url
from .base import (
    Backend,
    BackendStats,
    BrokerBackend,
    Claim,
    Claimed,
    ConfigBackend,
    LifecycleBackend,
    SchedulerBackend,
    StorageBackend,
)
from .memory import MemoryBackend
from .redis import RedisBackend

__all__ = [
    "Backend",
    "BackendStats",
    "BrokerBackend",
    "Claim",
    "Claimed",
    "ConfigBackend",
    "LifecycleBackend",
    "MemoryBackend",
    "RedisBackend",
    "SchedulerBackend",
    "StorageBackend",
    "mask_url",
]
