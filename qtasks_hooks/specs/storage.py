"""Triggers fired by the storage (``storage_*``), which holds the task records.

The storage lives in every process: records are added in the producer process (the
process calling ``add_task``), moved through processing, finished and recovered in the
worker process (the ``qtasks worker`` process), and read wherever a task is read. Each
spec says where it fires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtasks_hooks._markers import hookspec
from qtasks_hooks._rules import replaces_keys, replaces_value

if TYPE_CHECKING:
    from qtasks_core.schemas import (
        Task,
        TaskPrioritySchema,
        TaskStatusCancelSchema,
        TaskStatusErrorSchema,
        TaskStatusNewSchema,
        TaskStatusProcessSchema,
        TaskStatusSuccessSchema,
    )
    from qtasks_core.storage import Storage
    from qtasks_core.worker import Worker


# -------------------------------------------------------------------------
# Lifecycle and maintenance
# -------------------------------------------------------------------------


@hookspec
def storage_start(storage: Storage) -> None:
    """The storage is starting.

    Fired in every process that starts the storage.

    :param storage: The storage that is starting.
    :return: The return value is ignored.
    """


@hookspec
def storage_stop(storage: Storage) -> None:
    """The storage is stopping.

    Fired in every process that stops the storage.

    :param storage: The storage that is stopping.
    :return: The return value is ignored.
    """


@hookspec
def storage_delete_finished_tasks(storage: Storage) -> None:
    """The records of finished tasks are about to be purged, on request.

    Fired in the process that asks for the purge.

    :param storage: The storage whose finished records are about to be purged.
    :return: The return value is ignored.
    """


@hookspec
def storage_flush_all(storage: Storage) -> None:
    """The storage is about to be reset.

    Fired in the producer process, the process that calls ``app.flush_all``.

    :param storage: The storage that is about to be reset.
    :return: The return value is ignored.
    """


# -------------------------------------------------------------------------
# Add, read and update
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
@replaces_keys("uuid", "task_status")
def storage_add(
    storage: Storage, uuid: str, task_status: TaskStatusNewSchema
) -> dict[str, Any] | None:
    """A new task's record is about to be added.

    Fired in the producer process, inside ``add_task``.

    :param storage: The storage the record is added to.
    :param uuid: The id of the new task.
    :param task_status: The record to add (status ``new``).
    :return: A dict whose keys, among ``uuid`` and ``task_status``, replace those
        arguments; an absent or ``None`` key keeps that argument. ``None`` keeps the
        current values.
    """


@hookspec(firstresult=True)
@replaces_value("result", shape="model_or_none")
def storage_get(storage: Storage, result: Task | None) -> Task | None:
    """A task's record was read.

    Fired in the process that reads it, on the one path every read of a task takes:
    ``app.get``, ``app.wait`` and ``add_task(timeout=)`` (from the final record the
    waiter was woken with), each task of an ``app.list_tasks`` or ``app.list_workflows``
    page, a workflow's view, the dashboard and the command line. A plugin that turns a
    stored value back (decrypts a result, loads one stored elsewhere) does it here, once,
    for all of them; ``broker_get`` and ``qtasks_get`` fire after it on ``app.get``.

    :param storage: The storage the record was read from.
    :param result: The task read, or ``None`` when no task has that uuid.
    :return: A ``Task`` that replaces the task read; ``None`` keeps the current value.
    """


@hookspec(firstresult=True)
@replaces_value("results", shape="list")
def storage_get_all(storage: Storage, results: list[Task]) -> list[Task] | None:
    """All the task records were read.

    Fired in every process that reads all the tasks.

    :param storage: The storage the records were read from.
    :param results: The tasks read.
    :return: A list of ``Task`` that replaces the tasks read as a whole; ``None`` keeps the
        current value.
    """


@hookspec(firstresult=True)
@replaces_value("kw", shape="dict")
def storage_update(storage: Storage, kw: dict[str, Any]) -> dict[str, Any] | None:
    """A task's record is about to be updated.

    Fired in every process that updates a task's record (a producer cancelling a task, or
    the worker process), before the update is tried: also for a cancel that is then
    refused (the task ran already). What was changed is told by
    ``storage_status_changed``.

    :param storage: The storage the record lives in.
    :param kw: ``uuid`` (the task to update) and the fields to set on its record, e.g.
        ``status`` or ``cancel_reason``.
    :return: A dict that replaces ``kw`` as a whole (keep ``uuid`` in it); ``None`` keeps
        the current value.
    """


# -------------------------------------------------------------------------
# Processing, finishing and recovery (worker side)
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
@replaces_keys("task_data", "priority")
def storage_add_process(
    storage: Storage, task_data: TaskStatusProcessSchema, priority: int
) -> dict[str, Any] | None:
    """A claimed task is about to enter processing in this worker.

    Fired in the worker process, once per claimed task.

    :param storage: The storage the processing record is written to.
    :param task_data: The record the task gets while it runs (status ``process``).
    :param priority: The task's priority (a lower number runs first).
    :return: A dict whose keys, among ``task_data`` and ``priority``, replace those
        arguments; an absent or ``None`` key keeps that argument. ``None`` keeps the
        current values.
    """


@hookspec
def storage_remove_finished_task(
    storage: Storage,
    task_broker: TaskPrioritySchema,
    model: TaskStatusSuccessSchema | TaskStatusErrorSchema | TaskStatusCancelSchema,
) -> None:
    """A task's final state, or its retry, is about to be written.

    Fired in the worker process, once per task run, just before the state is written.

    :param storage: The storage the state is written to.
    :param task_broker: The claimed task message that finished.
    :param model: The state about to be written: ``TaskStatusSuccessSchema``,
        ``TaskStatusCancelSchema``, or ``TaskStatusErrorSchema`` (status ``error``, or
        ``retry`` when the task will run again after a delay).
    :return: The return value is ignored.
    """


@hookspec(firstresult=True)
@replaces_keys("task_data")
def storage_running_older_tasks(
    storage: Storage, worker: Worker, task_data: list[str]
) -> dict[str, Any] | None:
    """Tasks recovered from dead workers (their lease expired) are being reported.

    Fired in the worker process of the live worker that recovered them; the tasks are
    already back in the queue.

    :param storage: The storage holding the tasks' records.
    :param worker: The live worker that ran the recovery.
    :param task_data: The ids of the recovered tasks.
    :return: A dict whose key ``task_data`` replaces the list of ids the worker logs and
        reports; an absent or ``None`` key keeps that argument. ``None`` keeps the
        current value.
    """
