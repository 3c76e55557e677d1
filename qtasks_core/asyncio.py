"""The async app, for code that lives in an event loop (the original QTasks' async app).

``from qtasks_core.asyncio import QueueTasks``: the same app, the same implementation,
only the edge differs (httpx's ``Client``/``AsyncClient`` pairs are the model): its
``add_task``, ``send_task``, ``add_tasks``, ``get``, ``wait``, ``cancel``, ``ping``,
``flush_all``, ``stop`` … are coroutines, and a task handle's ``add_task`` too::

    from qtasks_core.asyncio import QueueTasks

    app = QueueTasks("demo")

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    async def main() -> None:
        task = await app.add_task("add", 2, 3, timeout=10)
        same = await add.add_task(2, 3)
        print(task.returning, (await app.get(same.uuid)).status)

``add_task(..., timeout=)`` and ``send_task(..., timeout=)`` return ``None`` when the
wait runs out, as the original's async app did, so code and tests written for it run
unchanged (the task goes on; its id is logged at INFO on ``qtasks.app``). The sync app
raises :class:`~qtasks_core.errors.TaskTimeoutError` instead, which keeps the id; here
too ``wait``, ``add_task_async`` and ``send_task_async`` raise it: use them (or
``add_task`` without ``timeout``, then ``wait``) when the id matters.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from typing import Any

from .app import QueueTasks as _SyncQueueTasks
from .backends.base import RequeueResult
from .errors import TaskTimeoutError
from .schemas import DeadLetterPage, Task, TaskPage

log = logging.getLogger("qtasks.app")

__all__ = ["QueueTasks"]


class QueueTasks(_SyncQueueTasks):
    """A QTasks app whose methods are coroutines; see the module docstring. The
    ``*_async`` names work as well (they are the same coroutines)."""

    # The sync app's blocking methods, overridden by coroutines of the same names: the
    # two apps differ exactly at this edge.

    async def add_task(  # type: ignore[override]
        self,
        task_name: str,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Task | None:
        """:meth:`~qtasks_core.QueueTasks.add_task_async`, except that a wait
        (``timeout``) that runs out returns ``None``, as in the original QTasks."""
        return await _none_on_timeout(
            self.send_task_async(task_name, args, kwargs, priority=priority, timeout=timeout)
        )

    async def send_task(  # type: ignore[override]
        self,
        task_name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Task | None:
        """:meth:`~qtasks_core.QueueTasks.send_task_async` (``priority, timeout, queue,
        delay, eta, expires``); a wait that runs out returns ``None``, as ``add_task``."""
        return await _none_on_timeout(self.send_task_async(task_name, args, kwargs, **options))

    async def add_tasks(  # type: ignore[override]
        self,
        calls: Iterable[tuple[str, Iterable[Any], dict[str, Any]] | tuple[str, Iterable[Any]]],
        *,
        priority: int | None = None,
    ) -> list[Task]:
        """:meth:`~qtasks_core.QueueTasks.add_tasks_async`."""
        return await self.add_tasks_async(calls, priority=priority)

    async def get(self, uuid: str) -> Task | None:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.get_async`."""
        return await self.get_async(uuid)

    async def wait(self, uuid: str, timeout: float) -> Task:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.wait_async`."""
        return await self.wait_async(uuid, timeout)

    async def cancel(self, uuid: str, reason: str = "") -> bool:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.cancel_async`."""
        return await self.cancel_async(uuid, reason)

    async def ping(self) -> bool:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.ping_async`."""
        return await self.ping_async()

    async def flush_all(self) -> None:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.flush_all_async`."""
        await self.flush_all_async()

    async def list_tasks(  # type: ignore[override]
        self,
        *,
        status: str | None = None,
        task_name: str | None = None,
        queue: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> TaskPage:
        """:meth:`~qtasks_core.QueueTasks.list_tasks_async`."""
        return await self.list_tasks_async(
            status=status, task_name=task_name, queue=queue, before=before, limit=limit
        )

    async def dead_letters(self) -> list[dict[str, str]]:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.dead_letters_async`."""
        return await self.dead_letters_async()

    async def dead_letter_page(  # type: ignore[override]
        self, *, before: str | None = None, limit: int = 50
    ) -> DeadLetterPage:
        """:meth:`~qtasks_core.QueueTasks.dead_letter_page_async`."""
        return await self.dead_letter_page_async(before=before, limit=limit)

    async def requeue_dead(self, uuid: str) -> RequeueResult:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.requeue_dead_async`."""
        return await self.requeue_dead_async(uuid)

    async def delete_dead(self, uuid: str) -> bool:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.delete_dead_async`."""
        return await self.delete_dead_async(uuid)

    async def purge(self) -> int:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.purge_async`."""
        return await self.purge_async()

    async def migrate_keys(self) -> tuple[int, list[str]]:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.migrate_keys_async`."""
        return await self.migrate_keys_async()

    async def start(self) -> None:  # type: ignore[override]
        """:meth:`~qtasks_core.QueueTasks.start_async`."""
        await self.start_async()

    async def stop(self) -> None:  # type: ignore[override]
        """Fire the stop triggers and close this loop's connections
        (:meth:`~qtasks_core.QueueTasks.stop_async`)."""
        await self.stop_async()


async def _none_on_timeout(call: Awaitable[Task]) -> Task | None:
    """The original's answer to a wait that ran out: ``None`` (the task goes on)."""
    try:
        return await call
    except TaskTimeoutError as exc:
        # None carries no id: the log keeps it for whoever looks for the task.
        log.info("task %s not finished after %gs: add_task returns None", exc.uuid, exc.timeout)
        return None
