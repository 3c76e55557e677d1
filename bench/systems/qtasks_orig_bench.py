"""The original QTasks (``qtasks==1.7.3`` from PyPI), async flavour.

Worker: ``qtasks -A qtasks_orig_bench:app run`` (``run_forever``: four worker
coroutines, ``config.max_tasks_process`` 10 tasks at a time). Its Redis broker pops the
queue with ``LPOP`` and sleeps 0.01 s when it is empty; ``add_task(..., timeout=...)``
polls the task's status every ``config.result_time_interval`` (1.0 s by default). The
``tuned`` variant sets ``result_time_interval`` to 0.01 s.
"""

from __future__ import annotations

import os
import sys

from _common import System, bump_async, concurrency, main, sleep_async, variant
from qtasks.asyncio import QueueTasks

RESULT_INTERVAL = {"default": 1.0, "tuned": 0.01}

app = QueueTasks(name="bench", broker_url=os.environ.get("BENCH_REDIS_URL"))
app.config.max_tasks_process = concurrency() or 10
app.config.result_time_interval = RESULT_INTERVAL.get(variant(), 1.0)


@app.task(name="noop")
async def noop() -> int:
    return await bump_async()


@app.task(name="sleep_task")
async def sleep_task() -> int:
    return await sleep_async()


class QTasksOrigSystem(System):
    name = "qtasks_orig"
    packages = ("qtasks", "redis", "pydantic")
    is_async = True

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        qtasks = os.path.join(os.path.dirname(sys.executable), "qtasks")
        return [qtasks, "-A", "qtasks_orig_bench:app", "run"]

    def describe(self, variant: str, concurrency: int | None) -> str:
        return (
            f"qtasks -A qtasks_orig_bench:app run (max_tasks_process={concurrency or 10}, "
            f"result_time_interval={RESULT_INTERVAL[variant]})"
        )

    async def enqueue_noop(self) -> None:
        await app.add_task("noop")

    async def enqueue_sleep(self) -> None:
        await app.add_task("sleep_task")

    async def roundtrip(self) -> None:
        task = await app.add_task("noop", timeout=10)
        if task is None or task.status != "success":
            raise RuntimeError(f"task ended {getattr(task, 'status', None)}")


SYSTEM = QTasksOrigSystem()

if __name__ == "__main__":
    main("qtasks_orig_bench")
