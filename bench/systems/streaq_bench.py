"""streaQ: ``streaq run streaq_bench:worker`` (one worker process; ``concurrency`` 16
by default), on coredis and anyio.

Tasks go onto a Redis stream that the worker reads with a blocking ``XREADGROUP`` (the
block is the worker's ``idle_timeout``, 60 s), so a task sent to an idle worker starts
at once. ``Task.result()`` waits on the task's pub/sub channel, not by polling. Delayed
tasks wait in a sorted set that the worker moves to the stream in a loop every 0.5 s:
that interval is fixed in streaQ's code, not a setting, so there is no tuned row (it
bounds the delayed workload's lateness at about 0.5 s). The batch workload is one
``Worker.enqueue_many`` call (one pipeline of the publish script, one call per task).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

from _common import (
    System,
    bump_async,
    concurrency,
    hold_open,
    main,
    sleep_async,
    stamp_async,
)
from streaq import Worker

worker = Worker(
    redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    concurrency=concurrency() or 16,
)


@worker.task()
async def noop() -> int:
    return await bump_async()


@worker.task()
async def sleep_task() -> int:
    return await sleep_async()


@worker.task()
async def stamp() -> int:
    return await stamp_async()


class StreaqSystem(System):
    name = "streaq"
    packages = ("streaq", "coredis", "anyio", "redis")
    is_async = True
    batch = "one Worker.enqueue_many call of N tasks (one pipeline)"
    delayed = "enqueue().start(schedule=) with one shared timezone-aware datetime"

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        return [
            os.path.join(os.path.dirname(sys.executable), "streaq"),
            "run",
            "streaq_bench:worker",
        ]

    def describe(self, variant: str, concurrency: int | None) -> str:
        return f"streaq run streaq_bench:worker (concurrency={concurrency or 16})"

    async def open(self, variant: str) -> None:
        self.leave = await hold_open(worker)

    async def close(self) -> None:
        await self.leave()

    async def enqueue_noop(self) -> None:
        await noop.enqueue()

    async def enqueue_noop_batch(self, n: int) -> None:
        await worker.enqueue_many([noop.enqueue() for _ in range(n)])

    async def enqueue_sleep(self) -> None:
        await sleep_task.enqueue()

    async def enqueue_delayed(self, due: float) -> None:
        await stamp.enqueue().start(schedule=datetime.fromtimestamp(due, UTC))

    async def roundtrip(self) -> None:
        task = await noop.enqueue()
        result = await task.result(timeout=10)
        if not result.success:
            raise RuntimeError(f"task failed: {result}")


SYSTEM = StreaqSystem()

if __name__ == "__main__":
    main("streaq_bench")
