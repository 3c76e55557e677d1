"""The floor: a hand-written LPUSH/BRPOP loop on redis-py asyncio.

Producer: one ``LPUSH`` of a small JSON message per task; the batch workload sends the
same messages, one ``LPUSH`` each, in pipelines of 1,000 (no MULTI/EXEC). Consumer (one process,
``python raw_bench.py worker``): ``BRPOP``, run the task, repeat; with a concurrency
above 1 (the sleep workload) each message becomes an asyncio task under a semaphore.
No acknowledgement, no lease, no result record: the least a Redis queue can do. The
latency workload's task pushes to a per-task reply list that the producer BLPOPs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid

from _common import REPLY_PREFIX, System, bump_async, main, sleep_async
from redis.asyncio import Redis

QUEUE = "raw:queue"
PIPELINE = 1000


def message(task: str) -> str:
    return json.dumps({"task": task, "id": uuid.uuid4().hex})


async def run_message(client: Redis, raw: bytes) -> None:
    message = json.loads(raw)
    result = await (sleep_async() if message["task"] == "sleep" else bump_async())
    reply = message.get("reply")
    if reply:
        await client.rpush(reply, result)


async def consume(concurrency: int) -> None:
    client = Redis.from_url(os.environ["BENCH_REDIS_URL"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    async def guarded(raw: bytes) -> None:
        try:
            await run_message(client, raw)
        finally:
            slots.release()

    while not stop.is_set():
        item = await client.brpop([QUEUE], timeout=1)
        if item is None:
            continue
        if concurrency == 1:
            await run_message(client, item[1])
            continue
        await slots.acquire()
        task = asyncio.create_task(guarded(item[1]))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    await client.aclose()


class RawSystem(System):
    name = "raw"
    packages = ("redis",)
    is_async = True
    batch = f"LPUSH per task, pipelined {PIPELINE:,} at a time (transaction=False)"
    memory = "no TTL to set: the loop keeps no record of a task"
    notes = (
        "consumer: BRPOP then run, one task at a time (sleep workload: 100 at a time)",
        f"batch: the single-enqueue LPUSHes, pipelined {PIPELINE:,} at a time",
    )

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        return [sys.executable, "raw_bench.py", "worker"]

    def describe(self, variant: str, concurrency: int | None) -> str:
        return f"raw_bench.py worker (BRPOP loop, concurrency {concurrency or 1})"

    def run_worker(self, concurrency: int | None) -> None:
        asyncio.run(consume(concurrency or 1))

    async def open(self, variant: str) -> None:
        self.client = Redis.from_url(os.environ["BENCH_REDIS_URL"])

    async def close(self) -> None:
        await self.client.aclose()

    async def enqueue_noop(self) -> None:
        await self.client.lpush(QUEUE, message("noop"))

    async def enqueue_noop_batch(self, n: int) -> None:
        for start in range(0, n, PIPELINE):
            pipe = self.client.pipeline(transaction=False)
            for _ in range(min(PIPELINE, n - start)):
                pipe.lpush(QUEUE, message("noop"))
            await pipe.execute()

    async def enqueue_sleep(self) -> None:
        await self.client.lpush(QUEUE, message("sleep"))

    async def roundtrip(self) -> None:
        task_id = uuid.uuid4().hex
        reply = REPLY_PREFIX + task_id
        await self.client.lpush(QUEUE, json.dumps({"task": "noop", "id": task_id, "reply": reply}))
        if await self.client.blpop([reply], timeout=10) is None:
            raise RuntimeError("no reply in 10s")


SYSTEM = RawSystem()

if __name__ == "__main__":
    main("raw_bench")
