"""Per-task timing: when a task ends, how long its last attempt waited in its queue
and how long it ran, from the record's ``enqueued_at``, ``started_at`` and
``finished_at`` (all on the Redis server's clock, so skewed machines cannot distort
them).

Inert until configured: it writes only when ``QTASKS_TIMING_LOG`` names a file.
"""

from __future__ import annotations

import json
import os
from typing import Any

from qtasks_hooks import hookimpl


class Timing:
    @hookimpl
    async def storage_status_changed(self, storage: Any, change: Any) -> None:
        path = os.environ.get("QTASKS_TIMING_LOG")
        if not path or change.status not in ("success", "error"):
            return
        task = await storage.get(change.uuid)
        if task is None or None in (task.enqueued_at, task.started_at, task.finished_at):
            return
        line = {
            "uuid": task.uuid,
            "task": task.task_name,
            "status": task.status,
            "waited": (task.started_at - task.enqueued_at).total_seconds(),
            "ran": (task.finished_at - task.started_at).total_seconds(),
        }
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


plugin = Timing()
