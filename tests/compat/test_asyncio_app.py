"""The original QTasks' async app, as its own tests use it (``await app.add_task``),
with only the import changed; and sync methods refused inside an event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import qtasks_core
from qtasks_core.asyncio import QueueTasks
from qtasks_core.errors import TaskTimeoutError
from qtasks_core.stats import Stats

T = TypeVar("T")


def with_worker(url: str, body: Callable[[QueueTasks], Awaitable[T]]) -> T:
    """Run ``body(app)`` on an async app with a worker serving in the same loop."""
    app = QueueTasks(f"compat-async-{os.getpid()}", redis_url=url, load_entry_points=False)

    @app.task
    async def test(name: str) -> str:
        return f"Hello, {name}!"

    @app.task
    async def error_zero() -> float:
        return 1 / 0

    @app.task
    async def non_ascii() -> str:
        return "Привет, мир! ✓"

    @app.task
    async def slow() -> None:
        await asyncio.sleep(5)

    async def main() -> T:
        worker = asyncio.create_task(app.serve())
        try:
            return await body(app)
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
            await app.flush_all()
            await app.stop()

    return asyncio.run(main())


@pytest.fixture(params=["redis", "memory"])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"


def test_the_originals_six_behaviours_in_async_form(url: str) -> None:
    async def body(app: QueueTasks) -> None:
        added = await app.add_task("test", "World")
        got = await app.get(added.uuid)
        assert got is not None and got.uuid == added.uuid  # get right after add
        done = await app.add_task("test", "World", timeout=10)
        assert done.status == "success" and done.returning == "Hello, World!"
        failed = await app.add_task("error_zero", timeout=10)
        assert failed.status == "error" and "ZeroDivisionError" in (failed.traceback or "")
        text = await app.add_task("non_ascii", timeout=10)
        assert text.returning == "Привет, мир! ✓"
        assert await app.get("00000000-0000-0000-0000-000000000000") is None
        # As the original: a wait that runs out returns None on the async app.
        assert await app.add_task("slow", timeout=0.1) is None
        assert await app.send_task("slow", timeout=0.1) is None
        # Where the id matters: the *_async names raise, keeping it.
        with pytest.raises(TaskTimeoutError) as timed_out:
            await app.add_task_async("slow", timeout=0.1)
        assert (await app.get(timed_out.value.uuid)) is not None

    with_worker(url, body)


def test_a_task_handles_add_task_is_awaited_on_the_async_app(url: str) -> None:
    async def body(app: QueueTasks) -> str:
        @app.task
        async def double(x: int) -> int:
            return 2 * x

        task = await double.add_task(21, timeout=10)
        assert task.returning == 42
        return "ok"

    assert with_worker(url, body) == "ok"


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("add_task", lambda app: app.add_task("anything", 1)),
        ("send_task", lambda app: app.send_task("anything", [1])),
        ("add_tasks", lambda app: app.add_tasks([("anything", (1,))])),
        ("get", lambda app: app.get("some-uuid")),
        ("wait", lambda app: app.wait("some-uuid", 1)),
        ("cancel", lambda app: app.cancel("some-uuid")),
        ("ping", lambda app: app.ping()),
        ("flush_all", lambda app: app.flush_all()),
    ],
)
def test_a_sync_method_inside_an_event_loop_is_refused_before_anything_is_written(
    url: str, method: str, call: Callable[[Any], Any]
) -> None:
    app = qtasks_core.QueueTasks(
        f"compat-sync-{os.getpid()}", redis_url=url, load_entry_points=False
    )

    async def inside_a_coroutine() -> None:
        with pytest.raises(RuntimeError, match=rf"await app\.{method}_async\(") as refused:
            call(app)
        assert "\n" not in str(refused.value)

    asyncio.run(inside_a_coroutine())
    assert Stats(app).inspect().status_counts == {}  # nothing was written
    app.flush_all()
    app.stop()
