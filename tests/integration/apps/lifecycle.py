"""An app whose tasks succeed or fail on demand: the command line's view of a task's
life (get, retry, cancel)."""

from __future__ import annotations

import asyncio
import datetime
import os

from qtasks_core import QueueTasks

app = QueueTasks(os.environ.get("QTASKS_TEST_APP", "lifecycle"), load_entry_points=False)


@app.task
def succeeds(value: object) -> object:
    return value


@app.task
def fails(tag: str) -> None:
    raise ValueError(f"bad input {tag}")


@app.task
def also_fails(tag: str) -> None:
    raise RuntimeError(f"broken {tag}")


@app.task
async def lingers(seconds: float) -> None:
    await asyncio.sleep(seconds)


@app.task
def typed(count: int, label: str, when: datetime.datetime, *rest: object) -> list[object]:
    return [count, label, when.isoformat(), *rest]


def make() -> QueueTasks:
    """A factory that fails, as one missing its settings would."""
    raise TypeError("make() needs a settings object")
