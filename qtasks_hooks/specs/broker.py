"""Triggers fired by the broker (``broker_*``).

The broker lives in every process: it enqueues and reads tasks in the producer process
(the process calling ``add_task`` or ``get``) and claims, finishes and recovers them in
the worker process (the ``qtasks worker`` process). Each spec says where it fires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtasks_hooks._markers import hookspec
from qtasks_hooks._rules import replaces_keys, replaces_value

if TYPE_CHECKING:
    from qtasks_core.broker import Broker
    from qtasks_core.schemas import (
        Task,
        TaskStatusCancelSchema,
        TaskStatusErrorSchema,
        TaskStatusNewSchema,
        TaskStatusSuccessSchema,
    )
    from qtasks_core.storage import Storage
    from qtasks_core.worker import Worker


# -------------------------------------------------------------------------
# Lifecycle
# -------------------------------------------------------------------------


@hookspec
def broker_start(broker: Broker, worker: Worker | None) -> None:
    """The broker is starting.

    Fired in every process that starts the broker: the worker process, and a producer
    process on its first use of the broker.

    :param broker: The broker that is starting.
    :param worker: The worker the broker serves, or ``None`` when the broker is started
        outside a worker (in a producer).
    :return: The return value is ignored.
    """


@hookspec
def broker_stop(broker: Broker) -> None:
    """The broker is stopping.

    Fired in every process that stops the broker (the worker process or a producer).

    :param broker: The broker that is stopping.
    :return: The return value is ignored.
    """


@hookspec
def broker_flush_all(broker: Broker) -> None:
    """The broker is about to reset its queues.

    Fired in the producer process, the process that calls ``app.flush_all``.

    :param broker: The broker whose queues are about to be reset.
    :return: The return value is ignored.
    """


# -------------------------------------------------------------------------
# Enqueue and read (producer side)
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
@replaces_value("model", shape="model")
def broker_add_before(
    broker: Broker, storage: Storage, model: TaskStatusNewSchema
) -> TaskStatusNewSchema | None:
    """A new task's record is about to be written together with its queue entry.

    Fired in the producer process, inside ``add_task``.

    :param broker: The broker that enqueues the task.
    :param storage: The storage the record is written to.
    :param model: The record of the new task (status ``new``) about to be written.
    :return: A ``TaskStatusNewSchema`` that replaces the record written; ``None`` keeps the
        current value.
    """


@hookspec
def broker_add_after(broker: Broker, storage: Storage, model: TaskStatusNewSchema) -> None:
    """A new task's record and queue entry were written, atomically.

    Fired in the producer process, inside ``add_task`` (for each task of a batch, and
    a periodic tick's task in the scheduler that enqueued it). A workflow's step is
    written by the backend when its turn comes: fired then, in the process whose call
    wrote it (``start_workflow``'s for the first steps, the worker's that finished the
    step before for the others), from the record as written.

    :param broker: The broker that enqueued the task.
    :param storage: The storage the record was written to.
    :param model: The record of the new task (status ``new``) as written.
    :return: The return value is ignored.
    """


@hookspec(firstresult=True)
@replaces_value("task", shape="model_or_none")
def broker_get(broker: Broker, task: Task | None) -> Task | None:
    """The broker read a task by its uuid.

    Fired in every process that reads a task through the broker (a producer calling
    ``app.get``).

    :param broker: The broker the task was read through.
    :param task: The task read, or ``None`` when no task has that uuid.
    :return: A ``Task`` that replaces the task read; ``None`` keeps the current value.
    """


@hookspec(firstresult=True)
@replaces_value("kw", shape="dict")
def broker_update(broker: Broker, kw: dict[str, Any]) -> dict[str, Any] | None:
    """A task's record is about to be updated through the broker.

    Fired in every process that updates a task's record through the broker (a producer
    cancelling a task, or the worker process), before the update is tried: also for a
    cancel that is then refused (the task ran already). What was changed is told by
    ``storage_status_changed``.

    :param broker: The broker the update goes through.
    :param kw: ``uuid`` (the task to update) and the fields to set on its record, e.g.
        ``status`` or ``cancel_reason``.
    :return: A dict that replaces ``kw`` as a whole (keep ``uuid`` in it); ``None`` keeps
        the current value.
    """


# -------------------------------------------------------------------------
# Claim, finish and recover (worker side)
# -------------------------------------------------------------------------


@hookspec
def broker_listen_start(broker: Broker, worker: Worker) -> None:
    """The worker's claim loop is starting to listen for tasks.

    Fired in the worker process, before its first claim.

    :param broker: The broker tasks are claimed from.
    :param worker: The worker that claims the tasks.
    :return: The return value is ignored.
    """


@hookspec(firstresult=True)
@replaces_keys("task_name", "uuid", "priority", "args", "kw", "created_at")
def broker_add_worker(
    broker: Broker,
    worker: Worker,
    task_name: str,
    uuid: str,
    priority: int,
    args: tuple[Any, ...],
    kw: dict[str, Any],
    created_at: float,
) -> dict[str, Any] | None:
    """A claimed task is about to be handed to the worker that claimed it.

    Fired in the worker process, once per claimed task.

    :param broker: The broker the task was claimed from.
    :param worker: The worker the task is handed to.
    :param task_name: The registered name of the task to run.
    :param uuid: The task's id.
    :param priority: The task's priority (a lower number runs first).
    :param args: The positional arguments the task will be called with.
    :param kw: The keyword arguments the task will be called with.
    :param created_at: When the task was enqueued, as a Unix timestamp in seconds.
    :return: A dict whose keys, among ``task_name``, ``uuid``, ``priority``, ``args``,
        ``kw`` and ``created_at``, replace those arguments; an absent or ``None`` key
        keeps that argument. ``None`` keeps the current values.
    """


@hookspec(firstresult=True)
@replaces_value("model", shape="model")
def broker_remove_finished_task(
    broker: Broker,
    storage: Storage,
    model: TaskStatusSuccessSchema | TaskStatusErrorSchema | TaskStatusCancelSchema,
) -> TaskStatusSuccessSchema | TaskStatusErrorSchema | TaskStatusCancelSchema | None:
    """A task's final state, or its retry, is about to be written.

    Fired in the worker process, once per task run, as the task leaves processing.

    :param broker: The broker the task was claimed from.
    :param storage: The storage the state is written to.
    :param model: The state to write: ``TaskStatusSuccessSchema``,
        ``TaskStatusCancelSchema``, or ``TaskStatusErrorSchema`` (status ``error``, or
        ``retry`` when the task will run again after a delay).
    :return: One of those three models, replacing the state written; ``None`` keeps the
        current value.
    """


@hookspec
def broker_running_older_tasks(broker: Broker, worker: Worker, uuids: list[str]) -> None:
    """Tasks whose worker's lease expired (the worker died) were put back in the queue.

    Fired in the worker process of the live worker that recovered them. The reference
    names the third argument ``tasks``; it is ``uuids`` here because recovery is one
    atomic Redis script that returns the ids only.

    :param broker: The broker that requeued the tasks.
    :param worker: The live worker that ran the recovery.
    :param uuids: The ids of the tasks put back in the queue.
    :return: The return value is ignored.
    """
