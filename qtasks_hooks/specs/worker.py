"""Triggers fired by the worker (``worker_*``).

All are fired in the worker process (the ``qtasks worker`` process), inside its asyncio
loop; the task triggers fire once per task the worker runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtasks_hooks._markers import hookspec
from qtasks_hooks._rules import replaces_keys, replaces_value

if TYPE_CHECKING:
    from qtasks_core.broker import Broker
    from qtasks_core.schemas import (
        TaskExecSchema,
        TaskPrioritySchema,
        TaskStatusCancelSchema,
        TaskStatusErrorSchema,
        TaskStatusProcessSchema,
        TaskStatusSuccessSchema,
    )
    from qtasks_core.worker import Worker


# -------------------------------------------------------------------------
# Lifecycle
# -------------------------------------------------------------------------


@hookspec
def worker_start(worker: Worker) -> None:
    """The worker is starting.

    Fired in the worker process, once, before it claims tasks.

    :param worker: The worker that is starting.
    :return: The return value is ignored.
    """


@hookspec
def worker_stop(worker: Worker) -> None:
    """The worker is stopping.

    Fired in the worker process, once, as it stops.

    :param worker: The worker that is stopping.
    :return: The return value is ignored.
    """


# -------------------------------------------------------------------------
# A task's run, in order
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
@replaces_keys("task_name", "uuid", "priority", "args", "kw", "created_at")
def worker_add(
    worker: Worker,
    task_name: str,
    uuid: str,
    priority: int,
    args: tuple[Any, ...],
    kw: dict[str, Any],
    created_at: float,
) -> dict[str, Any] | None:
    """A claimed task is about to be added to the tasks this worker will run.

    Fired in the worker process, once per claimed task.

    :param worker: The worker the task is added to.
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
def worker_execute_before(
    worker: Worker,
    task_broker: TaskPrioritySchema,
    task_func: TaskExecSchema | None,
    model: TaskStatusProcessSchema,
) -> TaskStatusProcessSchema | None:
    """A claimed task is about to start; ``model`` is the processing state to be stored.

    Fired in the worker process, once per task run, in the context the task then runs
    in: a ``contextvars`` variable set here (a request id, a span, a logging context) is
    seen by the task, whether it is async, a plain function (run in a thread with a copy
    of this context, as ``asyncio.to_thread`` does) or a generator, and by the tasks it
    enqueues, sync or async.

    :param worker: The worker running the task.
    :param task_broker: The claimed task message.
    :param task_func: The registered task (its function and options), or ``None`` when
        the task's name is unknown to this worker.
    :param model: The task's state while it runs (status ``process``).
    :return: A ``TaskStatusProcessSchema`` that replaces the state stored; ``None`` keeps
        the current value.
    """


@hookspec(firstresult=True)
@replaces_keys("task_func", "task_broker")
def worker_run_task_before(
    worker: Worker, task_func: TaskExecSchema | None, task_broker: TaskPrioritySchema
) -> dict[str, Any] | None:
    """A task is about to be handed to the executor that runs it.

    Fired in the worker process, once per task run.

    :param worker: The worker running the task.
    :param task_func: The registered task (its function and options), or ``None`` when
        the task's name is unknown to this worker.
    :param task_broker: The claimed task message.
    :return: A dict whose keys, among ``task_func`` and ``task_broker``, replace those
        arguments; an absent or ``None`` key keeps that argument. ``None`` keeps the
        current values.
    """


@hookspec(firstresult=True)
@replaces_value("model", shape="model")
def worker_task_error_retry(
    worker: Worker,
    broker: Broker,
    task_func: TaskExecSchema | None,
    task_broker: TaskPrioritySchema,
    trace: str,
    exc: BaseException,
    model: TaskStatusErrorSchema,
    retryable: bool,
) -> TaskStatusErrorSchema | None:
    """An attempt of a task failed; ``model`` is the error state about to be stored.

    Fired in the worker process, once per failed attempt, whatever the cause: the task
    raised (``max_time`` raises ``TimeoutError`` in it), no task of that name is
    registered on this worker, or a plugin failed the task (in ``worker_add``,
    ``storage_add_process``, ``worker_execute_after``, ``worker_remove_finished_task``
    or the finish triggers). A plugin failing after an attempt that had failed already
    fires nothing more: its traceback is added to that attempt's error, whose decision
    (retry or not) stands. A retry plugin returns a ``TaskStatusErrorSchema`` with
    status ``retry`` and its retry fields, to have the task run again after a delay.

    Order: the built-in retry plugin (the ``retry`` and ``retry_on_exc`` task options) is
    ``tryfirst``, so every plain impl runs after it and sees its decision in ``model``:
    status ``retry`` (with ``retry``, the retries left after this one, and
    ``retry_delay``) means the task will run again; status ``error`` means it failed
    for good (retries exhausted, none asked for, or not ``retryable``). An error
    reporter that wants only final failures checks ``model.status == "error"``. ``exc``
    and ``model`` are arguments the reference does not have.

    :param worker: The worker that ran the task.
    :param broker: The broker the task was claimed from.
    :param task_func: The registered task (its function and options), or ``None`` when
        no task of that name is registered on this worker.
    :param task_broker: The claimed task message that failed.
    :param trace: The formatted traceback of the failure.
    :param exc: The exception raised: the task's own, a ``TaskNotFoundError``, or the
        plugin's (its note names the plugin and the trigger).
    :param model: The error state about to be stored (status ``error``), or the retry
        state returned by an earlier impl.
    :param retryable: False where no retry may follow (a plugin failed the task, or its
        name is unknown here): a ``retry`` returned then is stored as ``error``.
    :return: A ``TaskStatusErrorSchema`` that replaces the state stored; ``None`` keeps the
        current value.
    """


@hookspec(firstresult=True)
@replaces_keys("task_broker", "model")
def worker_remove_finished_task(
    worker: Worker,
    broker: Broker,
    task_func: TaskExecSchema | None,
    task_broker: TaskPrioritySchema,
    model: TaskStatusSuccessSchema | TaskStatusErrorSchema | TaskStatusCancelSchema,
) -> dict[str, Any] | None:
    """A finished task is about to leave processing, with ``model`` as its final state.

    Fired in the worker process, once per task run.

    :param worker: The worker that ran the task.
    :param broker: The broker the task was claimed from.
    :param task_func: The registered task (its function and options), or ``None`` when
        the task's name is unknown to this worker.
    :param task_broker: The claimed task message that finished.
    :param model: The state about to be written: ``TaskStatusSuccessSchema``,
        ``TaskStatusCancelSchema``, or ``TaskStatusErrorSchema`` (status ``error``, or
        ``retry`` when the task will run again after a delay).
    :return: A dict whose keys, among ``task_broker`` and ``model``, replace those
        arguments; an absent or ``None`` key keeps that argument. ``None`` keeps the
        current values.
    """


@hookspec
def worker_execute_after(
    worker: Worker,
    task_func: TaskExecSchema | None,
    task_broker: TaskPrioritySchema,
    model: TaskStatusSuccessSchema | TaskStatusErrorSchema | TaskStatusCancelSchema,
) -> None:
    """A task's run is over, with ``model`` as its final state.

    Fired in the worker process, once per task run.

    :param worker: The worker that ran the task.
    :param task_func: The registered task (its function and options), or ``None`` when
        the task's name is unknown to this worker.
    :param task_broker: The claimed task message that ran.
    :param model: The task's final state: ``TaskStatusSuccessSchema``,
        ``TaskStatusCancelSchema``, or ``TaskStatusErrorSchema`` (status ``error``, or
        ``retry`` when the task will run again after a delay).
    :return: The return value is ignored.
    """
