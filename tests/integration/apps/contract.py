"""The app the contract plugins' process tests run (tests/plugins/): its tasks read
what the plugins carry, and nothing in it registers a plugin."""

from __future__ import annotations

import os
from collections.abc import Iterator

from qtasks_core import QueueTasks

app = QueueTasks(os.environ["QTASKS_TEST_APP"], events=True)


def _request_id() -> str | None:
    from qtasks_request_id import current  # installed beside QTasks, found by entry point

    return current()


@app.task
def plain_with_child() -> dict[str, str | None]:
    """A plain task: what it sees, and what the task it enqueues sees."""
    child = app.add_task("async_leaf", timeout=20)
    return {"task": _request_id(), "child": child.returning}


@app.task
async def async_leaf() -> str | None:
    return _request_id()


@app.task
def generator() -> Iterator[str | None]:
    yield _request_id()
    yield _request_id()


@app.task(retry=1, retry_backoff=0.1)
def flaky() -> None:
    raise ConnectionError("down: one retry, then error")


@app.task
def big(n: int) -> list[int]:
    return list(range(n))


@app.task
async def nap(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


@app.task
def secret_echo(text: str, n: int = 1) -> dict[str, object]:
    return {"text": text, "n": n}
