"""The async app, for code that lives in an event loop (the original QTasks' async app).

``from qtasks_core.asyncio import QueueTasks``: the same app, the same implementation,
only the edge differs (httpx's ``Client``/``AsyncClient`` pairs are the model): both
apps are a :class:`~qtasks_core.app.BaseQueueTasks`, and here every operation's plain
name (``add_task``, ``get``, ``wait``, ``abort``, ``watch``, ``start_workflow``,
``schedules`` …) is its coroutine, as is a task handle's ``add_task``::

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
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, overload

from .app import BaseQueueTasks
from .declare import AwaitedTaskHandle, P, R
from .errors import TaskTimeoutError
from .schemas import Task

log = logging.getLogger("qtasks.app")

__all__ = ["QueueTasks"]


class QueueTasks(BaseQueueTasks):
    """A QTasks app whose operations are coroutines under their plain names; see the
    module docstring. The ``*_async`` names work as well (they are the same
    coroutines)."""

    #: ``@app.task``'s handles: their ``add_task`` is this app's coroutine.
    _handle_kind = AwaitedTaskHandle

    if TYPE_CHECKING:
        from .declare import AwaitedDeclare

        # The handles differ from the sync app's in add_task only, which awaits here.
        @overload  # type: ignore[override]
        def task(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> AwaitedTaskHandle[P, R]: ...
        @overload
        def task(self, func: Callable[P, R], /) -> AwaitedTaskHandle[P, R]: ...
        @overload
        def task(
            self, func: None = None, /, *, name: str | None = None, **options: Any
        ) -> AwaitedDeclare: ...

        def task(self, func: Any = None, /, *, name: str | None = None, **options: Any) -> Any: ...

    # -- the async edge: one line per operation of BaseQueueTasks --------------------

    async def add_task(
        self,
        task_name: str,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Task | None:
        """:meth:`~qtasks_core.app.BaseQueueTasks.add_task_async`, except that a wait
        (``timeout``) that runs out returns ``None``, as in the original QTasks."""
        return await _none_on_timeout(
            self.send_task_async(task_name, args, kwargs, priority=priority, timeout=timeout)
        )

    async def send_task(
        self,
        task_name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Task | None:
        """:meth:`~qtasks_core.app.BaseQueueTasks.send_task_async` (``priority, timeout,
        queue, delay, eta, expires``); a wait that runs out returns ``None``, as
        ``add_task``."""
        return await _none_on_timeout(self.send_task_async(task_name, args, kwargs, **options))

    add_tasks = BaseQueueTasks.add_tasks_async

    get = BaseQueueTasks.get_async
    list_tasks = BaseQueueTasks.list_tasks_async
    wait = BaseQueueTasks.wait_async
    watch = BaseQueueTasks.watch_async
    events = BaseQueueTasks.events_async

    cancel = BaseQueueTasks.cancel_async
    abort = BaseQueueTasks.abort_async
    retry = BaseQueueTasks.retry_async
    ping = BaseQueueTasks.ping_async
    dead_letters = BaseQueueTasks.dead_letters_async
    dead_letter_page = BaseQueueTasks.dead_letter_page_async
    requeue_dead = BaseQueueTasks.requeue_dead_async
    delete_dead = BaseQueueTasks.delete_dead_async
    purge_queue = BaseQueueTasks.purge_queue_async
    purge = BaseQueueTasks.purge_async
    migrate_keys = BaseQueueTasks.migrate_keys_async
    flush_all = BaseQueueTasks.flush_all_async

    start_workflow = BaseQueueTasks.start_workflow_async
    list_workflows = BaseQueueTasks.list_workflows_async
    workflow = BaseQueueTasks.workflow_async

    add_schedule = BaseQueueTasks.add_schedule_async
    remove_schedule = BaseQueueTasks.remove_schedule_async
    schedules = BaseQueueTasks.schedules_async

    start = BaseQueueTasks.start_async
    stop = BaseQueueTasks.stop_async


async def _none_on_timeout(call: Awaitable[Task]) -> Task | None:
    """The original's answer to a wait that ran out: ``None`` (the task goes on)."""
    try:
        return await call
    except TaskTimeoutError as exc:
        # None carries no id: the log keeps it for whoever looks for the task.
        log.info("%s: add_task returns None", exc)
        return None
