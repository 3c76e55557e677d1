"""QTasks: a distributed task queue on Redis whose extension surface is pluggy hooks.

::

    from qtasks_core import QueueTasks

    app = QueueTasks("demo")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

Each name below is imported from its module on first use (PEP 562), so that
``import qtasks_core`` costs nothing and ``from qtasks_core import QueueTasks`` loads
what an app needs, not the test cases, the workers or the dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

#: The module each exported name comes from (the same as the imports below, which are
#: what type checkers read).
_EXPORTS: dict[str, str] = {
    "AsyncResult": ".results",
    "AsyncRouter": ".app",
    "AsyncState": ".plugins.state",
    "AsyncTestCase": ".testcase",
    "Attempt": ".schemas",
    "BackendAuthError": ".errors",
    "BackendDataError": ".errors",
    "BackendError": ".errors",
    "BackendOutOfMemoryError": ".errors",
    "BackendPermissionError": ".errors",
    "BackendReadOnlyError": ".errors",
    "BackendTimeoutError": ".errors",
    "BackendUnavailableError": ".errors",
    "Chain": ".workflows",
    "DeadLetterPage": ".schemas",
    "Depends": ".plugins",
    "Group": ".workflows",
    "QTasksError": ".errors",
    "QueueConfig": ".config",
    "QueueTasks": ".app",
    "Router": ".app",
    "ScopeEnum": ".plugins.depends",
    "Signature": ".workflows",
    "Starter": ".starter",
    "State": ".plugins",
    "Stats": ".stats",
    "StatusChange": ".schemas",
    "SyncResult": ".results",
    "SyncRouter": ".app",
    "SyncTestCase": ".testcase",
    "Task": ".schemas",
    "TaskCancel": ".errors",
    "TaskContext": ".context",
    "TaskExecutor": ".executor",
    "TaskExitError": ".errors",
    "TaskHandle": ".app",
    "TaskMiddleware": ".middlewares",
    "TaskNotFoundError": ".errors",
    "TaskOptionError": ".errors",
    "TaskPage": ".schemas",
    "TaskPluginTriggerError": ".errors",
    "TaskSerializationError": ".errors",
    "TaskStatus": ".schemas",
    "TaskStatusEnum": ".schemas",
    "TaskTimeoutError": ".errors",
    "TestConfig": ".testcase",
    "Worker": ".worker",
    "chain": ".workflows",
    "chord": ".workflows",
    "group": ".workflows",
    "hookimpl": "qtasks_hooks",
    "shared_task": ".app",
    "signature": ".workflows",
}

if TYPE_CHECKING:
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
    from .schemas import (
        Attempt,
        DeadLetterPage,
        StatusChange,
        Task,
        TaskPage,
        TaskStatus,
        TaskStatusEnum,
    )
    from .starter import Starter
    from .stats import Stats
    from .testcase import AsyncTestCase, SyncTestCase, TestConfig
    from .worker import Worker
    from .workflows import Chain, Group, Signature, chain, chord, group, signature
else:
    # Defined for the interpreter only: a type checker that saw a module __getattr__
    # would take any misspelt name for Any instead of reporting it.
    def __getattr__(name: str) -> object:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(module, __name__), name)
        # Kept, so that the next access is a plain attribute lookup.
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


__all__ = [
    "AsyncResult",
    "AsyncRouter",
    "AsyncState",
    "AsyncTestCase",
    "Attempt",
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
