"""Dramatiq: ``RedisBroker`` with the ``Results`` middleware (``RedisBackend``) and the
``AsyncIO`` middleware for the async sleep actor.

Worker: ``dramatiq dramatiq_bench --processes 1`` (Dramatiq's default is one process
per CPU and 8 threads each; the sleep workload uses ``--threads 100``, since an async
actor still holds a worker thread while it runs). Results are waited for with
``Message.get_result(block=True)`` (a blocking ``BRPOPLPUSH``). An idle Redis consumer
polls with exponential backoff up to the worker timeout (1000 ms by default), so a task
sent to an idle worker waits up to a second; the ``tuned`` variant sets
``dramatiq_worker_timeout=10`` (ms).
"""

from __future__ import annotations

import os
import sys
import time

import dramatiq
from _common import System, bump_sync, main, sleep_async, stamp_sync
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

WORKER_TIMEOUT_MS = {"default": None, "tuned": 10}

_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
broker = RedisBroker(url=_url)
broker.add_middleware(Results(backend=RedisBackend(url=_url)))
broker.add_middleware(AsyncIO())
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, max_retries=0)
def noop() -> int:
    return bump_sync()


@dramatiq.actor(max_retries=0)
async def sleep_task() -> int:
    return await sleep_async()


@dramatiq.actor(max_retries=0)
def stamp() -> int:
    return stamp_sync()


class DramatiqSystem(System):
    name = "dramatiq"
    packages = ("dramatiq", "redis")
    is_async = False
    delayed = "send_with_options(delay=) with the ms left until the shared due moment"
    notes = ("actors use max_retries=0 (no retry is ever needed here)",)

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        argv = [
            os.path.join(os.path.dirname(sys.executable), "dramatiq"),
            "dramatiq_bench",
            "--processes",
            "1",
        ]
        if concurrency is not None:
            argv += ["--threads", str(concurrency)]
        return argv

    def worker_env(self, variant: str, concurrency: int | None) -> dict[str, str]:
        timeout = WORKER_TIMEOUT_MS[variant]
        return {} if timeout is None else {"dramatiq_worker_timeout": str(timeout)}

    def describe(self, variant: str, concurrency: int | None) -> str:
        text = super().describe(variant, concurrency)
        timeout = WORKER_TIMEOUT_MS[variant]
        return text if timeout is None else f"dramatiq_worker_timeout={timeout} {text}"

    def enqueue_noop(self) -> None:
        noop.send()

    def enqueue_sleep(self) -> None:
        sleep_task.send()

    def enqueue_delayed(self, due: float) -> None:
        # Dramatiq's delay is relative, in whole ms: the ms left to the one due moment.
        stamp.send_with_options(delay=max(0, round((due - time.time()) * 1000)))

    def roundtrip(self) -> None:
        noop.send().get_result(block=True, timeout=10_000)


SYSTEM = DramatiqSystem()

if __name__ == "__main__":
    main("dramatiq_bench")
