"""BullMQ (PyPI ``bullmq``, the Python port of BullMQ: every queue operation is a Lua
script on Redis). It has no worker CLI of its own, so the worker is ``python
bullmq_bench.py worker``: one process running one ``bullmq.Worker`` on the queue with
its defaults (concurrency 1; the sleep workload passes ``concurrency`` 100) until
SIGTERM, when it calls ``Worker.close()``.

The worker blocks in ``BZPOPMIN`` on the queue's marker key: a task sent to an idle
worker wakes it at once, and a delayed job's marker carries its due moment, so the
worker blocks until then (at most 10 s at a time) instead of polling. The result is
waited for on the queue's event stream (``QueueEvents``, a blocking ``XREAD``), opened
by the first round trip so that the other workloads run without it. Nothing polls, so
there is no tuned row. Completed jobs are kept (``removeOnComplete`` is off by
default). The batch workload is one ``Queue.addBulk`` call.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

from _common import System, bump_async, main, redis_url, sleep_async, stamp_async
from bullmq import Queue, QueueEvents, Worker

QUEUE = "bench"
BODIES = {"noop": bump_async, "sleep_task": sleep_async, "stamp": stamp_async}


async def process(job: Any, token: str) -> int:
    return await BODIES[job.name]()


async def consume(concurrency: int | None) -> None:
    opts: dict[str, Any] = {"connection": redis_url()}
    if concurrency is not None:
        opts["concurrency"] = concurrency
    worker = Worker(QUEUE, process, opts)  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await worker.close()


class BullmqSystem(System):
    name = "bullmq"
    packages = ("bullmq", "redis")
    is_async = True
    batch = "one Queue.addBulk call of N jobs"
    delayed = "Queue.add(opts={'delay': ms}) with the ms left until the shared due moment"

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        return [sys.executable, "bullmq_bench.py", "worker"]

    def describe(self, variant: str, concurrency: int | None) -> str:
        setting = f"concurrency {concurrency}" if concurrency else "defaults: concurrency 1"
        return f"bullmq_bench.py worker (one bullmq.Worker, {setting})"

    def run_worker(self, concurrency: int | None) -> None:
        asyncio.run(consume(concurrency))

    async def open(self, variant: str) -> None:
        self.queue = Queue(QUEUE, {"connection": redis_url()})
        self.events: QueueEvents | None = None
        #: Jobs completed and not yet waited for, and the waits under way, by job id.
        self.completed: set[str] = set()
        self.waiting: dict[str, asyncio.Future[None]] = {}

    async def close(self) -> None:
        if self.events is not None:
            await self.events.close()
        await self.queue.close()

    def on_completed(self, args: dict[str, Any], _entry_id: str) -> None:
        job_id = args["jobId"]
        future = self.waiting.pop(job_id, None)
        if future is None:
            self.completed.add(job_id)  # before its wait began
        elif not future.done():
            future.set_result(None)

    async def enqueue_noop(self) -> None:
        await self.queue.add("noop", {})

    async def enqueue_noop_batch(self, n: int) -> None:
        await self.queue.addBulk([{"name": "noop", "data": {}} for _ in range(n)])

    async def enqueue_sleep(self) -> None:
        await self.queue.add("sleep_task", {})

    async def enqueue_delayed(self, due: float) -> None:
        delay = max(0, round((due - time.time()) * 1000))
        await self.queue.add("stamp", {}, {"delay": delay})

    async def roundtrip(self) -> None:
        if self.events is None:
            self.events = QueueEvents(QUEUE, {"connection": redis_url()})
            self.events.on("completed", self.on_completed)
            # Its XREAD starts at the stream's end ("$"): let it be issued first.
            await asyncio.sleep(0.1)
        job = await self.queue.add("noop", {})
        if job.id in self.completed:
            self.completed.discard(job.id)
            return
        future = self.waiting[job.id] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(future, 10)
        finally:
            self.waiting.pop(job.id, None)


SYSTEM = BullmqSystem()

if __name__ == "__main__":
    main("bullmq_bench")
