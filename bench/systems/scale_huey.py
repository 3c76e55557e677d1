"""The scale curves of Huey (see ``scale_common`` and ``huey_bench``).

Backlog: Huey has no batch enqueue, so a redis-py pipeline writes what ``enqueue``
writes: ``huey.serialize_task(noop.s())`` LPUSHed onto the queue's list, 10,000 per
pipeline. ``RedisHuey``'s queue is one list, FIFO (priorities need its
``PriorityRedisHuey``): a probe would wait behind the backlog, so round trips go to a
second ``RedisHuey`` (``bench-probe``, its own list) with a consumer of its own, waited
for with ``notify_result=True`` (a ``BLPOP``, the tuned row's wait: the default polls
from 50 ms, which would hide the queue's own cost).
"""

from __future__ import annotations

import importlib
import os
import sys

from _common import bump_sync
from huey import RedisHuey
from huey_bench import HueySystem, huey, noop
from scale_common import ScaleSystem, main

PIPELINE = 10_000

probe_huey = RedisHuey(
    "bench-probe",
    url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    notify_result=True,
)


@probe_huey.task()
def probe_noop() -> int:
    return bump_sync()


class ScaleHuey(HueySystem, ScaleSystem):
    prefill_how = (
        "no batch enqueue: huey.serialize_task(noop.s()) LPUSHed onto its list, "
        f"redis-py pipelines of {PIPELINE:,} (what enqueue writes)"
    )
    probe_how = (
        "one list, FIFO: round trips on a second RedisHuey ('bench-probe') with a consumer "
        "of its own, waited for with notify_result=True (BLPOP)"
    )

    def prefill(self, n: int) -> None:
        storage = huey.storage
        for start in range(0, n, PIPELINE):
            pipe = storage.conn.pipeline(transaction=False)
            for _ in range(min(PIPELINE, n - start)):
                pipe.lpush(storage.queue_key, huey.serialize_task(noop.s()))
            pipe.execute()

    def probe_worker_argv(self) -> list[str]:
        return [
            os.path.join(os.path.dirname(sys.executable), "huey_consumer"),
            "scale_huey.probe_huey",
        ]

    def probe_roundtrip(self) -> None:
        probe_noop().get(blocking=True, timeout=10)


SYSTEM = ScaleHuey()

if __name__ == "__main__":
    main(importlib.import_module("scale_huey").SYSTEM, {})
