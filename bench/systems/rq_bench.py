"""RQ: ``rq worker --url URL default`` (one worker process; RQ's default ``Worker``
forks a work horse for every job).

Results are waited for with ``Job.latest_result(timeout=...)`` (a blocking ``XREAD`` on
the job's result stream). An RQ worker runs one job at a time, so the sleep workload's
concurrency of 100 would need 100 worker processes, which do not fit this 2-core
machine: it is not run for RQ.
"""

from __future__ import annotations

import os
import sys

from _common import System, bump_sync, main, sleep_sync
from redis import Redis
from rq import Queue

_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
queue = Queue("default", connection=Redis.from_url(_url))


def noop() -> int:
    return bump_sync()


def sleep_task() -> int:
    return sleep_sync()


class RqSystem(System):
    name = "rq"
    packages = ("rq", "redis")
    is_async = False
    sleep_concurrency = None
    notes = (
        "sleep workload not run: one job at a time per RQ worker process "
        "(concurrency 100 would need 100 processes on 2 cores)",
    )

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        rq = os.path.join(os.path.dirname(sys.executable), "rq")
        return [rq, "worker", "--url", os.environ["BENCH_REDIS_URL"], "default"]

    def describe(self, variant: str, concurrency: int | None) -> str:
        return "rq worker --url URL default"

    def enqueue_noop(self) -> None:
        queue.enqueue(noop)

    def enqueue_sleep(self) -> None:
        queue.enqueue(sleep_task)

    def roundtrip(self) -> None:
        job = queue.enqueue(noop)
        if job.latest_result(timeout=10) is None:
            raise RuntimeError("no result in 10s")


SYSTEM = RqSystem()

if __name__ == "__main__":
    main("rq_bench")
