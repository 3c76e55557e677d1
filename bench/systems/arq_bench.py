"""arq: ``arq arq_bench.WorkerSettings`` (one process; ``max_jobs`` 10 by default).

arq's worker polls the queue every ``poll_delay`` (0.5 s by default) when it found
nothing, and ``Job.result()`` polls for the result every ``poll_delay`` (0.5 s by
default). The ``tuned`` variant sets both to 0.01 s.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import Any, ClassVar

from _common import System, bump_async, concurrency, main, sleep_async, stamp_async, variant
from arq import create_pool
from arq.connections import RedisSettings

POLL = {"default": 0.5, "tuned": 0.01}


async def noop(ctx: dict[str, Any]) -> int:
    return await bump_async()


async def sleep_task(ctx: dict[str, Any]) -> int:
    return await sleep_async()


async def stamp(ctx: dict[str, Any]) -> int:
    return await stamp_async()


def _settings() -> RedisSettings:
    return RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop, sleep_task, stamp]
    redis_settings = _settings()
    poll_delay = POLL.get(variant(), 0.5)
    max_jobs = concurrency() or 10


class ArqSystem(System):
    name = "arq"
    packages = ("arq", "redis", "hiredis")
    is_async = True
    delayed = "enqueue_job(_defer_until=) with one shared timezone-aware datetime"

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        return [
            str(os.path.join(os.path.dirname(sys.executable), "arq")),
            "arq_bench.WorkerSettings",
        ]

    def describe(self, variant: str, concurrency: int | None) -> str:
        return (
            f"arq arq_bench.WorkerSettings (max_jobs={concurrency or 10}, "
            f"poll_delay={POLL[variant]}; result poll_delay={POLL[variant]})"
        )

    async def open(self, variant: str) -> None:
        self.pool = await create_pool(_settings())
        self.poll = POLL[variant]

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue_noop(self) -> None:
        await self.pool.enqueue_job("noop")

    async def enqueue_sleep(self) -> None:
        await self.pool.enqueue_job("sleep_task")

    async def enqueue_delayed(self, due: float) -> None:
        await self.pool.enqueue_job("stamp", _defer_until=datetime.fromtimestamp(due, UTC))

    async def roundtrip(self) -> None:
        job = await self.pool.enqueue_job("noop")
        assert job is not None
        await job.result(timeout=10, poll_delay=self.poll)


SYSTEM = ArqSystem()

if __name__ == "__main__":
    main("arq_bench")
