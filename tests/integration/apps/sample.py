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
    """Count one execution of ``tag`` (what the tests read back)."""
    client().hincrby(f"{app.name}:executions", tag, 1)


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
