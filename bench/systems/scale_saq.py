"""The scale curves of SAQ (see ``scale_common`` and ``saq_bench``).

Backlog: SAQ has no batch enqueue (``Queue.map`` gathers single enqueues and waits for
results), so a redis-py pipeline writes what its enqueue script writes for a job due
now: ``SET`` the serialized job, ``ZADD`` it to ``incomplete`` (score 0), ``RPUSH`` its
id onto ``queued``; 10,000 jobs per pipeline. The queue is a list, FIFO: a probe would
wait behind the backlog, so round trips go to a second queue (``probe``) with a worker of
its own, waited for with ``Job.refresh(until_complete=)`` on SAQ's pub/sub (the tuned
row's wait: ``Queue.apply`` polls every 0.5 s, which would hide the queue's own cost).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from typing import Any

from saq import Job, Queue
from saq.job import Status
from saq.utils import now
from saq_bench import SaqSystem, noop, queue
from scale_common import ScaleSystem, main

PIPELINE = 10_000

probe_queue = Queue.from_url(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), name="probe"
)
probe_settings: dict[str, Any] = {"queue": probe_queue, "functions": [noop], "concurrency": 10}


class ScaleSaq(SaqSystem, ScaleSystem):
    prefill_how = (
        "no batch enqueue: a redis-py pipeline of what its enqueue script writes "
        f"(SET job, ZADD incomplete, RPUSH queued), {PIPELINE:,} jobs per pipeline"
    )
    probe_how = (
        "one list, FIFO: round trips on a second queue ('probe') with a worker of its own, "
        "waited for with Job.refresh(until_complete=) on pub/sub"
    )

    async def open(self, variant: str) -> None:
        await super().open(variant)
        await probe_queue.connect()
        self.probe_keepalive: asyncio.Future[None] | None = None

    async def close(self) -> None:
        if self.probe_keepalive is not None:
            self.probe_keepalive.cancel()
            await asyncio.gather(self.probe_keepalive, return_exceptions=True)
        await probe_queue.disconnect()
        await super().close()

    async def prefill(self, n: int) -> None:
        incomplete, queued = queue.namespace("incomplete"), queue.namespace("queued")
        for start in range(0, n, PIPELINE):
            pipe = queue.redis.pipeline(transaction=False)
            for _ in range(min(PIPELINE, n - start)):
                job = Job(function="noop", queue=queue, queued=now(), status=Status.QUEUED)
                pipe.set(job.id, queue.serialize(job))
                pipe.zadd(incomplete, {job.id: 0})
                pipe.rpush(queued, job.id)
            await pipe.execute()

    def probe_worker_argv(self) -> list[str]:
        return [os.path.join(os.path.dirname(sys.executable), "saq"), "scale_saq.probe_settings"]

    async def probe_roundtrip(self) -> None:
        if self.probe_keepalive is None:
            # As saq_bench's tuned wait: one listener kept open, so SAQ keeps its pattern
            # subscription between round trips.
            self.probe_keepalive = asyncio.ensure_future(
                probe_queue.listen(["bench-keepalive"], lambda _key, _status: False, timeout=None)
            )
            await asyncio.sleep(0.1)
        job = await probe_queue.enqueue("noop")
        assert job is not None
        await job.refresh(until_complete=10)
        if job.status != "complete":
            raise RuntimeError(f"job ended {job.status}")


SYSTEM = ScaleSaq()

if __name__ == "__main__":
    main(importlib.import_module("scale_saq").SYSTEM, {})
