"""Sending tasks: ``send_task``, ``add_task`` and ``add_tasks``, and eager mode.

Every new task goes down one path, the app's :class:`~qtasks_core.producer.Producer`:
these methods check the call's options, then hand it over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from ._validate import (
    check_args,
    check_batch_call,
    check_delay,
    check_expires,
    check_kwargs,
    check_priority,
    check_queue,
    check_task_name,
    check_timeout,
    check_unique_for,
    check_unique_key,
)
from .errors import TaskOptionError
from .producer import Call
from .reading import ReadOps
from .schemas import Task
from .storage import UniqueHeld

#: Tasks of one add_tasks call in flight at once (their writes share pipelines).
_BATCH = 1000


class SendOps(ReadOps):
    """The app's ways to send a task (every one has its sync twin on
    ``qtasks_core.QueueTasks``)."""

    async def send_task_async(
        self,
        task_name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
    ) -> Task:
        """Enqueue ``task_name`` with explicit ``args``/``kwargs`` (any names allowed,
        ``priority`` and ``timeout`` included). See :meth:`add_task_async`.

        :param queue: the queue (default: the task's own, else ``"default"``); only
            workers serving it run the task.
        :param delay: / :param eta: run no earlier than ``delay`` seconds (or a
            ``timedelta``) from now, or than ``eta`` (a timezone-aware ``datetime``).
            The task waits in the backend, not in a worker.
        :param expires: seconds, a ``timedelta`` or a timezone-aware ``datetime``: a
            task not started by then ends ``cancel`` with the reason ``expired`` and
            never runs.
        :param unique_key: while a task sent with this key is queued or running (and,
            with ``unique_for`` seconds or a ``timedelta``, until that long after it
            was sent), sending another with the key returns that task and adds none;
            checked in the same atomic step as the enqueue.

        A bad name, argument container, priority, timeout, queue or time raises
        :class:`TaskOptionError` before the app even connects.
        """
        task_name = check_task_name(task_name)
        call_args, call_kwargs = check_args(args, task_name), check_kwargs(kwargs, task_name)
        if priority is not None:
            check_priority(priority)
        timeout = check_timeout(timeout)
        options: dict[str, Any] = {}
        if timeout is not None:
            options["waited"] = True
        if queue is not None:
            options["queue"] = check_queue(queue)
        if (due := check_delay(delay, eta)) is not None:
            options["delay"] = due
        if (until := check_expires(expires)) is not None:
            options["expires"] = until
        if unique_key is not None:
            options["unique_key"] = check_unique_key(unique_key)
        if unique_for is not None:
            if unique_key is None:
                raise TaskOptionError("unique_for needs a unique_key: pass both")
            options["unique_for"] = check_unique_for(unique_for)
            kept = self.storage.result_ttl
            if kept is not None and options["unique_for"] > kept:
                raise TaskOptionError(
                    f"unique_for={options['unique_for']:g}s is longer than result_ttl="
                    f"{kept:g}s: the key is held by the task's record, which is gone by "
                    "then; raise app.config.result_ttl or shorten unique_for"
                )
        await self.start_async()
        call = await self.producer.call(task_name, call_args, call_kwargs, priority, options)
        return await self._send(call, timeout)

    async def _send(self, call: Call, timeout: float | None, uuid: str | None = None) -> Task:
        """Write a checked call through the producer, then run it (eager mode) or wait
        ``timeout`` seconds for its end, as :meth:`send_task_async` promises (``uuid``:
        a fixed one, see :meth:`Producer.add <qtasks_core.producer.Producer.add>`)."""
        try:
            task = await self.producer.add(call, uuid)
        except UniqueHeld as held:
            # Another task holds the key: that task is the answer, as it is now.
            existing = await self.get_async(held.uuid)
            if existing is None:
                raise TaskOptionError(
                    f"unique_key {call[5].get('unique_key')!r} is held by task {held.uuid}, "
                    "whose record is gone; send again"
                ) from None
            return existing
        if self.eager:
            return await self._run_eagerly(task.uuid)
        if timeout is not None:
            return await self._wait(task.uuid, timeout, marked=True)
        return task

    async def _run_eagerly(self, uuid: str) -> Task:
        from .worker import Worker

        # Exactly this task (and its retries): other tasks queued meanwhile stay queued.
        await Worker(self._whole, concurrency=1).run(only=uuid)
        task = await self.get_async(uuid)
        assert task is not None
        return task

    async def add_task_async(
        self,
        /,
        task_name: str,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Task:
        """Enqueue a task; returns it as written (status ``new``).

        ``priority``: lower runs first (default: the task's own, else 0). With
        ``timeout`` (seconds) the call waits for the final state and returns the
        finished task; if the wait runs out it raises :class:`TaskTimeoutError`, whose
        ``uuid`` keeps the task's id (the task itself goes on). Arguments must be
        JSON-serializable; otherwise :class:`TaskSerializationError` is raised and
        nothing is written. To pass task kwargs named ``priority`` or ``timeout``, use
        :meth:`send_task_async`.
        """
        return await self.send_task_async(
            task_name, args, kwargs, priority=priority, timeout=timeout
        )

    async def add_tasks_async(
        self,
        calls: Iterable[tuple[str, Iterable[Any], dict[str, Any]] | tuple[str, Iterable[Any]]],
        *,
        priority: int | None = None,
    ) -> list[Task]:
        """Enqueue many tasks at once: ``[(task_name, args[, kwargs]), ...]``.

        Each task goes through every trigger as with :meth:`send_task_async`; the
        writes of up to 1,000 tasks travel in one atomic script call. Returns the tasks
        in order. An error (e.g. arguments that cannot be serialized) is raised before
        that chunk is written: earlier chunks stay enqueued.
        """
        if priority is not None:
            check_priority(priority)
        results: list[Task] = []
        chunk: list[Call] = []
        # One chunk is written while the next is prepared, so Redis runs the script
        # while this process builds the next records; chunks still go one after the
        # other (in order, and none written after an error).
        writing: asyncio.Task[list[Task]] | None = None
        try:
            for index, call in enumerate(calls):
                task_name, args, kw = check_batch_call(call, index)
                if not self._started:
                    # Started once the first item passed: a bad one connects to nothing.
                    await self.start_async()
                chunk.append(await self.producer.call(task_name, args, kw, priority))
                if len(chunk) >= _BATCH:
                    if writing is not None:
                        results.extend(await writing)
                    writing = asyncio.ensure_future(self.producer.add_many(chunk))
                    chunk = []
                    await asyncio.sleep(0)  # let it send before preparing the next chunk
            if writing is not None:
                results.extend(await writing)
                writing = None
            if chunk:
                results.extend(await self.producer.add_many(chunk))
        except BaseException:
            if writing is not None:
                # The chunk already sent stays enqueued, as the docstring promises.
                await asyncio.wait([writing])
            raise
        if self.eager:
            return [await self._run_eagerly(task.uuid) for task in results]
        return results
