"""Abort of running tasks in one process, on Redis and memory (across processes:
tests/integration/test_control.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from qtasks_core import QueueTasks


@pytest.mark.parametrize("kind", ["async", "async-max-time", "sync"])
def test_a_running_task_is_aborted_and_its_neighbours_go_on(app: QueueTasks, kind: str) -> None:
    @app.task(name="async")
    async def forever() -> None:
        await asyncio.sleep(60)

    @app.task(name="async-max-time", max_time=120)
    async def bounded() -> None:
        await asyncio.sleep(60)

    @app.task(name="sync", echo=True)
    def polite(ctx: Any) -> str:
        deadline = time.monotonic() + 60
        while not ctx.aborted and time.monotonic() < deadline:
            time.sleep(0.01)
        return "noticed"

    @app.task(name="neighbour")
    async def neighbour() -> str:
        await asyncio.sleep(0.5)
        return "fine"

    async def main() -> tuple[Any, Any]:
        worker = app.worker(concurrency=4, lease=0.6)
        run = asyncio.create_task(worker.run())
        victim = (await app.add_task_async(kind)).uuid
        bystander = (await app.add_task_async("neighbour")).uuid
        while (await app.get_async(victim)).status != "process":  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        assert await app.abort_async(victim, "stop") == "aborting"
        done = await app.wait_async(victim, timeout=20)
        other = await app.wait_async(bystander, timeout=20)
        worker.stop()
        await run
        return done, other

    done, other = asyncio.run(main())
    assert (done.status, done.cancel_reason) == ("cancel", "stop")
    assert (other.status, other.returning) == ("success", "fine")


def test_an_aborted_generator_closes_in_its_own_context(app: QueueTasks) -> None:
    import contextvars

    current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="")
    cleaned: list[str] = []

    @app.task(name="stream")
    def stream() -> Any:
        token = current.set("streaming")
        try:
            for i in range(600):
                time.sleep(0.1)
                yield i
        finally:
            # Its cleanup undoes what it set: in the context it set it in.
            current.reset(token)
            cleaned.append(current.get() or "reset")

    async def main() -> Any:
        worker = app.worker(concurrency=2, lease=0.6)
        run = asyncio.create_task(worker.run())
        uuid = (await app.add_task_async("stream")).uuid
        while (await app.get_async(uuid)).status != "process":  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        assert await app.abort_async(uuid, "enough") == "aborting"
        done = await app.wait_async(uuid, timeout=20)
        worker.stop()
        await run
        return done

    done = asyncio.run(main())
    assert (done.status, done.cancel_reason) == ("cancel", "enough")
    assert cleaned == ["reset"]
