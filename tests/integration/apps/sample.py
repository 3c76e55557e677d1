"""An app for process-level tests: its tasks record each execution in Redis."""

from __future__ import annotations

import asyncio
import os
import time

import redis

from qtasks_core import QueueTasks

app = QueueTasks(os.environ.get("QTASKS_TEST_APP", "sample"))

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["QTASKS_REDIS_URL"], decode_responses=True)
    return _client


def record(tag: str) -> None:
    """Count one execution of ``tag`` (what the tests read back).

    Retried while Redis is away, as a real task talking to a flaky service would be.
    """
    for _ in range(600):
        try:
            client().hincrby(f"{app.name}:executions", tag, 1)
            return
        except (redis.ConnectionError, redis.TimeoutError):
            time.sleep(0.1)
    raise RuntimeError("Redis did not come back within 60s")


@app.task
def die() -> None:
    """Kills its worker process outright, as a segfault or the OOM killer would."""
    os._exit(137)


@app.task
def noop(tag: str) -> str:
    record(tag)
    return tag


@app.task
def sleepy(tag: str, seconds: float) -> str:
    time.sleep(seconds)
    record(tag)
    return tag


@app.task
async def async_sleepy(tag: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    record(tag)
    return tag


@app.task
def pid() -> int:
    return os.getpid()


def factory() -> QueueTasks:
    return app
