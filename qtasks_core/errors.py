"""Errors of the QTasks runtime.

::

    QTasksError
    ├── TaskNotFoundError (also KeyError)         no task registered under that name
    ├── TaskSerializationError (also TypeError)   arguments or result are not JSON-able
    ├── TaskTimeoutError (also TimeoutError)      a wait for a result ran out; keeps uuid
    ├── TaskOptionError (also ValueError)         a bad priority, payload, option …
    ├── BackendError (also ConnectionError)       the broker backend cannot be reached
    ├── TaskCancel                                raised by ``ctx.cancel()`` in a task
    └── TaskPluginTriggerError                    raised by ``ctx.plugin_error()`` in a task

Plugin contract errors live in :mod:`qtasks_hooks` (``PluginReturnError`` …).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .schemas import Task


class QTasksError(Exception):
    """Base of every error raised by the QTasks runtime."""


class TaskNotFoundError(QTasksError, KeyError):
    """No task is registered under this name in this worker or app."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not found"


class TaskSerializationError(QTasksError, TypeError):
    """A task's arguments (or its result) cannot be serialized to JSON."""


class TaskOptionError(QTasksError, ValueError):
    """A task option or an ``add_task`` argument is out of range."""


class BackendError(QTasksError, ConnectionError):
    """The backend (Redis) cannot be reached or refused the command."""


class TaskTimeoutError(QTasksError, TimeoutError):
    """A wait for a task's final state ran out; the task itself goes on.

    ``uuid`` is the task's id (wait again with ``app.wait(uuid)``); ``task`` is its
    last seen state, or ``None`` if it could not be read.
    """

    def __init__(self, uuid: str, timeout: float, task: Task | None = None) -> None:
        status = task.status if task is not None else "unknown"
        super().__init__(
            f"task {uuid} did not finish within {timeout:g}s (status: {status}); "
            "it is still queued or running: wait again with app.wait(uuid)"
        )
        self.uuid = uuid
        self.timeout = timeout
        self.task = task


class TaskCancel(QTasksError):
    """Raised by ``ctx.cancel(reason)``: the task ends with status ``cancel``."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class TaskPluginTriggerError(QTasksError):
    """Raised by ``ctx.plugin_error(...)``: handled by ``task_executor_run_task_trigger_error``.

    Plugins see the keyword arguments given to ``plugin_error`` in ``extra``.
    """

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra
