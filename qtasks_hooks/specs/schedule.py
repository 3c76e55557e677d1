"""Triggers fired by the scheduler of periodic tasks (``schedule_*``): an extension
beyond the 52 triggers of the reference, which stay unchanged.

Every worker runs a scheduler (``qtasks_core.schedules.Scheduler``); these fire in the
worker process whose scheduler did the step. A tick's task itself goes through the
ordinary enqueue triggers (``qtasks_add_task_before_broker`` …) like any other task.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from qtasks_hooks._markers import hookspec

if TYPE_CHECKING:
    from qtasks_core.schedules import Schedule, Scheduler


@hookspec
def schedule_fired(scheduler: Scheduler, schedule: Schedule, tick: datetime, uuid: str) -> None:
    """A tick's task was enqueued: fired once per tick, by the one scheduler that
    moved the schedule's cursor (however many race for it).

    Fired in the worker process whose scheduler enqueued the task.

    :param scheduler: The scheduler that enqueued it.
    :param schedule: The schedule (name, task, cron or interval, options).
    :param tick: The tick it was enqueued for, in the schedule's time zone.
    :param uuid: The task's uuid (``periodic:<name>:<tick ms>``).
    :return: The return value is ignored.
    """


@hookspec
def schedule_missed(
    scheduler: Scheduler, schedule: Schedule, missed: list[datetime], fired: datetime | None
) -> None:
    """Ticks fell while no scheduler ran; the schedule's ``missed`` policy chose which
    of them runs (``fired``), the others are skipped.

    Fired in the worker process whose scheduler caught up, before the tick's task (if
    any) is enqueued; a scheduler that loses the race to another fires it too.

    :param scheduler: The scheduler catching up.
    :param schedule: The schedule that missed ticks.
    :param missed: Every tick that is past due, oldest first (at most 1,000).
    :param fired: The one of them that runs now (``None``: none does; under
        ``missed="each"`` each runs in turn and this is the oldest).
    :return: The return value is ignored.
    """
