"""An error reporter, as users of Sentry-style integrations write it: one line per
failed attempt, whatever the cause, saying whether the task will run again.

Inert until configured: it writes only when ``QTASKS_ERROR_REPORT`` names a file, so an
environment that has it installed runs every other app as if it were not.
"""

from __future__ import annotations

import json
import os
from typing import Any

from qtasks_hooks import hookimpl


class ErrorReporter:
    @hookimpl
    def worker_task_error_retry(
        self, task_broker: Any, task_func: Any, exc: BaseException, model: Any, retryable: bool
    ) -> None:
        path = os.environ.get("QTASKS_ERROR_REPORT")
        if not path:
            return
        # A plain impl runs after the built-in retry plugin (tryfirst): `model` holds
        # its decision.
        line = {
            "uuid": task_broker.uuid,
            "task": task_broker.task_name,
            "registered": task_func is not None,
            "error": type(exc).__name__,
            "retryable": retryable,
            "final": model.status == "error",
        }
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


plugin = ErrorReporter()
