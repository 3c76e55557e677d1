"""SAQ (Redis queue): ``saq saq_bench.settings`` (one worker process, ``concurrency``
10 by default).

SAQ's worker blocks in ``BLMOVE`` for jobs. ``Queue.apply`` (enqueue and wait) polls the
job every ``poll_interval`` (0.5 s by default; it also sleeps once more after the job is
done, so a round trip takes about 1 s). The ``tuned`` variant waits with
``Job.refresh(until_complete=...)``, which listens on SAQ's pub/sub channel instead;
the driver keeps one listener open from its first round trip on, because SAQ drops its pattern
subscription when the last listener leaves, and a job that finishes before the next
re-subscription is never heard of (the wait then times out).
The worker runs timers (abort and schedule every 1 s, worker info every 10 s) when idle.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from _common import (
    System,
    bump_async,
    concurrency,
    main,
    result_ttl,
    sleep_async,
    stamp_async,
)
from saq import Queue

_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
queue = Queue.from_url(_url)


async def noop(ctx: dict[str, Any]) -> int:
    return await bump_async()


async def sleep_task(ctx: dict[str, Any]) -> int:
    return await sleep_async()


async def stamp(ctx: dict[str, Any]) -> int:
    return await stamp_async()


settings: dict[str, Any] = {
    "queue": queue,
    "functions": [noop, sleep_task, stamp],
    "concurrency": concurrency() or 10,
}


class SaqSystem(System):
    name = "saq"
    packages = ("saq", "redis")
    is_async = True
    delayed = "enqueue(scheduled=) with the shared due moment in epoch seconds"
    memory = "enqueue(ttl=) (a job's ttl: how long its record and result are kept)"

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        return [os.path.join(os.path.dirname(sys.executable), "saq"), "saq_bench.settings"]

    def describe(self, variant: str, concurrency: int | None) -> str:
        wait = "Job.refresh(until_complete) on pub/sub" if variant == "tuned" else "Queue.apply"
        return f"saq saq_bench.settings (concurrency={concurrency or 10}; wait: {wait})"

    async def open(self, variant: str) -> None:
        self.tuned = variant == "tuned"
        self.keepalive: asyncio.Future[None] | None = None
        await queue.connect()

    async def close(self) -> None:
        if self.keepalive is not None:
            self.keepalive.cancel()
            await asyncio.gather(self.keepalive, return_exceptions=True)
        await queue.disconnect()

    async def enqueue_noop(self) -> None:
        await queue.enqueue("noop")

    async def enqueue_sleep(self) -> None:
        await queue.enqueue("sleep_task")

    async def enqueue_memory(self) -> None:
        await queue.enqueue("noop", ttl=round(result_ttl() or 600))

    async def enqueue_delayed(self, due: float) -> None:
        # Typed int, but it is only ever a sorted-set score compared with time.time():
        # a float keeps the due moment exact instead of rounding it to a second.
        await queue.enqueue("stamp", scheduled=due)  # type: ignore[arg-type]

    async def roundtrip(self) -> None:
        if not self.tuned:
            await queue.apply("noop", timeout=10)
            return
        if self.keepalive is None:
            # Started by the first round trip, so the other workloads run without it.
            self.keepalive = asyncio.ensure_future(
                queue.listen(["bench-keepalive"], lambda _key, _status: False, timeout=None)
            )
            await asyncio.sleep(0.1)
        job = await queue.enqueue("noop")
        assert job is not None
        await job.refresh(until_complete=10)
        if job.status != "complete":
            raise RuntimeError(f"job ended {job.status}")


SYSTEM = SaqSystem()

if __name__ == "__main__":
    main("saq_bench")
