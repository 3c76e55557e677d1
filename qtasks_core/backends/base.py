"""The storage engine under Broker, Storage and GlobalConfig.

A backend does the atomic work (enqueue, claim with a lease, finish, wait) and knows
nothing of plugins: the components fire triggers and call it. Two implement it: Redis
(the real engine, shared by every worker on every machine) and memory (one process).

A task record is a flat ``dict[str, str]``; JSON-valued fields are ``args``,
``kwargs``, ``extra`` and ``returning``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import redis.exceptions

#: What an unreachable backend raises: retried with backoff by workers, reported as
#: "cannot reach" by the CLI. (redis-py's errors do not derive from the builtins.)
BACKEND_ERRORS: Final = (
    ConnectionError,
    TimeoutError,
    OSError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)


@dataclass(slots=True)
class Claimed:
    """What one claim returned."""

    #: Claimed records: uuid, task_name, priority, args, kwargs, created_at, attempts,
    #: extra, retry (strings, as stored).
    tasks: list[dict[str, str]] = field(default_factory=list)
    #: Tasks whose worker's lease expired and that went back into the queue.
    recovered: list[str] = field(default_factory=list)
    #: Tasks set aside because they kept killing their workers.
    dead: list[str] = field(default_factory=list)
    #: Seconds until the next delayed task falls due, if any.
    next_due: float | None = None
    #: Seconds until the first lease expires, if any (a dead worker's task to recover).
    next_lease_end: float | None = None

    @property
    def next_wake(self) -> float | None:
        """When a claim could next find work without an enqueue."""
        times = [t for t in (self.next_due, self.next_lease_end) if t is not None]
        return min(times) if times else None


@dataclass(slots=True)
class BackendStats:
    queued: dict[int, int] = field(default_factory=dict)
    scheduled: int = 0
    running: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)
    dead: int = 0


class Backend(Protocol):
    """What the components need from an engine. Every method is atomic where it says."""

    #: A printable location without secrets (``redis://host:6379/0``, ``memory``).
    location: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def enqueue(self, uuid: str, record: dict[str, str], priority: int) -> None:
        """Write the record and queue the task, atomically, in one round trip."""

    async def enqueue_many(self, items: list[tuple[str, dict[str, str], int]]) -> None:
        """:meth:`enqueue` for ``(uuid, record, priority)`` items, in one write."""

    async def claim(self, n: int, worker_id: str, lease: float, max_attempts: int) -> Claimed:
        """Move due delayed tasks and expired leases back to the queue, then claim up
        to ``n`` tasks for ``worker_id`` with a lease of ``lease`` seconds."""

    async def wait_for_work(self, timeout: float, worker_id: str = "") -> None:
        """Block (no polling) until a task may be claimable, ``timeout`` passes, or
        :meth:`wake` is called for ``worker_id``."""

    async def wake(self, worker_id: str) -> None:
        """End the wait of ``worker_id`` (a worker that is stopping)."""

    async def extend(self, worker_id: str, uuids: list[str], lease: float) -> None:
        """Extend the leases of ``uuids`` that ``worker_id`` still owns."""

    async def finish(
        self, uuid: str, fields: dict[str, str], ttl: float | None, delay: float | None
    ) -> None:
        """Write a task's new state and release its lease, atomically. With ``delay``
        the task waits in the backend, then is queued again (retry); without, it is
        final: waiters wake and the record expires after ``ttl`` seconds."""

    async def release(self, uuids: list[str], worker_id: str = "") -> list[str]:
        """Hand unfinished tasks back to the queue (a worker shutting down)."""

    async def get(self, uuid: str) -> dict[str, str] | None: ...

    async def get_all(self, limit: int) -> list[dict[str, str]]: ...

    async def wait_done(self, uuid: str, timeout: float) -> dict[str, str] | bool:
        """Block until the task is final, or ``timeout`` passes (``False``). A final
        task gives its record when the backend has it at hand, else ``True``."""

    async def update(self, uuid: str, fields: dict[str, str], ttl: float | None = None) -> bool:
        """Set fields on an existing record; a ``cancel`` status also unqueues it."""

    async def dead_letter(self, uuid: str, reason: str, raw: str) -> None:
        """Set a task aside with its reason; it is not retried."""

    async def dead_letters(self) -> list[dict[str, str]]: ...

    async def requeue_dead(self, uuid: str) -> bool: ...

    async def stats(self) -> BackendStats: ...

    async def flush_all(self) -> None: ...

    async def delete_finished(self) -> int: ...

    async def config_set(self, name: str, key: str, value: str) -> None: ...

    async def config_get(self, name: str, key: str) -> str | None: ...

    async def config_get_all(self, name: str) -> dict[str, str]: ...

    async def config_get_match(self, name: str, pattern: str) -> dict[str, str]: ...

    async def set_status(self, worker_id: str, status: str, ttl: float) -> None: ...

    async def clear_status(self, worker_id: str) -> None: ...
