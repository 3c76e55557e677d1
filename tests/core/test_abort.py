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
