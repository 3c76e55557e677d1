"""Huey: ``RedisHuey`` and ``huey_consumer huey_bench.huey`` (one worker thread by
default; the sleep workload uses ``-w 100 -k thread`` and a plain ``time.sleep``, as
Huey tasks are synchronous).

``RedisHuey`` blocks in ``BRPOP`` for tasks, but ``Result.get(blocking=True)`` polls for
the result (from 0.05 s, growing 1.15x per miss). The ``tuned`` variant sets
``notify_result=True``, which makes the wait a ``BLPOP`` on a notification key.
"""

from __future__ import annotations

import os
import sys
import time

from _common import System, bump_sync, main, sleep_sync, stamp_sync, variant
from huey import RedisHuey

huey = RedisHuey(
    "bench",
    url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    notify_result=variant() == "tuned",
)


@huey.task()
def noop() -> int:
    return bump_sync()


@huey.task()
def sleep_task() -> int:
    return sleep_sync()


@huey.task()
def stamp() -> int:
    return stamp_sync()


class HueySystem(System):
    name = "huey"
    packages = ("huey", "redis")
    is_async = False
    delayed = "Task.schedule(delay=) with the seconds left until the shared due moment"
    memory = (
        "no TTL to set: RedisHuey keeps each result in one hash until it is read "
        "(the workload reads none)"
    )

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        argv = [os.path.join(os.path.dirname(sys.executable), "huey_consumer"), "huey_bench.huey"]
        if concurrency is not None:
            argv += ["-w", str(concurrency), "-k", "thread"]
        return argv

    def describe(self, variant: str, concurrency: int | None) -> str:
        text = super().describe(variant, concurrency)
        return f"{text} (notify_result={variant == 'tuned'})"

    def enqueue_noop(self) -> None:
        noop()

    def enqueue_sleep(self) -> None:
        sleep_task()

    def enqueue_delayed(self, due: float) -> None:
        # Huey's schedule(eta=) wants a naive datetime in its own convention; the
        # seconds left to the one due moment say the same without a time zone.
        stamp.schedule(delay=due - time.time())

    def roundtrip(self) -> None:
        noop().get(blocking=True, timeout=10)


SYSTEM = HueySystem()

if __name__ == "__main__":
    main("huey_bench")
