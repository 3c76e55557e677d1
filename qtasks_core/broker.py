"""Broker: the queue side of the flow. Fires the ``broker_*`` triggers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ._util import fired, lifecycle, loads
from ._validate import page_cursor
from .backends.base import Claim
from .errors import BackendError, TaskOptionError
from .keys import DEFAULT_QUEUE
from .schemas import (
    DeadLetterPage,
    FinishedModel,
    Task,
    TaskPrioritySchema,
    TaskStatusNewSchema,
)
from .storage import UniqueHeld

if TYPE_CHECKING:
    from qtasks_hooks import PluginManager

    from .backends.base import BackendStats, BrokerBackend, Claimed, Renewed, RequeueResult
    from .storage import Storage
    from .worker import Worker

log = logging.getLogger("qtasks.broker")
#: The task log (see :mod:`qtasks_core.plugins.tasklog`), where a dead letter set aside
#: here gets its line whether or not that plugin runs.
task_log = logging.getLogger("qtasks.tasks")


@dataclass(slots=True)
class Message:
    """A claimed task on its way to the worker: its claim, the values of
    ``broker_add_worker`` / ``worker_add`` (task_name, uuid, priority, args, kw,
    created_at) and what the worker needs besides."""

    claim: Claim
    values: dict[str, Any]
    attempts: int
    retry: int | None
    extra: dict[str, Any]
    queue: str = DEFAULT_QUEUE

    def schema(self) -> TaskPrioritySchema:
        """The task as the worker's triggers see it (``task_broker``)."""
        return task_schema(self.values, self.attempts, self.retry, self.extra, self.queue)


def _why_not_added(exc: BaseException) -> str:
    """``broker_add_failed``'s reason for ``exc``."""
    if isinstance(exc, UniqueHeld):
        return "unique_key held"
    if isinstance(exc, BackendError):
        return "backend error"
    if any(note.startswith("raised by plugin ") for note in getattr(exc, "__notes__", ())):
        return "plugin"
    if isinstance(exc, TaskOptionError) and "max_payload" in str(exc):
        return "payload too large"
    return "refused"


def _usable(message: Message) -> None:
    """Check that ``broker_add_worker``'s replacements make a task the worker can run."""
    try:
        message.schema()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise TaskOptionError(
            f"a broker_add_worker plugin replaced the task's values with ones it cannot "
            f"run ({problems})"
        ) from None


def task_schema(
    values: dict[str, Any],
    attempts: int,
    retry: int | None,
    extra: dict[str, Any],
    queue: str = DEFAULT_QUEUE,
) -> TaskPrioritySchema:
    """A ``task_broker`` from the values of ``broker_add_worker`` / ``worker_add``."""
    return TaskPrioritySchema(
        uuid=values["uuid"],
        task_name=values["task_name"],
        priority=values["priority"],
        args=tuple(values["args"]),
        kwargs=values["kw"],
        created_at=values["created_at"],
        attempts=attempts,
        retry=retry,
        extra=extra,
        queue=queue,
    )


class Broker:
    """Queues tasks (priority first, FIFO within one) and hands them to workers."""

    def __init__(self, backend: BrokerBackend, storage: Storage, pm: PluginManager) -> None:
        self.backend = backend
        self.storage = storage
        self.pm = pm

    async def start(self, worker: Worker | None = None) -> None:
        await lifecycle(
            lambda: self.pm.hook.broker_start(broker=self, worker=worker), "broker_start"
        )

    async def stop(self) -> None:
        await lifecycle(lambda: self.pm.hook.broker_stop(broker=self), "broker_stop")

    async def failed(self, models: list[TaskStatusNewSchema], exc: Exception) -> None:
        """Fire ``broker_add_failed`` for each task an enqueue did not add; a plugin
        failing there is logged, and the caller gets the enqueue's own outcome."""
        holder = exc.uuid if isinstance(exc, UniqueHeld) else None
        reason = _why_not_added(exc)
        for model in models:
            try:
                await fired(
                    self.pm.hook.broker_add_failed(
                        broker=self,
                        storage=self.storage,
                        model=model,
                        reason=reason,
                        error=exc,
                        holder=holder,
                    )
                )
            except Exception:
                log.exception("a plugin failed in trigger broker_add_failed; going on")

    async def before(
        self,
        task_name: str,
        priority: int,
        args: tuple[Any, ...],
        kw: dict[str, Any],
        extra: dict[str, Any] | None,
        options: dict[str, Any] | None = None,
    ) -> TaskStatusNewSchema:
        """The model of a new task, through ``broker_add_before`` (a plugin raising
        there is told to ``broker_add_failed``). ``options``: the model's ``queue``,
        ``delay``, ``expires``, ``unique_key`` and ``unique_for``."""
        model = TaskStatusNewSchema(
            task_name=task_name,
            priority=priority,
            args=args,
            kwargs=kw,
            extra=extra or {},
            **(options or {}),
        )
        try:
            new = await fired(
                self.pm.hook.broker_add_before(broker=self, storage=self.storage, model=model)
            )
        except Exception as exc:
            await self.failed([model], exc)
            raise
        return model if new is None else new

    async def start_workflow(
        self, workflow_id: str, record: dict[str, str], nodes: dict[str, str]
    ) -> bool:
        """Write a workflow's record and tree and queue its first steps, atomically;
        ``False`` if it had started already (a start retried after a lost reply)."""
        return await self.backend.start_workflow(workflow_id, record, nodes)

    async def get(self, uuid: str, record: dict[str, str] | None = None) -> Task | None:
        """The task ``uuid`` (from ``record`` when the caller already holds it)."""
        task = await self.storage.get(uuid, record)
        new = await fired(self.pm.hook.broker_get(broker=self, task=task))
        return task if new is None else new

    async def update(self, **kw: Any) -> bool:
        """Update fields of the task ``kw['uuid']`` (e.g. ``status='cancel'``)."""
        new = await fired(self.pm.hook.broker_update(broker=self, kw=kw))
        return await self.storage.update(**(kw if new is None else new))

    async def listen_start(self, worker: Worker) -> None:
        await lifecycle(
            lambda: self.pm.hook.broker_listen_start(broker=self, worker=worker),
            "broker_listen_start",
        )

    async def claim(
        self, worker: Worker, n: int, *, only: str | None = None, alone: bool = False
    ) -> tuple[list[Message], Claimed]:
        """Claim up to ``n`` tasks for ``worker`` (each with a lease) and read them
        (``only``: just that queued task, for eager mode; ``alone``: the worker runs
        nothing now, so it may be given a suspect to run alone, see
        :meth:`BrokerBackend.claim <qtasks_core.backends.BrokerBackend.claim>`).

        A message that cannot be read is set aside as a dead letter; one that a plugin
        fails on in ``broker_add_worker`` ends ``error`` naming the plugin. Either way
        only that task is affected.
        """
        worker.turn += 1
        claimed = await self.backend.claim(
            n,
            worker.id,
            worker.lease,
            worker.max_attempts,
            only=only,
            queues=worker.queues,
            turn=worker.turn,
            limits=worker.limits,
            alone=alone,
        )
        if claimed.recovered:
            try:
                await self.running_older_tasks(worker, claimed.recovered)
            except Exception:
                log.exception(
                    "a plugin failed while %d task(s) were recovered; going on",
                    len(claimed.recovered),
                )
        messages = []
        for raw in claimed.tasks:
            try:
                message = await self._hand_over(worker, raw)
            except BackendError as exc:
                # This one task's lease runs out and it is claimed again; the others of
                # the batch go on to the worker.
                log.warning("could not hand over task %s (%s); it will run again", raw["uuid"], exc)
                continue
            if message is not None:
                messages.append(message)
        return messages, claimed

    async def _hand_over(self, worker: Worker, raw: dict[str, str]) -> Message | None:
        message = await self._read(raw)
        if message is None:
            return None
        try:
            new = await fired(
                self.pm.hook.broker_add_worker(broker=self, worker=worker, **message.values)
            )
        except Exception as exc:
            await self.storage.fail(message.claim, message.schema(), exc)
            return None
        if new:
            # The task as it was read is what a failure records (built only when a
            # plugin changed it: a model per task is a cost on every claim).
            read = message.schema()
            message.values.update(new)
            try:
                _usable(message)
            except Exception as exc:
                await self.storage.fail(message.claim, read, exc)
                return None
        return message

    async def _read(self, raw: dict[str, str]) -> Message | None:
        claim = Claim(raw["uuid"], raw["token"])
        try:
            args = loads(raw["args"], [])
            kw = loads(raw["kwargs"], {})
            extra = loads(raw["extra"], {})
            if not isinstance(args, list):
                raise ValueError("args must be a JSON array")
            if not isinstance(kw, dict) or not isinstance(extra, dict):
                raise ValueError("kwargs and extra must be JSON objects")
            priority, created_at = int(raw["priority"]), float(raw["created_at"])
            attempts = int(raw["attempts"] or 1)
            retry = int(raw["retry"]) if raw["retry"] else None
        except (ValueError, TypeError, RecursionError) as exc:
            # A malformed message is set aside with its reason; it never reaches a task.
            reason = f"malformed message: {type(exc).__name__}: {exc}"
            task_log.error(
                "task %s[%s] set aside as a dead letter: %s",
                raw.get("task_name") or "?",
                claim.uuid,
                reason,
                extra={
                    "task_name": raw.get("task_name") or None,
                    "uuid": claim.uuid,
                    "status": "dead",
                    "reason": "malformed",
                    "error": reason,
                },
            )
            await self.storage.dead_letter(claim, reason, repr(raw)[:2000])
            return None
        values: dict[str, Any] = {
            "task_name": raw["task_name"],
            "uuid": claim.uuid,
            "priority": priority,
            "args": tuple(args),
            "kw": kw,
            "created_at": created_at,
        }
        return Message(claim, values, attempts, retry, extra, raw.get("queue") or DEFAULT_QUEUE)

    async def extend(self, claims: dict[str, str], lease: float) -> Renewed:
        """Renew the leases of a worker's running tasks ``{uuid: token}``; returns the
        uuids whose claim was lost (claimed again elsewhere after the lease expired)
        and the tasks asked to abort."""
        return await self.backend.extend(claims, lease)

    async def release(self, claims: dict[str, str]) -> list[str]:
        """Hand claimed tasks back to the queue unrun (a worker stopping)."""
        return await self.backend.release(claims)

    async def wait_for_work(self, timeout: float, worker: Worker) -> None:
        """Block, without polling, until a task may be claimable or ``timeout`` passes."""
        await self.backend.wait_for_work(timeout, worker.id, worker.queues)

    async def wake(self, worker: Worker) -> None:
        """End :meth:`wait_for_work` of a worker that is stopping."""
        await self.backend.wake(worker.id)

    async def migrate_keys(self) -> tuple[int, list[str]]:
        """Move the app's keys from an older QTasks version's names (see ``keys.py``)."""
        return await self.backend.migrate_keys()

    async def ping(self) -> bool:
        """Whether the backend answers."""
        return await self.backend.ping()

    async def stats(self) -> BackendStats:
        """Queue lengths per priority, running and delayed tasks, counts, workers."""
        return await self.backend.stats()

    async def purge_queue(self, queue: str) -> int:
        """Empty ``queue``: its queued tasks end ``cancel`` (reason ``purged``)."""
        return await self.backend.purge_queue(queue, ttl=self.storage.result_ttl)

    async def dead_letters(self) -> list[dict[str, str]]:
        """Every task set aside (unreadable, or killing their workers), newest first:
        uuid, reason, raw, at."""
        return await self.backend.dead_letters()

    async def dead_letter_page(self, before: str | None, limit: int) -> DeadLetterPage:
        """A page of dead letters, newest first, and how many there are in all (see
        ``QueueTasks.dead_letter_page``)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise TaskOptionError(f"limit must be a whole number from 1 to 1000, not {limit!r}")
        after = page_cursor(before, "dead_letter_page")
        # One more than asked: a next page is offered only when it holds a letter.
        letters = await self.backend.dead_letters(after, limit + 1)
        total = await self.backend.dead_count()
        more, letters = len(letters) > limit, letters[:limit]
        cursor = f"{letters[-1]['at']}:{letters[-1]['uuid']}" if more else None
        return DeadLetterPage(letters=letters, total=total, next=cursor)

    async def requeue_dead(self, uuid: str) -> RequeueResult:
        """Queue a dead letter again (only a dead letter: never a queued, running or
        finished task, which would then run twice)."""
        return await self.backend.requeue_dead(uuid)

    async def delete_dead(self, uuid: str) -> bool:
        """Forget a dead letter."""
        return await self.backend.delete_dead(uuid)

    async def running_older_tasks(self, worker: Worker, uuids: list[str]) -> None:
        """Tasks of dead workers went back to the queue: tell plugins and the log."""
        await fired(
            self.pm.hook.broker_running_older_tasks(broker=self, worker=worker, uuids=uuids)
        )
        uuids = await self.storage.running_older_tasks(worker, uuids)
        log.warning(
            "recovered %d task(s) whose worker stopped renewing its lease: %s",
            len(uuids),
            ", ".join(uuids[:10]),
        )

    async def finish_triggers(
        self, task_broker: TaskPrioritySchema, model: FinishedModel
    ) -> FinishedModel:
        """Fire ``broker_remove_finished_task`` then ``storage_remove_finished_task`` for
        a task's final state (or its retry); returns the state to write. Fired once per
        finish: a write retried through an outage does not fire them again."""
        new = await fired(
            self.pm.hook.broker_remove_finished_task(broker=self, storage=self.storage, model=model)
        )
        return await self.storage.finish_triggers(task_broker, model if new is None else new)

    async def flush_all(self) -> None:
        await fired(self.pm.hook.broker_flush_all(broker=self))
        await self.storage.flush_all()
