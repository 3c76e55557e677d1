"""The task log: one line per task a worker finishes, on the logger ``qtasks.tasks``.

==========================================  =======  ===============================
change                                      level    line ends
==========================================  =======  ===============================
``process -> success``                      INFO     ``succeeded in 0.0021s (…)``
``process -> cancel`` (aborted)             INFO     ``cancelled in …: aborted``
``process -> error``                        WARNING  ``failed in …: ValueError: …``
``process -> retry``                        WARNING  ``failed in …, retry in 2s: …``
``-> dead`` (a dead letter)                 WARNING  ``set aside as a dead letter …``
``process -> new`` (lease expired)          WARNING  ``requeued: its worker stopped …``
any other change (its claim, …)             DEBUG    ``new -> process``
==========================================  =======  ===============================

Every line starts ``task <name>[<uuid>]`` and names the attempt and the worker.

Each record carries the fields as attributes (``extra=``): ``task_name``, ``uuid``,
``status``, ``duration`` (seconds, ``None`` when this process did not see the run
start), ``attempt``, ``worker``, ``error_type`` and ``error`` (``None`` unless it
failed), ``retry_delay`` and ``reason``.

Only worker processes log: the plugin listens to ``storage_status_changed`` from a
worker's start to its stop, so a web app that only enqueues pays nothing for it (the
backend collects status changes only while a plugin listens). Turn it off with
``QueueTasks(block_plugins=["qtasks.tasklog"])`` or
``QTASKS_DISABLE_PLUGINS=qtasks.tasklog``, or raise the logger's level
(``logging.getLogger("qtasks.tasks").setLevel(logging.WARNING)`` keeps failures only).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

from qtasks_hooks import hookimpl

from ..storage import error_line

if TYPE_CHECKING:
    from ..schemas import FinishedModel, StatusChange, TaskPrioritySchema
    from ..worker import Worker

log = logging.getLogger("qtasks.tasks")

#: The name of the listener registered while a worker runs.
LISTENER: Final = "qtasks.tasklog.listener"
#: Runs remembered at most: a task whose lease this worker lost ends elsewhere, and its
#: entry would otherwise stay.
_KEPT: Final = 10_000

_LEVELS: Final = {
    "success": logging.INFO,
    "cancel": logging.INFO,
    "error": logging.WARNING,
    "retry": logging.WARNING,
    "dead": logging.WARNING,
}
_VERBS: Final = {
    "success": "succeeded",
    "cancel": "cancelled",
    "error": "failed",
    "retry": "failed",
}


class TaskLogPlugin:
    """Starts the task log's listener in each process that runs a worker."""

    def __init__(self) -> None:
        self._workers = 0
        self._listener = _Listener()

    @hookimpl
    def worker_start(self, worker: Worker) -> None:
        pm = worker.app.pm
        self._workers += 1
        if pm.get_plugin(LISTENER) is None:
            pm.register(self._listener, name=LISTENER)

    @hookimpl
    def worker_stop(self, worker: Worker) -> None:
        self._workers = max(0, self._workers - 1)
        pm = worker.app.pm
        if self._workers == 0 and pm.get_plugin(LISTENER) is self._listener:
            pm.unregister(self._listener)
            self._listener.forget()


class _Listener:
    """Turns the status changes a worker's calls make into log lines."""

    def __init__(self) -> None:
        #: When this process's claim of each running task returned (monotonic clock).
        self._started: dict[str, float] = {}
        #: What the change does not carry, taken from the worker's final state just
        #: before it is written: the error line and the retry delay.
        self._failures: dict[str, tuple[str, float | None]] = {}

    def forget(self) -> None:
        self._started.clear()
        self._failures.clear()

    @hookimpl(trylast=True)
    def worker_remove_finished_task(
        self, task_broker: TaskPrioritySchema, model: FinishedModel
    ) -> None:
        # Only failures are kept: the change reports the exception's type alone.
        status = model.status
        if status == "error" or status == "retry":
            delay = getattr(model, "retry_delay", None) if status == "retry" else None
            self._failures[task_broker.uuid] = (
                error_line(getattr(model, "traceback", "")),
                delay,
            )
            if len(self._failures) > _KEPT:
                del self._failures[next(iter(self._failures))]

    @hookimpl
    def storage_status_changed(self, change: StatusChange) -> None:
        status = change.status
        uuid = change.uuid
        if status == "process":
            # The duration runs from here, on this process's monotonic clock: the
            # changes' own times are the server's whole milliseconds.
            self._started[uuid] = time.perf_counter()
            if len(self._started) > _KEPT:
                del self._started[next(iter(self._started))]
            log.debug(
                "task %s[%s] %s -> process",
                change.task_name,
                uuid,
                change.previous,
                extra=_fields(change, None, None),
            )
            return
        start = self._started.pop(uuid, None) if change.previous == "process" else None
        duration = None if start is None else time.perf_counter() - start
        failure = self._failures.pop(uuid, None)
        if status == "new" and change.reason == "lease_expired":
            level = logging.WARNING
        else:
            level = _LEVELS.get(status, logging.DEBUG)
        if not log.isEnabledFor(level):
            return
        error = delay = None
        if status == "error" or status == "retry":
            error = change.reason
            # The error written may be a plugin's that failed the task after the
            # attempt: the line kept from before the write is used only if it matches.
            if failure is not None and failure[0].startswith(change.reason or ""):
                error, delay = failure
        fields = _fields(change, duration, error, delay)
        log.log(level, _line(change, duration, error, delay), extra=fields)


def _fields(
    change: StatusChange,
    duration: float | None,
    error: str | None,
    delay: float | None = None,
) -> dict[str, Any]:
    """The record's attributes, for a JSON formatter or a filter."""
    error_type = None
    if error is not None:
        error_type = change.reason or error.partition(":")[0].strip() or None
    return {
        "task_name": change.task_name,
        "uuid": change.uuid,
        "status": change.status,
        "duration": duration,
        "attempt": change.attempt,
        "worker": change.worker,
        "error_type": error_type,
        "error": error,
        "retry_delay": delay,
        "reason": change.reason,
    }


def _line(
    change: StatusChange, duration: float | None, error: str | None, delay: float | None
) -> str:
    task = f"task {change.task_name}[{change.uuid}]"
    status = change.status
    where = f"attempt {change.attempt}" + (f", worker {change.worker}" if change.worker else "")
    if status == "dead":
        return f"{task} set aside as a dead letter ({where}): {change.reason or 'no reason'}"
    if status == "new" and change.reason == "lease_expired":
        return f"{task} requeued: its worker stopped renewing the lease ({where})"
    verb = _VERBS.get(status)
    if verb is None:
        why = f" ({change.reason})" if change.reason else ""
        return f"{task} {change.previous} -> {status}{why}"
    took = "" if duration is None else f" in {duration:.4f}s"
    line = f"{task} {verb}{took} ({where})"
    if status == "retry":
        line += "" if delay is None else f", retry in {delay:g}s"
    if error is not None:
        line += f": {error}"
    elif status == "cancel" and change.reason:
        line += f": {change.reason}"
    return line
