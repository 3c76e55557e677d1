"""Triggers fired by the ``QueueTasks`` application (``qtasks_*``).

The app fires them in the producer process, the process that calls ``add_task``, ``get``,
``ping`` or ``flush_all`` (a web app, a script, or a task running inside a worker);
``qtasks_stop`` fires in every process that stops the app, the ``qtasks worker`` process
included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtasks_hooks._markers import hookspec
from qtasks_hooks._rules import replaces_keys, replaces_value

if TYPE_CHECKING:
    from qtasks_core.app import QueueTasks
    from qtasks_core.broker import Broker
    from qtasks_core.global_config import GlobalConfig
    from qtasks_core.schemas import Task
    from qtasks_core.starter import Starter


# -------------------------------------------------------------------------
# Enqueue and read
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
@replaces_keys("task_name", "priority", "args", "kw", "extra")
def qtasks_add_task_before_broker(
    qtasks: QueueTasks,
    broker: Broker,
    task_name: str,
    priority: int,
    args: tuple[Any, ...],
    kw: dict[str, Any],
    extra: dict[str, Any],
    queue: str,
    delay: float | None,
    expires: float | None,
    unique_key: str | None,
) -> dict[str, Any] | None:
    """A new task is about to be serialized and handed to the broker.

    Fired in the producer process, inside ``add_task`` (sync or async), before anything
    is written. ``queue``, ``delay``, ``expires`` and ``unique_key`` are the call's
    options, to read (an admission plugin may refuse a task by raising, which reaches
    the caller); they are arguments the reference does not have.

    :param qtasks: The application the task is added to.
    :param broker: The broker that will enqueue the task.
    :param task_name: The registered name of the task to run.
    :param priority: The task's priority, already resolved from the call or the task's
        default (a lower number runs first).
    :param args: The positional arguments the task will be called with.
    :param kw: The keyword arguments the task will be called with.
    :param extra: Extra fields stored with the task record; empty until a plugin fills it.
    :param queue: The queue the task goes to (the call's ``queue=``, else the task's).
    :param delay: Seconds until the task is due (from ``delay=`` or ``eta=``), or
        ``None`` for at once.
    :param expires: Seconds from now after which the task, not started, never runs; or
        ``None``.
    :param unique_key: The call's ``unique_key``, or ``None``.
    :return: A dict whose keys, among ``task_name``, ``priority``, ``args``, ``kw`` and
        ``extra``, replace those arguments; an absent or ``None`` key keeps that
        argument. ``None`` keeps the current values.
    """


@hookspec
def qtasks_add_task_after_broker(qtasks: QueueTasks, broker: Broker, task: Task) -> None:
    """The broker accepted a new task: its record and queue entry were written atomically.

    Fired in the producer process, inside ``add_task``, before it returns; after
    ``broker_add_after``. For a workflow's step: in the process whose call wrote it, as
    ``broker_add_after`` says.

    :param qtasks: The application the task was added to.
    :param broker: The broker that enqueued the task.
    :param task: The task as it was stored (status ``new``).
    :return: The return value is ignored.
    """


@hookspec(firstresult=True)
@replaces_value("task", shape="model_or_none")
def qtasks_get(qtasks: QueueTasks, broker: Broker, task: Task | None) -> Task | None:
    """``app.get(uuid)`` read a task and is about to return it.

    Fired in the producer process, the process that calls ``app.get``.

    :param qtasks: The application the task is read from.
    :param broker: The broker the task was read through.
    :param task: The task read, or ``None`` when no task has that uuid.
    :return: A ``Task`` that replaces the one ``app.get`` returns; ``None`` keeps the
        current value.
    """


# -------------------------------------------------------------------------
# Lifecycle and maintenance
# -------------------------------------------------------------------------


@hookspec
def qtasks_stop(qtasks: QueueTasks, starter: Starter | None) -> None:
    """The application is stopping.

    Fired in every process that stops the app: the worker process when its Starter shuts
    down, or a producer closing its connections.

    :param qtasks: The application that is stopping.
    :param starter: The Starter that runs the app, or ``None`` when the app is stopped
        without one (in a producer).
    :return: The return value is ignored.
    """


@hookspec
def qtasks_ping(qtasks: QueueTasks, global_config: GlobalConfig) -> None:
    """``app.ping()`` is about to ping the global config.

    Fired in the producer process, the process that calls ``app.ping``.

    :param qtasks: The application being pinged.
    :param global_config: The global config that is about to be pinged.
    :return: The return value is ignored.
    """


@hookspec
def qtasks_flush_all(qtasks: QueueTasks, broker: Broker) -> None:
    """``app.flush_all()`` is about to reset the queues and the storage.

    Fired in the producer process, the process that calls ``app.flush_all``.

    :param qtasks: The application whose data is reset.
    :param broker: The broker whose queues and storage are about to be reset.
    :return: The return value is ignored.
    """
