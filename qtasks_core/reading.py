"""Reading tasks: one task, a page of them, a wait for the end, progress and events.

Everything here reads through the Storage (records, indexes, the watch streams and the
event stream) and the Broker (``qtasks_get``'s task); nothing writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

from ._util import fired
from ._validate import check_timeout
from .errors import BackendError, TaskOptionError, TaskTimeoutError
from .keys import DEFAULT_QUEUE
from .schemas import FINAL_STATUSES, StatusChange, Task, TaskPage, TaskStatus
from .wiring import Wiring

log = logging.getLogger("qtasks.app")


class ReadOps(Wiring):
    """The app's reads (every one has its sync twin on ``qtasks_core.QueueTasks``)."""

    async def get_async(self, uuid: str, *, _record: dict[str, str] | None = None) -> Task | None:
        """The task's current state, or ``None`` if no task has this id (or it expired)."""
        await self.start_async()
        task = await self.broker.get(uuid, _record)
        new = await fired(self.pm.hook.qtasks_get(qtasks=self, broker=self.broker, task=task))
        return task if new is None else new

    async def list_tasks_async(
        self,
        *,
        status: str | None = None,
        task_name: str | None = None,
        queue: str | None = None,
        before: str | None = None,
        limit: int = 50,
        search: str | None = None,
    ) -> TaskPage:
        """A page of tasks, read from indexes the backend keeps (never a key scan, so a
        page is as fast with a million finished records as with ten).

        :param status: a final status (``success``, ``error``, ``cancel``: newest first,
            by when they ended), ``None`` for every finished task, or a live one:
            ``new`` (the queue ``queue``, default ``default``, in queue order),
            ``process`` (by lease deadline), ``retry`` (waiting for a retry, by due
            time) or ``delayed`` (every task waiting for its due time: sent with a
            delay or waiting for a retry, by due time).
        :param task_name: only tasks of this name.
        :param queue: only tasks of this queue.
        :param before: the ``next`` of the previous page.
        :param limit: tasks per page, 1 to 1000.
        :param search: only tasks whose arguments, keyword arguments, result or
            traceback hold this text (case-insensitive, as stored: JSON for the
            arguments and the result). A search reads the records of the filter a page
            at a time, the newest first, and stops after
            :data:`~qtasks_core.storage.SEARCH_WINDOW` (2,000) of them: the page says
            how many it read (``searched``) and whether it stopped there
            (``search_cut``; ``next`` then goes on with the older ones). Narrow the
            filter (a status, a task name) to reach further back.

        A finished task is listed for as long as its record is kept (``result_ttl``).
        Filters the index does not hold (a name within a status, a queue) are checked
        over a bounded window of entries, so a page can hold fewer than ``limit`` tasks
        and still have a ``next``.
        """
        await self.start_async()
        if search is not None:
            found = await self.storage.search_tasks(
                search,
                status=status,
                task_name=task_name,
                queue=queue,
                before=before,
                limit=limit,
            )
            return TaskPage(
                tasks=found.tasks, next=found.next, searched=found.searched, search_cut=found.cut
            )
        tasks, cursor = await self.storage.list_tasks(
            status=status,
            task_name=task_name,
            queue=queue,
            before=before,
            limit=limit,
        )
        return TaskPage(tasks=tasks, next=cursor)

    async def wait_async(self, uuid: str, timeout: float) -> Task:
        """Wait (blocking in the backend, no polling) for the task's final state.

        Raises :class:`TaskTimeoutError` (with ``uuid`` and the last seen ``task``)
        when ``timeout`` seconds pass first.
        """
        return await self._wait(uuid, timeout, marked=False)

    async def _wait(self, uuid: str, timeout: float, *, marked: bool) -> Task:
        """:meth:`wait_async`; ``marked``: the task was sent as waited for."""
        checked = check_timeout(timeout)
        if checked is None:
            raise TaskOptionError("timeout must be a number of seconds to wait, got None")
        timeout = checked
        await self.start_async()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            done = await self.storage.wait_done(uuid, max(0.0, deadline - loop.time()), marked)
            marked = True  # the first call marked it
            task = await self.get_async(uuid, _record=done if isinstance(done, dict) else None)
            if task is not None and task.is_finished:
                return task
            # Not done yet (a long wait is made of bounded blocks) or a retry is pending.
            if loop.time() >= deadline:
                raise TaskTimeoutError(uuid, timeout, task, **await self._why_not_started(task))
            if done:
                # The token is there but the record is not final (e.g. requeued from
                # the dead letters): block on the record's next change instead.
                await asyncio.sleep(0.05)

    async def _why_not_started(self, task: Task | None) -> dict[str, str]:
        """For a wait that ran out on a task still queued: its queue and the backend,
        when no live worker serves that queue (the usual cause: the worker runs on
        another server, e.g. an embedded one in another folder)."""
        if task is None or task.status != TaskStatus.NEW:
            return {}
        try:
            stats = await self.broker.stats()
        except BackendError:
            return {}  # the timeout is the error to report, not this check
        serving = {
            queue
            for worker in stats.workers
            for queue in worker.get("queues") or [DEFAULT_QUEUE]
            if isinstance(queue, str)
        }
        if task.queue in serving:
            return {}
        where = self.backend.location
        if self.embedded_home:
            where = f"the embedded server in {self.embedded_home}"
        return {"no_worker": task.queue, "backend": where}

    async def watch_async(self, uuid: str, timeout: float | None = None) -> AsyncIterator[Task]:
        """Yield the task ``uuid`` each time it reports progress (``ctx.set_progress``;
        the update is on ``.progress``) and once more when it ends, then stop. Blocks
        in the backend between updates (no polling), from any process.

        Raises :class:`TaskOptionError` for an unknown task and
        :class:`TaskTimeoutError` if ``timeout`` seconds pass before it ends.
        """
        timeout = check_timeout(timeout)
        await self.start_async()
        status = await self.storage.watch_start(uuid)
        if not status:
            raise TaskOptionError(f"no task {uuid!r} to watch (unknown, or its record expired)")
        deadline = None if timeout is None else time.monotonic() + timeout
        after = "0"
        while True:
            if status in FINAL_STATUSES:
                # It ended before the watch began (or its end was not streamed).
                task = await self.get_async(uuid)
                if task is not None:
                    yield task
                return
            left = 20.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TaskTimeoutError(uuid, timeout or 0.0, await self.get_async(uuid))
            events = await self.storage.watch_events(uuid, after, min(left, 20.0))
            for event_id, kind, data in events:
                after = event_id
                if kind == "final":
                    record = json.loads(data)
                    record.pop("claim", None)
                    task = await self.get_async(uuid, _record=record)
                    if task is not None:
                        yield task
                    return
                task = await self.get_async(uuid)
                if task is not None:
                    yield task.model_copy(update={"progress": json.loads(data)})

    async def events_async(
        self, after: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[StatusChange]:
        """Every task's status changes, as the processes of the app that write the event
        stream (``events=True``) make them: from now on, or after the stream id
        ``after`` (``"0"``: from the oldest kept; each change carries its ``id``, so a
        reader that stops can go on where it was). The reader itself needs no
        ``events=True``; the workers and producers whose changes it shows do.

        :param timeout: stop after this many seconds without a change (``None``: wait
            for ever).
        """
        await self.start_async()
        storage = self.storage
        cursor = after if after is not None else await storage.events_last()
        if not self.events_max and cursor == "0-0":
            log.warning(
                "the event stream of app %s is empty and this process writes none "
                "(events=False): changes show up once workers or producers run with "
                "events=True (or QTASKS_EVENTS=1)",
                self.name,
            )
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            wait = 20.0 if deadline is None else deadline - loop.time()
            if wait <= 0:
                return
            changes = await storage.events(cursor, wait)
            for change in changes:
                yield change
            if changes:
                cursor = changes[-1].id or cursor
                if timeout is not None:
                    deadline = loop.time() + timeout  # quiet time counts from the last
