"""What ``from qtasks_core import ...`` offers: pinned, so that a name is added or
dropped on purpose (with a CHANGELOG line), never by a refactor."""

from __future__ import annotations

import pytest

import qtasks_core

EXPORTED = [
    "AsyncResult", "AsyncRouter", "AsyncState", "AsyncTestCase", "Attempt", "BackendAuthError",
    "BackendDataError", "BackendError", "BackendOutOfMemoryError", "BackendPermissionError",
    "BackendReadOnlyError", "BackendTimeoutError", "BackendUnavailableError", "Chain",
    "DeadLetterPage", "Depends", "Group", "QTasksError", "QueueConfig", "QueueTasks", "Router",
    "ScopeEnum", "Signature", "Starter", "State", "Stats", "StatusChange", "SyncResult",
    "SyncRouter", "SyncTestCase", "Task", "TaskCancel", "TaskContext", "TaskExecutor",
    "TaskExitError", "TaskHandle", "TaskMiddleware", "TaskNotFoundError", "TaskOptionError",
    "TaskPage", "TaskPluginTriggerError", "TaskSerializationError", "TaskStatus",
    "TaskStatusEnum", "TaskTimeoutError", "TestConfig", "Worker", "chain", "chord", "group",
    "hookimpl", "shared_task", "signature",
]  # fmt: skip


def test_the_exported_names_are_pinned_and_sorted() -> None:
    assert qtasks_core.__all__ == EXPORTED
    assert sorted(EXPORTED) == EXPORTED


def test_every_exported_name_resolves() -> None:
    missing = [name for name in qtasks_core.__all__ if not hasattr(qtasks_core, name)]
    assert missing == []


def test_each_exported_name_comes_from_its_module() -> None:
    """The names are imported on first use; each must be the object its module holds,
    and a name outside the list must still fail as a missing attribute."""
    import importlib

    assert sorted(qtasks_core._EXPORTS) == EXPORTED
    for name, module in qtasks_core._EXPORTS.items():
        assert getattr(qtasks_core, name) is getattr(
            importlib.import_module(module, "qtasks_core"), name
        )
    with pytest.raises(AttributeError, match="NoSuchName"):
        qtasks_core.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
