"""An app that declares nothing itself and runs a library's ``shared_task``.

Run only in processes of its own: importing it adds the task to every app of the
process."""

from __future__ import annotations

import os

from qtasks_core import QueueTasks, shared_task

app = QueueTasks(os.environ.get("QTASKS_TEST_APP", "shared"), load_entry_points=False)


@shared_task
def from_a_library(tag: str) -> str:
    return tag
