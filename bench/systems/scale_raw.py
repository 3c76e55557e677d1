"""The scale curves of the raw LPUSH/BRPOP loop (see ``scale_common`` and ``raw_bench``).

Backlog: the single enqueue's JSON messages, one ``LPUSH`` each, pipelined 1,000 at a
time (its batch path). The queue is one list, FIFO: a probe would wait behind the whole
backlog, so round trips go to a second list, ``raw:probe``, served by a loop of its own
(``scale_raw.py probe-worker``) while the backlog sits in ``raw:queue``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import sys
import uuid

from _common import REPLY_PREFIX
from raw_bench import RawSystem, run_message
from redis.asyncio import Redis
from scale_common import ScaleSystem, main

PROBE_QUEUE = "raw:probe"


async def consume_probe() -> None:
    """``raw_bench``'s consumer loop, one task at a time, on the probe list."""
    client = Redis.from_url(os.environ["BENCH_REDIS_URL"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        item = await client.brpop([PROBE_QUEUE], timeout=1)
        if item is not None:
            await run_message(client, item[1])
    await client.aclose()


class ScaleRaw(RawSystem, ScaleSystem):
    prefill_how = "LPUSH per task, pipelined 1,000 at a time (the batch path)"
    probe_how = "one list, FIFO: round trips on a second list (raw:probe) with a loop of its own"

    async def prefill(self, n: int) -> None:
        await self.enqueue_noop_batch(n)

    def probe_worker_argv(self) -> list[str]:
        return [sys.executable, "scale_raw.py", "probe-worker"]

    async def probe_roundtrip(self) -> None:
        task_id = uuid.uuid4().hex
        reply = REPLY_PREFIX + task_id
        message = json.dumps({"task": "noop", "id": task_id, "reply": reply})
        await self.client.lpush(PROBE_QUEUE, message)
        if await self.client.blpop([reply], timeout=10) is None:
            raise RuntimeError("no reply in 10s")


SYSTEM = ScaleRaw()

if __name__ == "__main__":
    if sys.argv[1:2] == ["probe-worker"]:
        asyncio.run(consume_probe())
    else:
        main(importlib.import_module("scale_raw").SYSTEM, {})
