"""The app the browser tests run: a real `qtasks web` and a real `qtasks worker` import
it, with the Redis server of the test (``QTASKS_REDIS_URL``)."""

from __future__ import annotations

import os
import time

import redis

from qtasks_core import QueueTasks

app = QueueTasks(os.environ.get("QTASKS_TEST_APP", "dash"))


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task
def boom() -> None:
    raise ValueError("a failure for the task page")


@app.task
def crash_once(key: str) -> str:
    """Kills its worker on its first two deliveries (as the OOM killer would), then
    succeeds: the first death makes it a suspect, the second, while it ran alone, is
    its own, and with ``--max-attempts 1`` the next worker sets it aside."""
    client = redis.Redis.from_url(os.environ["QTASKS_REDIS_URL"])
    if client.incr(key) <= 2:
        os._exit(137)
    return "survived"


@app.task(retry=2, retry_backoff=0.1, retry_jitter=False)
def flaky(key: str) -> str:
    """Refused on its first two attempts, then succeeds: three rows in its attempts."""
    client = redis.Redis.from_url(os.environ["QTASKS_REDIS_URL"])
    attempt = client.incr(key)
    if attempt <= 2:
        raise ConnectionError(f"attempt {attempt}: the service refused")
    return "through"
