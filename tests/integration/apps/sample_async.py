"""The app of ``sample.py`` declared with ``qtasks_core.asyncio``: the CLI runs it too."""

from __future__ import annotations

import os

from qtasks_core.asyncio import QueueTasks

app = QueueTasks(os.environ.get("QTASKS_TEST_APP", "sample"), load_entry_points=False)


@app.task
async def echo(tag: str) -> str:
    return tag
