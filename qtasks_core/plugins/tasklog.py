"""The task log: one line per task a worker finishes, on the logger ``qtasks.tasks``.

==========================================  =======  ===============================
outcome                                     level    line ends
==========================================  =======  ===============================
``success``                                 INFO     ``succeeded in 0.0021s (…)``
``cancel`` (aborted, ``TaskCancel``)        INFO     ``cancelled in …: aborted``
``error``                                   WARNING  ``failed in …: ValueError: …``
``retry``                                   WARNING  ``failed in …, retry in 2s: …``
requeued after its worker's lease expired   WARNING  ``requeued: its worker stopped …``
its run starting                            DEBUG    ``started (attempt 1, …)``
==========================================  =======  ===============================

Every line starts ``task <name>[<uuid>]`` and names the attempt and the worker. A
message that cannot be read is set aside as a dead letter with a line of its own on the
same logger (``set aside as a dead letter``), written by the broker whether or not this
plugin runs.

Each record carries the fields as attributes (``extra=``): ``task_name``, ``uuid``,
``status``, ``duration`` (seconds on the worker's clock, from the start of the run to
its outcome), ``attempt``, ``worker``, ``error_type`` and ``error`` (``None`` unless it
failed), ``retry_delay`` and ``reason``.

The lines come from the worker's own triggers, as the outcome is handed to be written:
only worker processes log, and nothing is collected for them (the status-change feed,
which the engine fills only while a plugin listens, stays off). Turn it off with
``QueueTasks(block_plugins=["qtasks.tasklog"])`` or
``QTASKS_DISABLE_PLUGINS=qtasks.tasklog``, or raise the logger's level
(``logging.getLogger("qtasks.tasks").setLevel(logging.WARNING)`` keeps failures only).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from qtasks_hooks import hookimpl

from ..storage import error_line

if TYPE_CHECKING:
    from ..broker import Broker
    from ..schemas import FinishedModel, TaskPrioritySchema
    from ..worker import Worker

log = logging.getLogger("qtasks.tasks")

#: Runs remembered at most: a run whose outcome never comes (its worker was stopped
#: hard) would otherwise stay.
_KEPT: Final = 10_000

_LEVELS: Final = {
    "success": logging.INFO,
    "cancel": logging.INFO,
    "error": logging.WARNING,
    "retry": logging.WARNING,
}
_VERBS: Final = {
    "success": "succeeded",
    "cancel": "cancelled",
    "error": "failed",
    "retry": "failed",
}


class TaskLogPlugin:
    """Logs each task a worker of this process runs, from its start to its outcome."""

    def __init__(self) -> None:
        #: When each running task's run started (this process's monotonic clock).
        self._started: dict[str, float] = {}

    @hookimpl
    def worker_execute_before(self, worker: Worker, task_broker: TaskPrioritySchema) -> None:
        self._started[task_broker.uuid] = time.perf_counter()
        if len(self._started) > _KEPT:
            del self._started[next(iter(self._started))]
        if log.isEnabledFor(logging.DEBUG):
            where = f"attempt {task_broker.attempts}, worker {worker.id}"
            line = f"task {task_broker.task_name}[{task_broker.uuid}] started ({where})"
            _emit(logging.DEBUG, line, _fields(task_broker, worker.id, "process", None))

    # Last of the chain: the state other plugins settled on is the one logged.
    @hookimpl(trylast=True)
    def worker_remove_finished_task(
        self, worker: Worker, task_broker: TaskPrioritySchema, model: FinishedModel
    ) -> None:
        start = self._started.pop(task_broker.uuid, None)
        status = model.status
        level = _LEVELS.get(status, logging.INFO)
        if not log.isEnabledFor(level):
            return
        duration = None if start is None else time.perf_counter() - start
        error = delay = reason = None
        if status == "error" or status == "retry":
            error = error_line(getattr(model, "traceback", "") or "") or None
            if status == "retry":
                delay = getattr(model, "retry_delay", None)
        elif status == "cancel":
            reason = getattr(model, "cancel_reason", None) or None
        fields = _fields(task_broker, worker.id, status, duration, error, delay, reason)
        task = f"task {task_broker.task_name}[{task_broker.uuid}]"
        took = "" if duration is None else f" in {duration:.4f}s"
        line = f"{task} {_VERBS.get(status, status)}{took} ({_where(task_broker, worker.id)})"
        if delay is not None:
            line += f", retry in {delay:g}s"
        if error is not None:
            line += f": {error}"
        elif reason:
            line += f": {reason}"
        # Written once the worker next waits (for the finish's round trip, which this
        # trigger comes before): a file write held the result back from its waiter.
        try:
            asyncio.get_running_loop().call_soon(_emit, level, line, fields)
        except RuntimeError:  # no loop: a caller of the trigger's own
            _emit(level, line, fields)

    @hookimpl
    def broker_running_older_tasks(self, broker: Broker, worker: Worker, uuids: list[str]) -> None:
        if not log.isEnabledFor(logging.WARNING):
            return
        for uuid in uuids:
            line = (
                f"task [{uuid}] requeued: its worker stopped renewing the lease "
                f"(found by worker {worker.id})"
            )
            fields = {**dict.fromkeys(_FIELDS), "uuid": uuid, "status": "new"}
            _emit(logging.WARNING, line, {**fields, "worker": worker.id, "reason": "lease_expired"})


_FIELDS: Final = (
    "task_name",
    "uuid",
    "status",
    "duration",
    "attempt",
    "worker",
    "error_type",
    "error",
    "retry_delay",
    "reason",
)


#: A record of this module's, made once per process: what every line's record shares
#: (its source file, the process), copied instead of worked out again.
_template: dict[str, Any] = {}


def _emit(level: int, line: str, fields: dict[str, Any]) -> None:
    """Hand a line to the handlers, with a record made the cheap way. ``log.log``
    walks the stack for the caller's file and line, and ``LogRecord()`` works out the
    file's name, the module, the process and its name again for every line: about
    half of a line's cost in a worker, where a line is written per task, for values
    that are the same on every line of this module."""
    template = _template
    if template.get("process") != os.getpid():  # first line, or a forked child's
        template.clear()
        template.update(log.makeRecord(log.name, level, __file__, 0, "", (), None).__dict__)
    record = logging.LogRecord.__new__(logging.LogRecord)
    state = record.__dict__
    state.update(template)
    state.update(fields)
    now = time.time_ns()
    created = now / 1e9
    thread = threading.current_thread()
    state.update(
        msg=line,
        levelno=level,
        levelname=logging.getLevelName(level),
        created=created,
        msecs=(now % 1_000_000_000) // 1_000_000 + 0.0,
        relativeCreated=(created - logging._startTime) * 1000,  # type: ignore[attr-defined]
        thread=thread.ident,
        threadName=thread.name,
    )
    if "taskName" in state:  # Python >= 3.12 names the asyncio task too
        import asyncio

        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        state["taskName"] = None if task is None else task.get_name()
    log.handle(record)


def _where(task_broker: TaskPrioritySchema, worker: str) -> str:
    return f"attempt {task_broker.attempts}, worker {worker}"


def _fields(
    task_broker: TaskPrioritySchema,
    worker: str,
    status: str,
    duration: float | None,
    error: str | None = None,
    delay: float | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The record's attributes, for a JSON formatter or a filter."""
    error_type = None if error is None else error.partition(":")[0].strip() or None
    return {
        "task_name": task_broker.task_name,
        "uuid": task_broker.uuid,
        "status": status,
        "duration": duration,
        "attempt": task_broker.attempts,
        "worker": worker,
        "error_type": error_type,
        "error": error,
        "retry_delay": delay,
        "reason": reason if reason is not None else error_type,
    }
