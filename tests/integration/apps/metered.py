"""The app the metrics plugin's process tests run: nothing in it refers to the plugin."""

from __future__ import annotations

import os
import time

from qtasks_core import QueueTasks

app = QueueTasks(os.environ["QTASKS_TEST_APP"])


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def fail() -> None:
    raise ValueError("planned failure")


@app.task(retry=1, retry_backoff=0.1)
def flaky() -> None:
    raise ConnectionError("fails twice: one retry, then error")


@app.task
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(queue="parked")
def parked() -> None:
    """On a queue the tests' workers do not serve (-Q default): it stays queued."""
