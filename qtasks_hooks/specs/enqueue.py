"""Triggers of the enqueue path beyond the 52 of the reference (``broker_add_failed``),
which stay unchanged.

An enqueue fires ``qtasks_add_task_before_broker``, ``broker_add_before`` and
``storage_add`` before anything is written; when it then adds nothing, this says why, so
that an admission log or a metrics plugin sees every task that was asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtasks_hooks._markers import hookspec

if TYPE_CHECKING:
    from qtasks_core.broker import Broker
    from qtasks_core.schemas import TaskStatusNewSchema
    from qtasks_core.storage import Storage


@hookspec
def broker_add_failed(
    broker: Broker,
    storage: Storage,
    model: TaskStatusNewSchema,
    reason: str,
    error: BaseException,
    holder: str | None,
) -> None:
    """A task passed its before-enqueue triggers, then was not added.

    Fired in the producer process (or the worker whose task enqueued it), once per task
    asked for, before the error reaches the caller: in ``add_task`` and ``send_task``,
    and for each task of an ``add_tasks`` batch (a batch is written all or nothing).
    A workflow's members and a periodic tick's task report here what refused them in
    ``broker_add_before`` or ``storage_add`` (a plugin, the payload size); a failed
    write of those paths reaches their caller (``start_workflow``) or the scheduler's
    log. A ``backend error`` means the outcome is unknown to this process: a write whose
    reply was lost may have been made.

    :param broker: The broker that was to enqueue the task.
    :param storage: The storage that was to write its record.
    :param model: The task as the before-triggers left it.
    :param reason: Why, in a word: ``"unique_key held"`` (another task holds its key: the
        caller gets that task, and no error), ``"payload too large"`` (its arguments
        exceed ``max_payload``), ``"refused"`` (another bad value met at the write:
        a plugin's replacement, a value that is not JSON), ``"backend error"`` (Redis
        failed or is away) or ``"plugin"`` (a plugin raised in ``broker_add_before`` or
        ``storage_add``).
    :param error: The exception: what the caller gets, except for ``unique_key held``.
    :param holder: The uuid of the task holding the unique key, for ``unique_key held``;
        else ``None``.
    :return: The return value is ignored.
    """
