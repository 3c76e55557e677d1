"""taskiq with taskiq-redis: ``RedisStreamBroker`` (the broker taskiq-redis's README
leads with; acknowledged delivery via a consumer group) and ``RedisAsyncResultBackend``.

Worker: ``taskiq worker taskiq_bench:broker --workers 1`` (taskiq's default is 2 worker
processes; ``--max-async-tasks`` defaults to 100). ``wait_result`` polls for the result
every ``check_interval`` (0.2 s by default); the ``tuned`` variant uses 0.01 s.
"""

from __future__ import annotations

import os
import sys

from _common import System, bump_async, main, sleep_async
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

CHECK_INTERVAL = {"default": 0.2, "tuned": 0.01}

_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
broker = RedisStreamBroker(url=_url).with_result_backend(
    RedisAsyncResultBackend(redis_url=_url, result_ex_time=3600)
)


@broker.task(task_name="noop")
async def noop() -> int:
    return await bump_async()


@broker.task(task_name="sleep_task")
async def sleep_task() -> int:
    return await sleep_async()


class TaskiqSystem(System):
    name = "taskiq"
    packages = ("taskiq", "taskiq-redis", "redis")
    is_async = True
    notes = ("RedisStreamBroker + RedisAsyncResultBackend(result_ex_time=3600)",)

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        argv = [
            os.path.join(os.path.dirname(sys.executable), "taskiq"),
            "worker",
            "taskiq_bench:broker",
            "--workers",
            "1",
        ]
        if concurrency is not None:
            argv += ["--max-async-tasks", str(concurrency)]
        return argv

    def describe(self, variant: str, concurrency: int | None) -> str:
        text = super().describe(variant, concurrency)
        return f"{text} (wait_result check_interval={CHECK_INTERVAL[variant]})"

    async def open(self, variant: str) -> None:
        self.check_interval = CHECK_INTERVAL[variant]
        await broker.startup()

    async def close(self) -> None:
        await broker.shutdown()

    async def enqueue_noop(self) -> None:
        await noop.kiq()

    async def enqueue_sleep(self) -> None:
        await sleep_task.kiq()

    async def roundtrip(self) -> None:
        task = await noop.kiq()
        result = await task.wait_result(check_interval=self.check_interval, timeout=10)
        if result.is_err:
            raise RuntimeError(f"task failed: {result.error}")


SYSTEM = TaskiqSystem()

if __name__ == "__main__":
    main("taskiq_bench")
