"""Triggers fired by the task executor (``task_executor_*``), which runs one task.

All are fired in the worker process (the ``qtasks worker`` process), inside its asyncio
loop, during the run of one task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from qtasks_hooks._markers import hookspec
from qtasks_hooks._rules import replaces_pair, replaces_value

if TYPE_CHECKING:
    from qtasks_core.errors import TaskPluginTriggerError
    from qtasks_core.executor import TaskExecutor
    from qtasks_core.schemas import ArgMeta, TaskExecSchema, TaskPrioritySchema


# -------------------------------------------------------------------------
# Before the task function runs
# -------------------------------------------------------------------------


def _args_info(values: Mapping[str, Any]) -> Any:
    """``args_info`` for the arguments as replaced so far."""
    return values["task_executor"].args_info(list(values["args"]), dict(values["kw"]))


@hookspec(firstresult=True)
@replaces_pair("args", "kw", refresh=(("args_info", _args_info),))
def task_executor_args_replace(
    task_executor: TaskExecutor,
    args: list[Any],
    kw: dict[str, Any],
    args_info: list[ArgMeta],
) -> tuple[list[Any] | None, dict[str, Any] | None] | None:
    """The task function is about to be called with these arguments.

    Fired in the worker process, once per task run, before the function is called.

    :param task_executor: The executor running the task.
    :param args: The positional arguments the function will be called with.
    :param kw: The keyword arguments the function will be called with.
    :param args_info: One ``ArgMeta`` per parameter of the task function (name, position,
        annotation and the value bound to it), for plugins that convert or inject
        arguments; computed again after an earlier impl replaced ``args`` or ``kw``, so
        it describes the values this impl receives.
    :return: A 2-tuple ``(args, kw)`` that replaces both arguments; a ``None`` part keeps
        that argument. ``None`` keeps the current values.
    """


@hookspec
def task_executor_middlewares_execute(task_executor: TaskExecutor) -> None:
    """The task's ``middlewares_before`` are about to run.

    Fired in the worker process, once per task run, before the middlewares and the task
    function.

    :param task_executor: The executor running the task.
    :return: The return value is ignored.
    """


# -------------------------------------------------------------------------
# After the task function ran
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
@replaces_value("result")
def task_executor_run_task(task_executor: TaskExecutor, result: Any) -> Any | None:
    """A task function (not a generator) returned its result.

    Fired in the worker process, once per run of a task that is not a generator, before
    the result is stored.

    :param task_executor: The executor running the task.
    :param result: The value the task function returned (``None`` when it returned
        nothing).
    :return: A value that replaces the task's result; ``None`` keeps the current value.
    """


@hookspec(firstresult=True)
@replaces_value("results", shape="list")
def task_executor_run_task_gen(task_executor: TaskExecutor, results: list[Any]) -> list[Any] | None:
    """A generator task finished, and the values it yielded were collected.

    Fired in the worker process, once per run of a generator task, before the results are
    stored.

    :param task_executor: The executor running the task.
    :param results: The values the generator yielded, in order.
    :return: A list that replaces the results as a whole; ``None`` keeps the current value.
    """


@hookspec(firstresult=True)
@replaces_value("result")
def task_executor_run_task_trigger_error(
    task_executor: TaskExecutor,
    task_func: TaskExecSchema,
    task_broker: TaskPrioritySchema,
    e: TaskPluginTriggerError,
) -> Any | None:
    """The task raised ``TaskPluginTriggerError`` (through ``ctx.plugin_error``).

    Fired in the worker process, when the task function raises that error. ``result`` is
    not an argument of this trigger: what an impl returns is the task's result.

    :param task_executor: The executor running the task.
    :param task_func: The registered task: its function and its options.
    :param task_broker: The claimed task message being run.
    :param e: The error the task raised, carrying what it passed to ``ctx.plugin_error``.
    :return: A value that becomes the task's successful result, replacing the error;
        ``None`` keeps the current value, and when no impl returns a value the task ends
        with status ``error``.
    """


@hookspec(firstresult=True)
@replaces_value("result")
def task_executor_decode(task_executor: TaskExecutor, result: Any) -> Any | None:
    """The result of a task with a ``decode`` option was decoded.

    Fired in the worker process, once per run of a task with a ``decode`` option, after
    decoding.

    :param task_executor: The executor running the task.
    :param result: The decoded result.
    :return: A value that replaces the decoded result; ``None`` keeps the current value.
    """
