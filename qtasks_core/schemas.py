"""The data that flows through QTasks: pydantic models, JSON on the wire.

``Task`` is what callers read. The ``TaskStatus*Schema`` models are the states a
task's record goes through, handed to plugins on the way; ``TaskPrioritySchema`` is
a claimed task as a worker runs it; ``TaskExecSchema`` is a registered task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Generic, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

from . import _current


class TaskStatus(StrEnum):
    """The statuses a task goes through; ``retry`` waits for its next attempt."""

    NEW = "new"
    PROCESS = "process"
    SUCCESS = "success"
    ERROR = "error"
    CANCEL = "cancel"
    RETRY = "retry"


#: The statuses a :class:`StatusChange` names beyond :class:`TaskStatus`: a task that
#: waits for its due time (sent with a delay, or over a rate limit), one parked over a
#: concurrency limit, a dead letter, and a dead letter deleted.
CHANGE_STATUSES = frozenset({*TaskStatus, "delayed", "parked", "dead", "deleted"})


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One transition of a task, as ``storage_status_changed`` and ``app.events()``
    hand it over: told once, after the change is durable, by the process whose call
    made it. Read the whole task with ``storage.get(change.uuid)``.

    A dataclass, not a pydantic model: one is built for every transition of every
    task, on the hot path.
    """

    uuid: str
    task_name: str
    #: The queue it was sent to (``"default"``).
    queue: str
    #: The status before: ``None`` for a task just written.
    previous: str | None
    #: A :class:`TaskStatus` value, or ``"delayed"``, ``"parked"``, ``"dead"`` (set
    #: aside as a dead letter; its record reads ``error``) or ``"deleted"`` (a dead
    #: letter deleted).
    status: str
    #: Why, in a word, where the status alone does not say: ``"expired"``,
    #: ``"aborted"``, ``"cancelled"``, ``"purged"``, ``"lease_expired"``,
    #: ``"released"``, ``"requeued"``, ``"poison"``, ``"malformed"``,
    #: ``"rate_limit"``, ``"concurrency_limit"``, ``"workflow_failed"``, the exception
    #: type of an error or a retry; else ``None``.
    reason: str | None
    #: When, in seconds since the epoch, on the Redis server's clock.
    at: float
    #: The attempt it is at (0 before its first run).
    attempt: int
    #: The worker that ran it last, if any.
    worker: str | None
    #: Its id on the app's event stream (``app.events()``); ``None`` when handed to
    #: ``storage_status_changed``.
    id: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[str], id: str | None = None) -> StatusChange:
        """A change from the 9 strings a backend reports: uuid, task_name, queue,
        previous, status, reason, at (ms), attempt, worker (``""`` for none)."""
        uuid, name, queue, previous, status, reason, at, attempt, worker = row
        return cls(
            uuid,
            name,
            queue or "default",
            previous or None,
            status,
            reason or None,
            int(at or 0) / 1000,
            int(attempt) if attempt.isdigit() else 0,
            worker or None,
            id,
        )

    def to_dict(self) -> dict[str, Any]:
        """The change as JSON-ready data (``qtasks events --json``)."""
        return {f: getattr(self, f) for f in self.__slots__}


#: The original QTasks' name for :class:`TaskStatus`.
TaskStatusEnum = TaskStatus

#: A task in one of these states is done: its waiters wake and its record expires.
FINAL_STATUSES = frozenset({TaskStatus.SUCCESS, TaskStatus.ERROR, TaskStatus.CANCEL})

#: Earlier attempts a record keeps in ``history`` (the oldest go first): a task that
#: is retried or recovered for ever must not grow its record for ever.
ATTEMPT_HISTORY_MAX: Final = 20


class Attempt(BaseModel):
    """One earlier attempt of a task (``Task.history``): who ran it, when, how it
    ended and how long the task then waited for the next one.

    Stored in the record's ``history`` field, a JSON array of objects with these keys
    (times in seconds since the epoch, on the Redis server's clock; a key left out
    reads as ``None``), written by the backend in the same atomic step that ends the
    attempt.
    """

    model_config = ConfigDict(frozen=True)

    #: Its number, from 1 (what ``Task.attempts`` read while it ran).
    attempt: int
    #: The worker that ran it.
    worker: str | None = None
    #: When it started, and when it ended: for an attempt whose worker died (or lost
    #: its lease), when the lease was found run out and the task queued again.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: The error it ended with, ``"Type: message"`` as the record's ``error`` field
    #: holds it; ``None`` when it raised nothing (its worker died).
    error: str | None = None
    #: Why it ended, in a word, as a :class:`StatusChange` names it: the exception
    #: type of an error that was retried, ``"lease_expired"`` when its worker died or
    #: lost its lease.
    reason: str | None = None
    #: Seconds the task then waited before the next attempt was due (a retry's
    #: backoff); ``None`` when it went straight back to its queue.
    delay: float | None = None


#: A task's result type: what its function returns. Defaults to ``Any``, so a bare
#: ``Task`` annotation stays valid under ``mypy --strict``.
R = TypeVar("R", default=Any)


class Task(BaseModel, Generic[R]):
    """A task as callers see it (``app.get(uuid)``, ``add_task(..., timeout=...)``).

    Generic in its result: a handle's ``add.add_task(2, 3)`` is a ``Task[int]`` for
    ``def add(a: int, b: int) -> int``, so ``task.returning`` is an ``int | None`` to a
    type checker (``None`` until it succeeds). At run time it is always the same class.
    """

    model_config = ConfigDict(frozen=True)

    status: str
    uuid: str
    priority: int
    task_name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: When it was written, on the Redis server's clock (as every time of the record;
    #: ``add_tasks``' own copies carry this process's clock).
    created_at: datetime
    updated_at: datetime
    returning: R | None = None
    traceback: str | None = None
    #: Attempts made so far (a task recovered from a dead worker counts again).
    attempts: int = 0
    retry: int | None = None
    cancel_reason: str | None = None
    worker: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    #: The queue it was sent to.
    queue: str = "default"
    #: When a task sent with a delay (or a retry) is due, while it waits.
    eta: datetime | None = None
    #: When a task not started by then ends ``cancel`` (reason ``expired``).
    expires: datetime | None = None
    #: When the current attempt was queued (a delayed task or a retry: when it fell
    #: due), when it started and when it ended: times of the Redis server's clock, like
    #: leases, so the wait in the queue and a run's duration are measured on one clock.
    #: ``finished_at`` is ``None`` while an attempt runs.
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: The last ``ctx.set_progress`` of a running task: ``{"value", "meta", "at"}``.
    progress: dict[str, Any] | None = None
    #: A workflow's own task: the member that made it fail.
    failed_member: str | None = None
    #: Whether this is a workflow's own task (``start_workflow``), not a task's.
    is_workflow: bool = False
    #: A workflow's step: the uuid of the workflow it belongs to, and its place in the
    #: workflow's tree (``r.0.1``; ``e`` for the on_error task).
    workflow: str | None = None
    workflow_path: str | None = None
    #: The attempts before the current one, oldest first: each retry and each recovery
    #: from a dead worker adds the attempt that ended. The current (or last) attempt is
    #: the record's own ``attempts``, ``worker``, ``started_at``, ``finished_at`` and
    #: ``traceback``. At most the last 20 (``ATTEMPT_HISTORY_MAX``) are kept: older
    #: ones are dropped, so the first entry's ``attempt`` may be above 1.
    history: tuple[Attempt, ...] = ()
    #: Sent by ``app.retry``: the uuid of the task this one was sent again from.
    retried_from: str | None = None
    #: Sent again by ``app.retry``: the uuid of the newest task sent from this one.
    retried_as: str | None = None

    @property
    def is_finished(self) -> bool:
        """Whether the task reached a final status (success, error or cancel)."""
        return self.status in FINAL_STATUSES

    def wait_result(self, timeout: float = 100.0) -> Task | None:
        """The original QTasks' helper: wait for this task's final state on the app
        created last in this process; ``None`` if ``timeout`` runs out (as the original;
        ``app.wait`` raises ``TaskTimeoutError`` instead)."""
        return _current_app()._portal.call(self.wait_result_async(timeout))  # type: ignore[no-any-return]

    async def wait_result_async(self, timeout: float = 100.0) -> Task | None:
        """Async twin of :meth:`wait_result`."""
        from .errors import TaskTimeoutError

        try:
            task: Task = await _current_app().wait_async(self.uuid, timeout)
        except TaskTimeoutError:
            return None
        return task


def _now() -> float:
    return time.time()


def _current_app() -> Any:
    app = _current.current()
    if app is None:
        raise RuntimeError("wait_result needs an app: create a QueueTasks first")
    return app


class TaskStatusNewSchema(BaseModel):
    """A task about to be written to the queue (``broker_add_before``)."""

    task_name: str
    priority: int
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = Field(default_factory=dict)
    created_at: float = Field(default_factory=_now)
    #: A new task was last updated when it was created.
    updated_at: float = Field(default_factory=lambda data: data["created_at"])
    status: Literal["new"] = "new"
    extra: dict[str, Any] = Field(default_factory=dict)
    #: The queue it goes to.
    queue: str = "default"
    #: Seconds from now until it is due (``None``: at once).
    delay: float | None = None
    #: Seconds from now after which, not started, it ends ``cancel`` (``expired``).
    expires: float | None = None
    #: While a task with this key is queued or running (and ``unique_for`` seconds
    #: from its enqueue), an enqueue with the same key returns that task instead.
    unique_key: str | None = None
    unique_for: float | None = None
    #: Sent by ``app.retry``: the uuid of the task it is sent again from.
    retried_from: str | None = None
    #: The sender waits for its end (``timeout=``): the engine tells the end to waiters
    #: of such tasks (and of those a wait marks) only.
    waited: bool = False


class TaskStatusProcessSchema(BaseModel):
    """A claimed task as it enters processing on a worker."""

    uuid: str
    task_name: str
    priority: int
    worker: str
    status: Literal["process"] = "process"
    updated_at: float = Field(default_factory=_now)


class TaskStatusSuccessSchema(BaseModel):
    """The final state of a task that returned."""

    uuid: str
    returning: Any = None
    status: Literal["success"] = "success"
    updated_at: float = Field(default_factory=_now)


class TaskStatusErrorSchema(BaseModel):
    """The state of a task that raised: ``error`` (final) or ``retry`` (runs again).

    For ``retry``, ``retry`` is the number of retries left and ``retry_delay`` the
    seconds to wait in Redis before the next attempt.
    """

    uuid: str
    traceback: str
    status: Literal["error", "retry"] = "error"
    retry: int | None = None
    retry_delay: float = 0.0
    updated_at: float = Field(default_factory=_now)


class TaskStatusCancelSchema(BaseModel):
    """The final state of a task cancelled by ``ctx.cancel`` or ``app.cancel``."""

    uuid: str
    cancel_reason: str = ""
    status: Literal["cancel"] = "cancel"
    updated_at: float = Field(default_factory=_now)


FinishedModel = TaskStatusSuccessSchema | TaskStatusErrorSchema | TaskStatusCancelSchema


class TaskPrioritySchema(BaseModel):
    """A claimed task as a worker runs it (the message taken off the queue)."""

    uuid: str
    task_name: str
    priority: int
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = Field(default_factory=dict)
    created_at: float
    attempts: int = 1
    retry: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    #: The queue it was claimed from.
    queue: str = "default"


class TaskExecSchema(BaseModel):
    """A registered task: its function and the options given to ``@app.task``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    func: Callable[..., Any]
    priority: int = 0
    echo: bool = False
    max_time: float | None = None
    retry: int | None = None
    retry_on_exc: tuple[type[BaseException], ...] | None = None
    retry_backoff: float = 1.0
    #: Draw each retry's delay between half the backoff and all of it (see
    #: :mod:`qtasks_core.plugins.retry`).
    retry_jitter: bool = True
    decode: Callable[[Any], Any] | None = None
    tags: tuple[str, ...] = ()
    description: str | None = None
    generate_handler: Callable[..., Any] | None = None
    executor: Any = None
    middlewares_before: tuple[Any, ...] = ()
    middlewares_after: tuple[Any, ...] = ()
    extra: dict[str, Any] = Field(default_factory=dict)
    #: The queue its tasks go to unless a call names another.
    queue: str = "default"
    #: At most this many running at once, across every worker.
    concurrency_limit: int | None = None
    #: At most this many started per period, across every worker: ``"100/m"``.
    rate_limit: str | None = None


class ArgMeta(BaseModel):
    """One parameter of a task function and the value it is about to receive."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    value: Any = None
    position: int | None = None
    annotation: Any = None
    is_kwarg: bool = False


class WorkerInfo(BaseModel):
    """A live worker, from its heartbeat."""

    id: str
    host: str
    pid: int
    started_at: float
    concurrency: int
    running: list[str] = Field(default_factory=list)
    tasks_done: int = 0
    #: The queues it serves.
    queues: list[str] = Field(default_factory=list)
    #: When it last wrote this record (its heartbeat), and the qtasks-core it runs.
    beat_at: float | None = None
    version: str | None = None


class TaskPage(BaseModel):
    """One page of ``app.list_tasks``: tasks, and the cursor of the next page."""

    tasks: list[Task] = Field(default_factory=list)
    #: Pass as ``before=`` for the next page; ``None`` on the last one.
    next: str | None = None
    #: With ``search``: how many records this page's search read (``None``: no search).
    searched: int | None = None
    #: With ``search``: whether the search stopped at its window (older records of the
    #: filter were not searched; ``next`` goes on from where it stopped).
    search_cut: bool = False


class DeadLetterPage(BaseModel):
    """One page of ``app.dead_letter_page``: dead letters, newest first, how many there
    are in all, and the cursor of the next page."""

    #: Each a dict of ``uuid``, ``reason``, ``raw`` and ``at`` (seconds, as text).
    letters: list[dict[str, str]] = Field(default_factory=list)
    #: Dead letters in all, on every page.
    total: int = 0
    #: Pass as ``before=`` for the next page; ``None`` on the last one.
    next: str | None = None


class WorkflowNode(BaseModel):
    """One node of a workflow's tree (``app.workflow(uuid)``)."""

    #: ``r`` for the root, ``r.0``, ``r.0.2``... (``e``: the on_error step).
    path: str
    kind: Literal["task", "chain", "group"]
    #: For a task: its name, uuid and status (``waiting``: its turn has not come).
    task_name: str | None = None
    uuid: str | None = None
    status: str | None = None
    #: For a group: whether it settles (errors in place of results).
    settle: bool = False


class WorkflowView(BaseModel):
    """A workflow: its own task and its tree, node by node in path order."""

    task: Task
    nodes: list[WorkflowNode] = Field(default_factory=list)


class InspectStats(BaseModel):
    """A snapshot of an app at runtime (``Stats(app).inspect()``)."""

    app: str
    backend: str
    #: Queued tasks per priority, all queues together.
    queued: dict[int, int] = Field(default_factory=dict)
    #: Queued tasks per queue, then per priority (a queue no worker serves shows here).
    queues: dict[str, dict[int, int]] = Field(default_factory=dict)
    scheduled: int = 0
    running: int = 0
    #: Dead letters waiting to be requeued or deleted.
    dead: int = 0
    status_counts: dict[str, int] = Field(default_factory=dict)
    workers: list[WorkerInfo] = Field(default_factory=list)
    tasks: list[dict[str, Any]] = Field(default_factory=list)
    plugins: list[str] = Field(default_factory=list)
