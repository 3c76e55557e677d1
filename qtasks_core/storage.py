"""Storage: task records and results. Fires the ``storage_*`` triggers."""

from __future__ import annotations

import logging
import re
import traceback
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import TYPE_CHECKING, Any, Final

from ._util import dumps, dumps_call, fired, lifecycle, task_from_record
from ._validate import check_priority, check_queue, page_cursor
from .errors import TaskOptionError
from .keys import DEFAULT_QUEUE
from .schemas import (
    FINAL_STATUSES,
    FinishedModel,
    StatusChange,
    Task,
    TaskPrioritySchema,
    TaskStatus,
    TaskStatusErrorSchema,
    TaskStatusNewSchema,
    TaskStatusProcessSchema,
)

if TYPE_CHECKING:
    from qtasks_hooks import PluginManager

    from .backends.base import AbortResult, Claim, StorageBackend
    from .worker import Worker

log = logging.getLogger("qtasks.storage")

KNOWN_STATUSES = frozenset(str(s) for s in TaskStatus)
#: ``list_tasks``' name for every task waiting in the backend for its due time: sent
#: with a delay (status ``new``, with an ``eta``) or waiting for a retry.
DELAYED = "delayed"


#: Records a search reads at most per page (``QueueTasks.list_tasks(search=...)``): the
#: newest of the filter, so a search answers as fast with a million records as with
#: two thousand; a narrower filter (a status, a task name) reaches further back.
SEARCH_WINDOW: Final = 2000
#: The record fields a search looks in: arguments, result, and what it raised.
SEARCHED_FIELDS: Final = ("args", "kwargs", "returning", "traceback")
#: Index entries read per round trip while searching.
_SEARCH_BATCH: Final = 500
#: What a list filtered beyond its index reads of each record in its window: the
#: filter's fields (a whole record is read only for a task that passes).
_FILTER_READ: Final = ("status", "task_name", "queue")
#: What a search reads of each record in its window: the filter's fields and the
#: searched ones (a whole record is read only for a task found: most are not, and
#: reading and decoding every field of 2,000 records was most of a search's time).
_SEARCH_READ: Final = (*_FILTER_READ, *SEARCHED_FIELDS)


@dataclass(slots=True)
class SearchPage:
    """What one page of a search found, and how far it looked."""

    tasks: list[Task] = field(default_factory=list)
    #: The cursor to go on from (``None``: nothing older is left to search).
    next: str | None = None
    #: Records read.
    searched: int = 0
    #: Whether the page stopped because it read its whole window, with records
    #: possibly left beyond it (``next`` goes on from there).
    cut: bool = False


class UniqueHeld(Exception):
    """An enqueue met a task holding its ``unique_key``: ``uuid`` is that task."""

    def __init__(self, uuid: str) -> None:
        super().__init__(uuid)
        self.uuid = uuid


class TaskExists(Exception):
    """An enqueue under a fixed uuid met a record of that uuid: nothing was written."""

    def __init__(self, uuid: str) -> None:
        super().__init__(uuid)
        self.uuid = uuid


#: The uuid of a workflow's step: ``<workflow id>:<path in its tree>`` (see workflows.py).
_WORKFLOW_STEP: Final = re.compile(r"[0-9a-f-]{36}:(?:r(?:\.\d+)*|e)")


def error_line(trace: str) -> str:
    """The exception's ``Type: message`` line of a traceback: its last unindented
    line (the exception that ended the chain), at most 1,000 characters."""
    for line in reversed(trace.splitlines()):
        if line and not line[0].isspace():
            return line[:1000]
    return ""


def _printable(text: str) -> str:
    """Free text (a traceback) that JSON can carry: a lone surrogate (a file name read
    with ``os.listdir``) is written as its escape instead of failing the write."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _indexes_of(
    status: str | None, task_name: str | None, queue: str | None
) -> tuple[list[str], bool]:
    """The indexes that list a filter's tasks, and whether they run newest first."""
    if status is not None and status not in KNOWN_STATUSES and status != DELAYED:
        raise TaskOptionError(
            f"status must be one of {', '.join(sorted(KNOWN_STATUSES | {DELAYED}))} "
            f"or None (every finished task), not {status!r}"
        )
    if status is None or status in FINAL_STATUSES:
        if task_name is not None:
            return [f"name:{task_name}"], True
        if status is not None:
            return [f"final:{status}"], True
        return [f"final:{s}" for s in sorted(FINAL_STATUSES)], True
    live = {"new": f"queue:{queue or DEFAULT_QUEUE}", "process": "running"}
    return [live.get(status, "scheduled")], False


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise TaskOptionError(f"limit must be a whole number from 1 to 1000, not {limit!r}")


def _filter(
    status: str | None, task_name: str | None, queue: str | None
) -> Callable[[dict[str, str]], bool]:
    """Whether a record read from a filter's indexes is one of the filter's: an index
    holds one part of a filter, the record says the rest."""

    def wanted(record: dict[str, str]) -> bool:
        if status is None:
            if record.get("status") not in FINAL_STATUSES:
                return False
        elif status == DELAYED:
            if record.get("status") not in ("new", "retry"):
                return False
        elif record.get("status") != status:
            return False
        if task_name is not None and record.get("task_name") != task_name:
            return False
        return queue is None or record.get("queue", DEFAULT_QUEUE) == queue

    return wanted


def _holds(record: dict[str, str], needle: str) -> bool:
    """Whether a searched field of ``record`` holds ``needle`` (casefolded), as stored:
    JSON text for the arguments and the result."""
    return any(needle in record.get(name, "").casefold() for name in SEARCHED_FIELDS)


async def _merged(
    backend: StorageBackend,
    indexes: list[str],
    after: tuple[float, str] | None,
    newest_first: bool,
    window: int,
    fields: Sequence[str] | None = None,
) -> AsyncIterator[tuple[str, float, dict[str, str] | None]]:
    """The entries of ``indexes`` after ``after``, merged in list order, read a batch
    per index at a time (each index keeps its own place: no entry is read twice), with
    the ``fields`` of their records (all of them: ``None``)."""
    batch = min(_SEARCH_BATCH, window)
    cursors: list[tuple[float, str] | None] = [after] * len(indexes)
    buffers: list[deque[tuple[str, float, dict[str, str] | None]]] = [deque() for _ in indexes]
    done = [False] * len(indexes)
    while True:
        for i, index in enumerate(indexes):
            if not buffers[i] and not done[i]:
                rows = await backend.index_page(index, cursors[i], batch, fields)
                done[i] = len(rows) < batch
                if rows:
                    cursors[i] = (rows[-1][1], rows[-1][0])
                buffers[i].extend(rows)
        heads = [i for i, rows in enumerate(buffers) if rows]
        if not heads:
            return
        pick = (max if newest_first else min)(
            heads, key=lambda i: (buffers[i][0][1], buffers[i][0][0])
        )
        yield buffers[pick].popleft()


class Storage:
    """Task records in the backend: written on enqueue, read by ``get``, finished by
    workers, expired after ``result_ttl`` seconds (``None`` keeps them)."""

    def __init__(
        self,
        backend: StorageBackend,
        pm: PluginManager,
        *,
        result_ttl: float | None,
        max_payload: int = 1_048_576,
        events_max: int = 0,
        step_written: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """:param events_max: entries kept on the app's event stream (about; 0: no
            stream).
        :param step_written: called with the uuid of each workflow step the backend
            wrote in a call of this process (a workflow's first steps, the step after
            one that ended), to fire the after-enqueue triggers for it."""
        self.backend = backend
        self.pm = pm
        self.result_ttl = result_ttl
        self.max_payload = max_payload
        self.events_max = events_max
        self.step_written = step_written
        self.refresh_feed()
        pm.watch_registrations(self.refresh_feed)

    def refresh_feed(self) -> None:
        """Tell the backend what to do with status changes (after a plugin came or
        went, or the event stream's setting changed)."""
        # The changes come back from the backend only while a plugin listens: a
        # trigger nobody implements costs nothing per task. In pluggy's call order.
        hook = self.pm.hook
        impls = hook.storage_status_changed.get_hookimpls()
        self._listeners = [(i.function, tuple(i.argnames), i.plugin_name) for i in reversed(impls)]
        # The steps a workflow writes in Redis are told by their changes too.
        self._steps = self.step_written is not None and bool(
            hook.broker_add_after.get_hookimpls()
            or hook.qtasks_add_task_after_broker.get_hookimpls()
        )
        wanted = bool(impls) or self._steps
        self.backend.set_feed(self._status_changed if wanted else None, self.events_max)

    async def _status_changed(self, changes: list[StatusChange]) -> None:
        """Fire ``storage_status_changed`` for each change of one backend call.

        Each impl is called on its own, as pluggy would call it: the change is made,
        so an impl that fails is logged and the impls after it still hear of it (one
        broken audit plugin must not blind a metrics plugin)."""
        for change in changes:
            given = {"storage": self, "change": change}
            for function, names, plugin in self._listeners:
                try:
                    result = function(*[given[name] for name in names])
                    if isawaitable(result):
                        await result
                except Exception:
                    log.exception(
                        "plugin %s failed in storage_status_changed for task %s (%s -> %s); "
                        "going on",
                        plugin,
                        change.uuid,
                        change.previous,
                        change.status,
                    )
            if (
                self._steps
                and change.previous is None
                and change.status in ("new", "delayed")
                and _WORKFLOW_STEP.fullmatch(change.uuid)
            ):
                assert self.step_written is not None
                await self.step_written(change.uuid)

    async def audit_add(self, entry: str, keep: int) -> None:
        """Put ``entry`` (JSON text) first on the app's audit log, keeping the newest
        ``keep`` (see :meth:`StorageBackend.audit_add`)."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise TaskOptionError(f"keep must be a whole number of 1 or more, not {keep!r}")
        await self.backend.audit_add(entry, keep)

    async def audit_read(self, count: int) -> list[str]:
        """The newest ``count`` entries of the app's audit log, newest first."""
        if count < 1:
            return []
        return await self.backend.audit_read(count)

    async def events(self, after: str, timeout: float, count: int = 100) -> list[StatusChange]:
        """Status changes on the app's event stream after the id ``after`` (see
        :meth:`StorageBackend.status_events`)."""
        return await self.backend.status_events(after, timeout, count)

    async def events_last(self) -> str:
        """The id of the newest entry on the app's event stream (``"0-0"``: none)."""
        return await self.backend.status_events_last()

    async def history_add(self, buckets: dict[int, dict[str, int]]) -> float:
        """Add a worker's figures of finished tasks to the app's history (see
        :mod:`qtasks_core.history`); the backend's clock now, in seconds."""
        return await self.backend.history_add(buckets)

    async def history_read(self, since: float, step: int = 10) -> dict[int, dict[str, int]]:
        """The history's buckets of ``step`` seconds (10 or 60) from ``since`` on:
        bucket -> figure -> count."""
        return await self.backend.history_read(since, step)

    async def start(self) -> None:
        await lifecycle(lambda: self.pm.hook.storage_start(storage=self), "storage_start")

    async def stop(self) -> None:
        await lifecycle(lambda: self.pm.hook.storage_stop(storage=self), "storage_stop")

    async def write(
        self, uuid: str, task_status: TaskStatusNewSchema, record: dict[str, str]
    ) -> bool:
        """Write a prepared task's record and queue it, atomically (see
        :meth:`prepare_add`). With a ``unique_key`` that another task holds, nothing is
        written: :class:`UniqueHeld` names it. The model takes the ``created_at`` the
        backend wrote, on its clock. ``False``: ``uuid`` had a record already, and
        nothing was written."""
        written = await self.backend.enqueue(uuid, record, task_status.priority)
        if isinstance(written, str):
            raise UniqueHeld(written)
        if written:
            # A float the backend made: set as is, without pydantic's assignment path
            # (two attribute hooks per enqueue).
            task_status.__dict__.update(created_at=written, updated_at=written)
            return True
        return False

    async def write_many(
        self, items: list[tuple[str, TaskStatusNewSchema, dict[str, str]]]
    ) -> None:
        """:meth:`write` for a batch: one atomic write for all."""
        await self.backend.enqueue_many([(u, r, s.priority) for u, s, r in items])

    async def prepare_add(
        self, uuid: str, task_status: TaskStatusNewSchema
    ) -> tuple[str, TaskStatusNewSchema, dict[str, str]]:
        """Fire ``storage_add`` and build the record; nothing is written yet."""
        new = await fired(
            self.pm.hook.storage_add(storage=self, uuid=uuid, task_status=task_status)
        )
        if new:
            uuid = new.get("uuid", uuid)
            task_status = new.get("task_status", task_status)
        # Plugins may have replaced it since the caller's value was checked: a bad one
        # must fail this task's enqueue here, not the script shared with other callers.
        check_priority(task_status.priority)
        args, kwargs = dumps_call(task_status.args, task_status.kwargs, task_status.task_name)
        size = len(args) + len(kwargs)
        if size > self.max_payload:
            raise TaskOptionError(
                f"the arguments of task {task_status.task_name!r} take {size} bytes as JSON, "
                f"over max_payload={self.max_payload}; store large data elsewhere and pass a key"
            )
        record = {
            "status": "new",
            "task_name": task_status.task_name,
            "priority": str(task_status.priority),
            "args": args,
            "kwargs": kwargs,
            "created_at": f"{task_status.created_at:.6f}",
            "updated_at": f"{task_status.updated_at:.6f}",
            "attempts": "0",
        }
        if task_status.extra:
            record["extra"] = dumps(task_status.extra, what="task extra")
        if task_status.unique_key is not None:
            record["unique_key"] = task_status.unique_key
            if task_status.unique_for:
                record["unique_for"] = str(max(1, round(task_status.unique_for * 1000)))
        if task_status.queue != DEFAULT_QUEUE:
            record["queue"] = check_queue(task_status.queue)
        if task_status.retried_from is not None:
            record["retried_from"] = task_status.retried_from
        if task_status.waited:
            record["waited"] = "1"
        # Relative times: the backend turns them into times of its own clock, one clock
        # for every producer and worker.
        if task_status.delay is not None and task_status.delay > 0:
            record["due_in"] = str(max(1, round(task_status.delay * 1000)))
        if task_status.expires is not None:
            record["expires_in"] = str(max(0, round(task_status.expires * 1000)))
            if self.result_ttl is not None:
                record["ttl"] = str(max(1, int(self.result_ttl)))
        return uuid, task_status, record

    async def record(self, uuid: str) -> dict[str, str] | None:
        """The task's record as stored (no trigger): what the task was sent as, for an
        operation that decides by its fields (``app.retry``)."""
        return await self.backend.get(uuid)

    async def records(self, uuids: list[str]) -> list[dict[str, str] | None]:
        """Many records as stored, in one round trip (``None`` for a missing one)."""
        return await self.backend.get_many(uuids)

    async def workflow_nodes(self, workflow_id: str) -> dict[str, str]:
        """A workflow's stored tree: path -> node JSON (and its group counters)."""
        return await self.backend.workflow_nodes(workflow_id)

    async def watch_start(self, uuid: str) -> str:
        """Mark ``uuid`` watched (its end is streamed to its watchers too); returns its
        status, ``""`` for no such task."""
        return await self.backend.watch_start(uuid)

    async def watch_events(
        self, uuid: str, after: str, timeout: float
    ) -> list[tuple[str, str, str]]:
        """A watched task's progress and end after the id ``after``: ``(id, kind,
        data)``; blocks up to ``timeout`` seconds while there are none."""
        return await self.backend.events(uuid, after, timeout)

    async def get(self, uuid: str, record: dict[str, str] | None = None) -> Task | None:
        """The task ``uuid``, read from the backend unless ``record`` is given (a
        waiter woken with the final record); ``storage_get`` fires either way."""
        if record is None:
            record = await self.backend.get(uuid)
        else:
            record = {**record, "uuid": uuid}
        result = task_from_record(record) if record else None
        new = await fired(self.pm.hook.storage_get(storage=self, result=result))
        return result if new is None else new

    async def get_all(self, limit: int = 1000) -> list[Task]:
        results = [task_from_record(r) for r in await self.backend.get_all(limit)]
        new = await fired(self.pm.hook.storage_get_all(storage=self, results=results))
        return results if new is None else list(new)

    async def list_tasks(
        self,
        *,
        status: str | None,
        task_name: str | None,
        queue: str | None,
        before: str | None,
        limit: int,
    ) -> tuple[list[Task], str | None]:
        """A page of tasks read from the backend's indexes (see ``QueueTasks.list_tasks``);
        ``storage_get`` fires for each."""
        indexes, newest_first = _indexes_of(status, task_name, queue)
        _check_limit(limit)
        after = page_cursor(before, "list_tasks")
        wanted = _filter(status, task_name, queue)
        found: list[Task] = []
        # A filter the index does not hold (a name within a status, a queue) is checked
        # on the records of a bounded window: a page may come back short, with a cursor.
        # Then the window's records are read for the filter's fields only, and whole
        # for the tasks that pass (most of them may not).
        narrowed = (task_name is not None and status is not None) or (
            queue is not None and status != "new"
        )
        fields = _FILTER_READ if narrowed else None
        for _ in range(20):
            rows: list[tuple[str, float, dict[str, str] | None]] = []
            for index in indexes:
                rows += await self.backend.index_page(index, after, limit, fields)
            rows.sort(key=lambda row: (row[1], row[0]), reverse=newest_first)
            if not rows:
                return found, None
            rows = rows[:limit]
            whole: dict[str, dict[str, str] | None] = {}
            if narrowed:
                hits = [u for u, _, r in rows if r is not None and wanted(r)]
                whole = dict(zip(hits, await self.backend.get_many(hits), strict=True))
            for uuid, score, record in rows:
                after = (score, uuid)
                if narrowed:
                    record = whole.get(uuid)
                if record is not None and wanted(record):
                    task = await self.get(uuid, record)
                    if task is not None:
                        found.append(task)
                if len(found) >= limit:
                    return found, f"{score!r}:{uuid}"
            if len(rows) < limit:
                return found, None
        assert after is not None
        return found, f"{after[0]!r}:{after[1]}"

    async def search_tasks(
        self,
        text: str,
        *,
        status: str | None,
        task_name: str | None,
        queue: str | None,
        before: str | None,
        limit: int,
        window: int | None = None,
    ) -> SearchPage:
        """The tasks of a filter (as :meth:`list_tasks`) whose arguments, keyword
        arguments, result or traceback hold ``text`` (case-insensitive), looked for in
        the next ``window`` (default :data:`SEARCH_WINDOW`) records of the filter's
        indexes after ``before``, read a page at a time (never a scan of the keyspace);
        ``storage_get`` fires for each task found."""
        window = SEARCH_WINDOW if window is None else window
        indexes, newest_first = _indexes_of(status, task_name, queue)
        _check_limit(limit)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise TaskOptionError(f"window must be a whole number of 1 or more, not {window!r}")
        needle = text.casefold()
        if not needle.strip():
            raise TaskOptionError("search needs some text to look for, not only spaces")
        wanted = _filter(status, task_name, queue)
        page = SearchPage()
        rows = _merged(
            self.backend,
            indexes,
            page_cursor(before, "list_tasks"),
            newest_first,
            window,
            _SEARCH_READ,
        )
        async for uuid, score, fields in rows:
            page.searched += 1
            if fields is not None and wanted(fields) and _holds(fields, needle):
                # Read whole now; gone meanwhile (expired), it is not found.
                record = (await self.backend.get_many([uuid]))[0]
                task = None if record is None else await self.get(uuid, record)
                if task is not None:
                    page.tasks.append(task)
                    if len(page.tasks) >= limit:
                        page.next = f"{score!r}:{uuid}"
                        return page
            if page.searched >= window:
                # The window is read; whether anything older is left, the next page says.
                page.cut = True
                page.next = f"{score!r}:{uuid}"
                return page
        return page

    async def list_workflows(self, before: str | None, limit: int) -> tuple[list[Task], str | None]:
        """A page of workflows' own tasks, newest first (see ``QueueTasks.list_workflows``)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise TaskOptionError(f"limit must be a whole number from 1 to 1000, not {limit!r}")
        rows = await self.backend.index_page(
            "workflows", page_cursor(before, "list_workflows"), limit
        )
        found = []
        for uuid, _score, record in rows:
            if record is not None and (task := await self.get(uuid, record)) is not None:
                found.append(task)
        if len(rows) < limit:
            return found, None
        return found, f"{rows[-1][1]!r}:{rows[-1][0]}"

    async def abort(self, uuid: str, reason: str) -> AbortResult:
        """Stop ``uuid`` (see ``QueueTasks.abort``); a cancelled record keeps
        ``result_ttl``."""
        return await self.backend.abort(uuid, reason, self.result_ttl)

    async def progress(self, uuid: str, data: str, token: str = "") -> bool:
        """Store a running task's progress (JSON text; see ``TaskContext.set_progress``),
        if ``token`` (when given) is still its claim."""
        return await self.backend.progress(uuid, data, token)

    async def update(self, **kw: Any) -> bool:
        """Set fields of the record ``kw['uuid']``; ``status='cancel'`` also unqueues it."""
        new = await fired(self.pm.hook.storage_update(storage=self, kw=kw))
        kw = kw if new is None else dict(new)
        uuid = kw.pop("uuid")
        fields = {k: v if isinstance(v, str) else dumps(v, what=k) for k, v in kw.items()}
        return await self.backend.update(uuid, fields, self.result_ttl)

    async def wait_done(
        self, uuid: str, timeout: float, marked: bool = False
    ) -> dict[str, str] | bool:
        """Block (no polling) until the task is final or ``timeout`` passes (``False``);
        gives the final record when the backend has it at hand, else ``True``.
        ``marked``: the task was sent as waited for, or an earlier call marked it."""
        return await self.backend.wait_done(uuid, timeout, marked)

    async def add_process(
        self, task_data: TaskStatusProcessSchema, priority: int, claim: Claim
    ) -> tuple[TaskStatusProcessSchema, int]:
        new = await fired(
            self.pm.hook.storage_add_process(storage=self, task_data=task_data, priority=priority)
        )
        if not new:
            return task_data, priority
        replaced = new.get("task_data", task_data)
        priority = new.get("priority", priority)
        await self.write_process_state(replaced.model_copy(update={"priority": priority}), claim)
        return replaced, priority

    async def write_process_state(self, model: TaskStatusProcessSchema, claim: Claim) -> None:
        """Store what a plugin changed in a running task's state, while ``claim`` holds.
        Ownership fields (``uuid``, ``worker``, ``status``) are the claim's and are never
        overwritten: leases depend on them."""
        await self.backend.update(
            claim.uuid,
            {
                "task_name": model.task_name,
                "priority": str(model.priority),
                "updated_at": f"{model.updated_at:.6f}",
            },
            token=claim.token,
        )

    async def running_older_tasks(self, worker: Worker, uuids: list[str]) -> list[str]:
        new = await fired(
            self.pm.hook.storage_running_older_tasks(storage=self, worker=worker, task_data=uuids)
        )
        return list(new["task_data"]) if new else uuids

    async def finish_triggers(
        self, task_broker: TaskPrioritySchema, model: FinishedModel
    ) -> FinishedModel:
        """Fire ``storage_remove_finished_task`` for a task's final state; returns the
        state to write (the trigger returns nothing: the model as given)."""
        await fired(
            self.pm.hook.storage_remove_finished_task(
                storage=self, task_broker=task_broker, model=model
            )
        )
        return model

    async def write_final(self, model: FinishedModel, claim: Claim) -> bool:
        """Write the task's final state (or its retry), end its lease, wake waiters.

        ``False``: the claim was lost (the lease ran out and the task was claimed again
        elsewhere); nothing was written, the current holder's record stands.
        """
        fields: dict[str, str] = {"status": model.status}
        delay = None
        if model.status == "success":
            fields["returning"] = dumps(getattr(model, "returning", None), what="task result")
        elif model.status in ("error", "retry"):
            fields["traceback"] = _printable(getattr(model, "traceback", ""))
            fields["error"] = error_line(fields["traceback"])
            if model.status == "retry":
                fields["retry"] = str(getattr(model, "retry", 0) or 0)
                delay = float(getattr(model, "retry_delay", 0.0))
        elif model.status == "cancel":
            fields["cancel_reason"] = _printable(getattr(model, "cancel_reason", ""))
        return await self.backend.finish(claim.uuid, claim.token, fields, self.result_ttl, delay)

    async def fail(
        self, claim: Claim, task_broker: TaskPrioritySchema, error: BaseException | str
    ) -> bool:
        """End a claimed task ``error`` (a plugin or the task failed it), through
        ``storage_remove_finished_task`` like any final state. If a plugin raises there
        too, its error is added to the traceback and the state is written regardless:
        a failing plugin can fail a task, never leave it running."""
        trace = error if isinstance(error, str) else "".join(traceback.format_exception(error))
        model = TaskStatusErrorSchema(uuid=task_broker.uuid, traceback=trace)
        try:
            await self.finish_triggers(task_broker, model)
        except Exception as exc:
            log.error("a plugin failed while storing the error of task %s: %s", claim.uuid, exc)
            model.traceback += "\nwhile storing this error:\n" + "".join(
                traceback.format_exception(exc)
            )
        return await self.write_final(model, claim)

    async def dead_letter(self, claim: Claim, reason: str, raw: str) -> bool:
        """Set a claimed task that cannot be read aside as a dead letter (status
        ``error`` with the reason); ``qtasks dead`` lists it."""
        return await self.backend.dead_letter(claim.uuid, claim.token, reason, raw)

    async def delete_finished_tasks(self) -> int:
        await fired(self.pm.hook.storage_delete_finished_tasks(storage=self))
        return await self.backend.delete_finished()

    async def flush_all(self) -> None:
        await fired(self.pm.hook.storage_flush_all(storage=self))
        await self.backend.flush_all()
