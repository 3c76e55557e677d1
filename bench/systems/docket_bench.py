"""docket (PyPI ``pydocket``): ``docket worker --docket bench --tasks docket_bench:tasks``
(one worker process; ``--concurrency`` 10 by default).

Tasks due now go straight onto a Redis stream that the worker reads with
``XREADGROUP ... BLOCK`` for ``--minimum-check-interval`` (100 ms), so a task sent to
an idle worker starts at once and the interval only sets how often the idle worker
asks again. ``Execution.get_result()`` waits on the task's pub/sub channel. Tasks due
later wait in a sorted set that a scheduler loop moves to the stream every
``--scheduling-resolution`` (250 ms by default), which bounds how late a deferred task
starts: the ``tuned`` variant sets it to 10 ms and runs only the delayed and idle
workloads. The CLI's duration parser takes whole seconds, so the tuned worker is
``python docket_bench.py worker``: the same ``Worker.run`` the ``docket worker``
command calls, with the same defaults but that one. The batch workload is one
``Docket.add_many`` call (pipelined, 1,000 schedules per round trip by default).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime, timedelta

from _common import (
    System,
    bump_async,
    hold_open,
    main,
    redis_url,
    sleep_async,
    stamp_async,
    variant,
)
from docket import Docket, Worker

NAME = "bench"
#: The scheduler loop's interval, by variant (docket's default: 250 ms).
RESOLUTION_MS = {"default": 250, "tuned": 10}

docket = Docket(name=NAME, url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


async def noop() -> int:
    return await bump_async()


async def sleep_task() -> int:
    return await sleep_async()


async def stamp() -> int:
    return await stamp_async()


tasks = [noop, sleep_task, stamp]


class DocketSystem(System):
    name = "docket"
    packages = ("pydocket", "redis")
    is_async = True
    batch = "one Docket.add_many call of N tasks (pipelined, 1,000 per round trip)"
    delayed = "add(when=) with one shared timezone-aware datetime"

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        if variant == "tuned":
            return [sys.executable, "docket_bench.py", "worker"]
        argv = [os.path.join(os.path.dirname(sys.executable), "docket"), "worker"]
        argv += ["--docket", NAME, "--tasks", "docket_bench:tasks", "--url", redis_url()]
        if concurrency is not None:
            argv += ["--concurrency", str(concurrency)]
        return argv

    def describe(self, variant: str, concurrency: int | None) -> str:
        text = super().describe(variant, concurrency)
        resolution = RESOLUTION_MS[variant]
        if variant == "tuned":
            text = f"{text}: Worker.run(..., scheduling_resolution={resolution} ms)"
        return f"{text} (concurrency={concurrency or 10}, scheduling resolution {resolution} ms)"

    def run_worker(self, concurrency: int | None) -> None:
        # The tuned variant only: what `docket worker` runs, its logging included.
        logging.basicConfig(level=logging.INFO)
        asyncio.run(
            Worker.run(
                docket_name=NAME,
                url=redis_url(),
                concurrency=concurrency or 10,
                scheduling_resolution=timedelta(milliseconds=RESOLUTION_MS[variant()]),
                tasks=["docket_bench:tasks"],
            )
        )

    async def open(self, variant: str) -> None:
        self.leave = await hold_open(docket)

    async def close(self) -> None:
        await self.leave()

    async def enqueue_noop(self) -> None:
        await docket.add(noop)()

    async def enqueue_noop_batch(self, n: int) -> None:
        await docket.add_many([docket.call(noop)() for _ in range(n)])

    async def enqueue_sleep(self) -> None:
        await docket.add(sleep_task)()

    async def enqueue_delayed(self, due: float) -> None:
        await docket.add(stamp, when=datetime.fromtimestamp(due, UTC))()

    async def roundtrip(self) -> None:
        execution = await docket.add(noop)()
        await execution.get_result(timeout=timedelta(seconds=10))


SYSTEM = DocketSystem()

if __name__ == "__main__":
    main("docket_bench")
