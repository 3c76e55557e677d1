"""Operating on tasks: cancel, abort, retry, dead letters, purges, key migration.

Each operation is one step of a component (Broker or Storage), checked first.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from typing import Final

from ._util import fired
from ._validate import check_queue
from .backends.base import AbortResult, RequeueResult
from .errors import RetriedAlready, TaskOptionError
from .schemas import DeadLetterPage, Task
from .sending import SendOps
from .storage import TaskExists

#: The namespace of the uuids ``retry_async(once=True)`` derives (uuid5 of the old one).
_RETRY_IDS: Final = uuidlib.UUID("5b0d7f3e-8a4c-4f1e-9c2d-7e6a1b3c9d40")


class AdminOps(SendOps):
    """What an operator does to tasks (every one has its sync twin on
    ``qtasks_core.QueueTasks``)."""

    async def cancel_async(self, uuid: str, reason: str = "") -> bool:
        """Cancel a task that is still queued or waiting for a retry; ``False`` if it
        is running, finished or unknown."""
        await self.start_async()
        return await self.broker.update(uuid=uuid, status="cancel", cancel_reason=reason)

    async def abort_async(self, uuid: str, reason: str = "aborted") -> AbortResult:
        """Stop the task ``uuid`` wherever it is; it ends ``cancel`` with ``reason``.

        A queued or delayed task (or one waiting for a retry) is cancelled at once and
        never runs: ``"cancelled"``. A running one, on any machine: ``"aborting"``; its
        worker learns it at its next heartbeat (every lease/6 seconds; nothing polls
        faster), an async task is cancelled at its next ``await`` and a sync one sees
        ``ctx.aborted`` (a thread cannot be killed: it should return). ``"ended"``: it
        had ended already; ``"unknown"``: no such task.
        """
        if not isinstance(uuid, str) or not uuid:
            raise TaskOptionError(f"uuid must be a task id (a non-empty string), not {uuid!r}")
        if not isinstance(reason, str):
            raise TaskOptionError(f"reason must be a string, not {type(reason).__name__}")
        await self.start_async()
        return await self.storage.abort(uuid, reason)

    async def retry_async(self, uuid: str, *, once: bool = False) -> Task:
        """Send the task ``uuid`` again as a new task (same name, arguments, queue and
        priority); for a task that ended ``error`` or ``cancel``. Returns the new task.
        Raises :class:`TaskOptionError` for an unknown task or one that has not ended.

        The two are linked both ways: the new task's ``retried_from`` is ``uuid``, and
        the old one's ``retried_as`` the new task's uuid (the newest, when it is sent
        again more than once: that is allowed).

        ``once=True`` sends it again only if it never was: a task whose ``retried_as``
        is set raises :class:`~qtasks_core.errors.RetriedAlready` naming that task.
        The new task's uuid is then derived from ``uuid``, so two callers at once (two
        ``qtasks retry --failed``, the dashboard's bulk retry beside it) write it once
        between them: the other gets ``RetriedAlready``; and a caller stopped between
        the send and the link sends nothing more when run again, it links.
        """
        await self.start_async()
        # One read: the record tells a workflow or a step of one; the task is built from it.
        record = await self.storage.record(uuid)
        task = None if record is None else await self.get_async(uuid, _record=record)
        if record is None or task is None:
            raise TaskOptionError(f"no task {uuid!r} to retry (unknown, or its record expired)")
        if record.get("workflow"):
            raise TaskOptionError(
                f"task {uuid} is a workflow: start the workflow again (app.start_workflow)"
            )
        if record.get("wf"):
            raise TaskOptionError(
                f"task {uuid} is a step of workflow {record['wf']}, which does not resume "
                "when one step runs again: start the workflow again (app.start_workflow)"
            )
        if task.status not in ("error", "cancel"):
            raise TaskOptionError(
                f"task {uuid} is {task.status}: only a task that ended error or cancel is "
                "sent again (a queued or running one would run twice)"
            )
        if once and task.retried_as is not None:
            raise RetriedAlready(uuid, task.retried_as)
        options = {"queue": task.queue, "retried_from": uuid}
        call = await self.producer.call(
            task.task_name, task.args, task.kwargs, task.priority, options
        )
        fixed = str(uuidlib.uuid5(_RETRY_IDS, uuid)) if once else None
        new: Task | None = None
        try:
            new = await self._send(call, None, fixed)
            sent_as = new.uuid
        except TaskExists as exists:
            # Sent by another caller at once, or by this one before it stopped: the
            # link (the same either way) is written, the task not twice.
            sent_as = exists.uuid
        link = {"retried_as": sent_as}
        if record.get("updated_at"):
            # Kept as it is: the link is no change of the old task, which ended then.
            link["updated_at"] = record["updated_at"]
        # A record that expired meanwhile is not written again (the update says False).
        await self.storage.update(uuid=uuid, **link)
        if new is None:
            raise RetriedAlready(uuid, sent_as)
        return new

    async def ping_async(self) -> bool:
        """Whether the backend answers."""
        await self.start_async()
        await fired(self.pm.hook.qtasks_ping(qtasks=self, global_config=self.global_config))
        return await self.broker.ping()

    async def dead_letters_async(self) -> list[dict[str, str]]:
        """Every task set aside (unreadable messages, tasks that kept killing their
        workers), newest first: each a dict of ``uuid``, ``reason``, ``raw`` and ``at``.

        It reads every dead letter with its raw message, however many there are: for a
        list that may be long, read it a page at a time with :meth:`dead_letter_page_async`.
        """
        await self.start_async()
        return await self.broker.dead_letters()

    async def dead_letter_page_async(
        self, *, before: str | None = None, limit: int = 50
    ) -> DeadLetterPage:
        """A page of dead letters, newest first, and how many there are in all: one
        read of ``limit`` letters and one of the count, however many are stored.

        :param before: the ``next`` of the previous page (a page starts after its last
            letter even when that letter was requeued or deleted since).
        :param limit: letters per page, 1 to 1000.
        :raises TaskOptionError: for a limit out of range or a cursor not returned by
            this method.
        """
        await self.start_async()
        return await self.broker.dead_letter_page(before, limit)

    async def requeue_dead_async(self, uuid: str) -> RequeueResult:
        """Queue the dead letter ``uuid`` again, as a new task under the same id.

        Returns ``"requeued"``; ``"not-dead"`` when ``uuid`` is not a dead letter (a
        queued, running or finished task is never requeued: it would run twice); or
        ``"no-record"`` for a dead letter with no task record left to run.
        """
        await self.start_async()
        return await self.broker.requeue_dead(uuid)

    async def delete_dead_async(self, uuid: str) -> bool:
        """Forget the dead letter ``uuid``; ``False`` if there was none."""
        await self.start_async()
        return await self.broker.delete_dead(uuid)

    async def purge_queue_async(self, queue: str) -> int:
        """Empty ``queue``: every task queued there ends ``cancel`` with the reason
        ``purged`` (waiters wake); running and delayed tasks are left alone. Returns
        how many."""
        queue = check_queue(queue)
        await self.start_async()
        return await self.broker.purge_queue(queue)

    async def purge_async(self) -> int:
        """Delete the records of finished tasks (success, error, cancel) now, rather
        than when their TTL ends; dead letters are kept. Returns how many."""
        await self.start_async()
        return await self.storage.delete_finished_tasks()

    async def migrate_keys_async(self) -> tuple[int, list[str]]:
        """Move this app's keys from the names QTasks < 0.2 used (``qtasks:<app>:``) to
        today's (``qtasks:{<app>}:``): the app refuses to start while old ones hold
        tasks. Stop the old workers first. Returns how many keys moved, and those left
        because their new name was taken. Does not start the app."""
        await asyncio.to_thread(lambda: self.backend)  # may start the embedded server
        return await self._build()[0].migrate_keys()

    async def flush_all_async(self) -> None:
        """Delete every queued task, record and config value of this app."""
        await self.start_async()
        await fired(self.pm.hook.qtasks_flush_all(qtasks=self, broker=self.broker))
        await self.broker.flush_all()
