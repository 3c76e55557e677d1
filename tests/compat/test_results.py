"""The original's result waiters, as its docs write them:
``SyncResult(uuid=task.uuid).result(timeout=50)`` and the async twin."""

from __future__ import annotations

import asyncio
import time

import pytest

from qtasks_core import QueueTasks, TaskOptionError
from qtasks_core.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_core.results import AsyncResult, SyncResult


def make_app(url: str) -> QueueTasks:
    app = QueueTasks(name="compat-results", redis_url=url, load_entry_points=False)

    @app.task(name="test")
    def sample(delay: float) -> str:
        time.sleep(delay)
        return "ok"

    return app


def test_sync_result_waits_for_the_task_and_returns_none_on_timeout(redis_url: str) -> None:
    app = make_app(redis_url)
    with app.running_worker():
        task = app.add_task("test", 0.5)
        assert SyncResult(uuid=task.uuid).result(timeout=0.05) is None  # app created last
        done = SyncResult(uuid=task.uuid, app=app).result(timeout=10)
    assert done is not None and done.returning == "ok"
    app.stop()


@pytest.mark.asyncio
async def test_async_result_on_the_async_app(redis_url: str) -> None:
    app = AsyncQueueTasks(name="compat-results-async", redis_url=redis_url)

    @app.task(name="test")
    async def sample() -> str:
        await asyncio.sleep(0.3)
        return "ok"

    with app.running_worker():
        task = await app.add_task("test")
        waiter = AsyncResult(uuid=task.uuid, app=app)
        assert await waiter.result(timeout=0.05) is None
        assert (await waiter.result(timeout=10)).returning == "ok"
    await app.stop()


def test_bad_input_is_refused_saying_what_to_write() -> None:
    app = QueueTasks(name="compat-results-bad", redis_url="memory://")
    with pytest.raises(TaskOptionError, match=r"SyncResult\(uuid=task.uuid\)"):
        SyncResult(app=app)
    with pytest.raises(TaskOptionError, match=r"logging\.Logger"):
        SyncResult(uuid="x", app=app, log=print)  # type: ignore[arg-type]
    with pytest.raises(TaskOptionError, match=r"await AsyncResult\("):
        SyncResult(uuid="x", app=AsyncQueueTasks(name="compat-results-bad", redis_url="memory://"))


@pytest.mark.asyncio
async def test_sync_result_in_async_code_names_the_async_twin() -> None:
    app = QueueTasks(name="compat-results-loop", redis_url="memory://")
    with pytest.raises(RuntimeError, match=r"await AsyncResult\("):
        SyncResult(uuid="x", app=app).result(timeout=1)
