"""Concurrency and rate limits across workers, on Redis and memory (in one process;
tests/integration/test_limits.py runs them over worker processes)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from qtasks_core import QueueTasks
from qtasks_core.errors import TaskOptionError


def test_a_concurrency_limit_holds_across_workers(app: QueueTasks) -> None:
    lock = threading.Lock()
    running, most, ran = [0], [0], []

    @app.task(name="limited", concurrency_limit=2)
    async def limited(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        await asyncio.sleep(0.03)
        with lock:
            running[0] -= 1
        ran.append(i)
        return i

    @app.task(name="free")
    async def free(i: int) -> int:
        return i

    limited_ids = [app.add_task("limited", i).uuid for i in range(12)]
    free_ids = [app.add_task("free", i).uuid for i in range(6)]

    async def main() -> None:
        # Two workers of 6 slots each: without the limit, 12 would run at once.
        await asyncio.gather(*(app.worker(concurrency=6).run(burst=True) for _ in range(2)))

    asyncio.run(main())
    assert most[0] == 2
    assert sorted(ran) == list(range(12))
    for uuid in limited_ids + free_ids:
        assert app.get(uuid).status == "success"  # type: ignore[union-attr]


def test_a_rate_limit_spreads_starts_over_windows(app: QueueTasks) -> None:
    starts: list[float] = []

    @app.task(name="paced", rate_limit="5/s")
    async def paced() -> None:
        starts.append(time.time())

    uuids = [app.add_task("paced").uuid for _ in range(12)]

    async def wait_all() -> None:
        worker = app.worker(concurrency=8)
        run = asyncio.create_task(worker.run())
        for uuid in uuids:
            await app.wait_async(uuid, timeout=20)
        worker.stop()
        await run

    asyncio.run(wait_all())
    per_second: dict[int, int] = {}
    for at in starts:
        per_second[int(at)] = per_second.get(int(at), 0) + 1
    assert len(starts) == 12
    assert max(per_second.values()) <= 5, per_second
    assert len(per_second) >= 3  # 12 starts at 5 a second take three windows


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"concurrency_limit": 0}, "concurrency_limit must be a whole number >= 1"),
        ({"concurrency_limit": True}, "concurrency_limit must be"),
        ({"rate_limit": "100"}, "rate_limit must be a count per second, minute or hour"),
        ({"rate_limit": "0/s"}, "rate_limit must be"),
        ({"rate_limit": "5/d"}, "rate_limit must be"),
        ({"rate_limit": 5}, "rate_limit must be"),
    ],
)
def test_bad_limits_are_refused_at_registration(
    app: QueueTasks, options: dict[str, Any], names: str
) -> None:
    with pytest.raises(TaskOptionError, match=names):

        @app.task(name="bad", **options)
        def bad() -> None:
            return None


def test_a_cancelled_parked_task_does_not_hold_up_the_next(app: QueueTasks) -> None:
    ran: list[int] = []

    @app.task(name="one", concurrency_limit=1)
    async def one(i: int) -> int:
        await asyncio.sleep(0.05)
        ran.append(i)
        return i

    uuids = [app.add_task("one", i).uuid for i in range(4)]

    async def main() -> None:
        worker = app.worker(concurrency=4)
        run = asyncio.create_task(worker.run())
        # The first runs; the other three wait for its slot. One of them is cancelled.
        for _ in range(100):
            task = await app.get_async(uuids[0])
            if task is not None and task.status == "process":
                break
            await asyncio.sleep(0.01)
        assert await app.abort_async(uuids[1], "not needed") == "cancelled"
        for uuid in uuids:
            await app.wait_async(uuid, timeout=20)
        worker.stop()
        await run

    asyncio.run(main())
    assert sorted(ran) == [0, 2, 3]
    assert app.get(uuids[1]).status == "cancel"  # type: ignore[union-attr]
