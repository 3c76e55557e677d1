"""Celery with Redis as broker and result backend.

Worker: ``celery -A celery_bench worker -c 1`` (Celery's defaults otherwise: the
prefork pool, so a main process plus one child; gossip, mingle and heartbeats on;
``-c`` defaults to the number of CPUs). The sleep workload uses ``-P threads -c 100``
and a plain ``time.sleep`` (Celery tasks are synchronous). Results are waited for with
``AsyncResult.get()``, which listens on Redis pub/sub. With a Redis result backend,
``delay()`` also subscribes the producer to the task's result channel (Celery's
default): that cost is part of its enqueue rate.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

from _common import System, bump_sync, main, sleep_sync, stamp_sync
from celery import Celery

_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("celery_bench", broker=_url, backend=_url)
app.conf.broker_connection_retry_on_startup = True


@app.task(name="noop")
def noop() -> int:
    return bump_sync()


@app.task(name="sleep_task")
def sleep_task() -> int:
    return sleep_sync()


@app.task(name="stamp")
def stamp() -> int:
    return stamp_sync()


class CelerySystem(System):
    name = "celery"
    packages = ("celery", "kombu", "redis")
    is_async = False
    delayed = "apply_async(eta=) with one shared timezone-aware datetime"

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        argv = [os.path.join(os.path.dirname(sys.executable), "celery"), "-A", "celery_bench"]
        argv.append("worker")
        if concurrency is None:
            return [*argv, "-c", "1"]
        return [*argv, "-P", "threads", "-c", str(concurrency)]

    def enqueue_noop(self) -> None:
        noop.delay()

    def enqueue_sleep(self) -> None:
        sleep_task.delay()

    def enqueue_delayed(self, due: float) -> None:
        stamp.apply_async(eta=datetime.fromtimestamp(due, UTC))

    def roundtrip(self) -> None:
        noop.delay().get(timeout=10)


SYSTEM = CelerySystem()

if __name__ == "__main__":
    main("celery_bench")
