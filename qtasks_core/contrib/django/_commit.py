"""Enqueue when the surrounding database transaction commits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction  # type: ignore[import-untyped]

from qtasks_core._util import dumps_call
from qtasks_core._validate import (
    check_args,
    check_delay,
    check_expires,
    check_kwargs,
    check_priority,
    check_queue,
    check_task_name,
)
from qtasks_core.app import QueueTasks, TaskHandle
from qtasks_core.errors import TaskOptionError

from ._app import get_app

__all__ = ["add_task_on_commit", "send_task_on_commit"]


def add_task_on_commit(task: str | TaskHandle, /, *args: Any, **kwargs: Any) -> None:
    """``app.add_task(task, *args, **kwargs)`` once the current transaction commits.

    ``task`` is a task name (enqueued on :func:`get_app`'s app) or a task handle (on
    its own app). Inside ``transaction.atomic()`` nothing is written until the
    outermost block commits, and nothing ever is if it rolls back; outside one
    (autocommit) the task is enqueued at once. Task kwargs called ``priority``,
    ``using`` or ``app`` and the call options (queue, delay...) go through
    :func:`send_task_on_commit`.

    The arguments are checked now, inside the transaction: a value JSON cannot carry
    raises :class:`~qtasks_core.TaskSerializationError` here, not at commit. They are
    sent as they are at commit (do not change them in between). A failure to enqueue
    at commit (Redis down) raises from the commit, as Django raises a callback's error:
    the transaction's rows are committed by then.
    """
    send_task_on_commit(task, args, kwargs)


def send_task_on_commit(
    task: str | TaskHandle,
    /,
    args: Iterable[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    using: str | None = None,
    app: QueueTasks | None = None,
    priority: int | None = None,
    queue: str | None = None,
    delay: float | timedelta | None = None,
    eta: datetime | None = None,
    expires: float | timedelta | datetime | None = None,
) -> None:
    """``app.send_task(...)`` once the transaction of database ``using`` (default
    ``"default"``) commits; see :func:`add_task_on_commit`.

    :param app: the app for a task given by name (default :func:`get_app`).
    :param delay: / :param eta: / :param expires: as :meth:`QueueTasks.send_task_async`;
        ``delay`` counts from the commit.

    There is no ``timeout``: the commit would wait for the task's result.
    """
    name = task.name if isinstance(task, TaskHandle) else check_task_name(task)
    call_args, call_kwargs = check_args(args, name), check_kwargs(kwargs, name)
    dumps_call(call_args, call_kwargs, name)
    options: dict[str, Any] = {}
    if priority is not None:
        options["priority"] = check_priority(priority)
    if queue is not None:
        options["queue"] = check_queue(queue)
    check_delay(delay, eta)
    if delay is not None:
        options["delay"] = delay
    if eta is not None:
        options["eta"] = eta
    if expires is not None:
        check_expires(expires)
        options["expires"] = expires
    if isinstance(task, TaskHandle):
        if app is not None:
            raise TaskOptionError(
                f"task {name!r} is a task handle, enqueued on its own app: pass its "
                "name instead to choose the app"
            )
        enqueue = partial(task.send_task, call_args, call_kwargs, **options)
    else:
        enqueue = partial((app or get_app()).send_task, name, call_args, call_kwargs, **options)
    transaction.on_commit(enqueue, using=using)
