"""QTasks: a distributed task queue on Redis whose extension surface is pluggy hooks.

::

    from qtasks_core import QueueTasks

    app = QueueTasks("demo")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b
"""

from __future__ import annotations

from qtasks_hooks import hookimpl

from .app import AsyncRouter, QueueTasks, Router, SyncRouter, TaskHandle, shared_task
from .config import QueueConfig
from .context import TaskContext
from .errors import (
    BackendAuthError,
    BackendDataError,
    BackendError,
    BackendOutOfMemoryError,
    BackendPermissionError,
    BackendReadOnlyError,
    BackendTimeoutError,
    BackendUnavailableError,
    QTasksError,
    TaskCancel,
    TaskExitError,
    TaskNotFoundError,
    TaskOptionError,
    TaskPluginTriggerError,
    TaskSerializationError,
    TaskTimeoutError,
)
from .executor import TaskExecutor
from .middlewares import TaskMiddleware
from .plugins import Depends, State
from .plugins.depends import ScopeEnum
from .plugins.state import AsyncState
from .results import AsyncResult, SyncResult
from .schemas import DeadLetterPage, StatusChange, Task, TaskPage, TaskStatus, TaskStatusEnum
from .starter import Starter
from .stats import Stats
from .testcase import AsyncTestCase, SyncTestCase, TestConfig
from .worker import Worker
from .workflows import Chain, Group, Signature, chain, chord, group, signature

__all__ = [
    "AsyncResult",
    "AsyncRouter",
    "AsyncState",
    "AsyncTestCase",
    "BackendAuthError",
    "BackendDataError",
    "BackendError",
    "BackendOutOfMemoryError",
    "BackendPermissionError",
    "BackendReadOnlyError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "Chain",
    "DeadLetterPage",
    "Depends",
    "Group",
    "QTasksError",
    "QueueConfig",
    "QueueTasks",
    "Router",
    "ScopeEnum",
    "Signature",
    "Starter",
    "State",
    "Stats",
    "StatusChange",
    "SyncResult",
    "SyncRouter",
    "SyncTestCase",
    "Task",
    "TaskCancel",
    "TaskContext",
    "TaskExecutor",
    "TaskExitError",
    "TaskHandle",
    "TaskMiddleware",
    "TaskNotFoundError",
    "TaskOptionError",
    "TaskPage",
    "TaskPluginTriggerError",
    "TaskSerializationError",
    "TaskStatus",
    "TaskStatusEnum",
    "TaskTimeoutError",
    "TestConfig",
    "Worker",
    "chain",
    "chord",
    "group",
    "hookimpl",
    "shared_task",
    "signature",
]
