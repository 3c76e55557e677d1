"""Admission control: refuse a task before anything is written, by its queue or its
delay, and log every task that was asked for and not added, with the reason.

Inert until configured: ``QTASKS_CLOSED_QUEUES`` (comma-separated) and
``QTASKS_MAX_DELAY`` (seconds) set the rules, ``QTASKS_ADMISSION_LOG`` the log file.
"""

from __future__ import annotations

import json
import os
from typing import Any

from qtasks_hooks import hookimpl


class Refused(Exception):
    """A task the admission rules do not let in."""


class Admission:
    @hookimpl
    def qtasks_add_task_before_broker(
        self, task_name: str, queue: str, delay: float | None
    ) -> None:
        closed = {q for q in os.environ.get("QTASKS_CLOSED_QUEUES", "").split(",") if q}
        if queue in closed:
            raise Refused(f"queue {queue!r} is closed: {task_name!r} not accepted")
        most = os.environ.get("QTASKS_MAX_DELAY")
        if most and delay is not None and delay > float(most):
            raise Refused(f"{task_name!r} delayed {delay:g}s, over {most}s")

    @hookimpl
    def broker_add_failed(self, model: Any, reason: str, holder: str | None) -> None:
        path = os.environ.get("QTASKS_ADMISSION_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(
                    json.dumps({"task": model.task_name, "reason": reason, "holder": holder}) + "\n"
                )


plugin = Admission()
