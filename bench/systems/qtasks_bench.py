"""QTasks (this checkout): app, tasks, the no-op plugin for every trigger, and the driver.

Worker: ``python -m qtasks_core worker -A qtasks_bench:app [-c N]`` with
``QTASKS_REDIS_URL`` set. Variants: ``default``; ``plugins5``: five instances of
:class:`NoopPlugin` (an impl of every trigger, each returning ``None``) registered with
``app.add_plugin`` in the worker and in the producer.
"""

from __future__ import annotations

import inspect
import os
import sys
from datetime import UTC, datetime
from typing import Any

from _common import System, bump_async, main, result_ttl, sleep_async, stamp_async, variant

from qtasks_core import QueueTasks
from qtasks_hooks import get_plugin_manager, hookimpl

PLUGIN_COUNT = {"default": 0, "plugins5": 5}


def trigger_signatures() -> dict[str, tuple[str, ...]]:
    """Every trigger of the hook specification and its argument names."""
    pm = get_plugin_manager()
    out = {}
    for name, caller in vars(pm.hook).items():
        spec = getattr(caller, "spec", None)
        if spec is not None:
            out[name] = tuple(spec.argnames)
    return dict(sorted(out.items()))


def make_noop_plugin_class() -> type:
    """A class with an impl of every trigger, taking every argument, returning ``None``.

    Generated from the live specification, so it keeps covering every trigger as the
    specification grows.
    """
    lines = ["class NoopPlugin:"]
    for name, argnames in trigger_signatures().items():
        lines += [
            "    @hookimpl",
            f"    def {name}(self, {', '.join(argnames)}):",
            "        return None",
        ]
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), {"hookimpl": hookimpl}, namespace)
    cls: type = namespace["NoopPlugin"]
    return cls


NoopPlugin = make_noop_plugin_class()

# BENCH_EVENTS=1 (or 0) runs with (or without) the app's event stream, to measure its
# cost; unset, the app's default. A checkout older than the stream has no such option.
_options = {}
if "BENCH_EVENTS" in os.environ and "events" in inspect.signature(QueueTasks).parameters:
    _options["events"] = os.environ["BENCH_EVENTS"] != "0"
app = QueueTasks("bench", os.environ.get("BENCH_REDIS_URL"), load_entry_points=False, **_options)
if result_ttl() is not None:  # the memory workload's worker
    app.config.result_ttl = result_ttl()
for index in range(PLUGIN_COUNT.get(variant(), 0)):
    app.add_plugin(NoopPlugin(), name=f"bench.noop{index + 1}")


@app.task
async def noop() -> int:
    return await bump_async()


@app.task
async def sleep_task() -> int:
    return await sleep_async()


@app.task
async def stamp() -> int:
    return await stamp_async()


class QTasksSystem(System):
    name = "qtasks"
    packages = ("qtasks-core", "pluggy", "pydantic", "redis")
    is_async = True
    batch = "one add_tasks_async call of N no-op tasks (up to 1,000 per script call)"
    delayed = "send_task_async(eta=) with one shared timezone-aware datetime"
    memory = "app.config.result_ttl in the worker and the producer"
    notes = (
        "enqueue: single add_task_async calls; batch: one add_tasks_async call of --batch-n tasks",
    )

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        argv = [sys.executable, "-m", "qtasks_core", "worker", "-A", "qtasks_bench:app"]
        if concurrency is not None:
            argv += ["-c", str(concurrency)]
        return argv

    def worker_env(self, variant: str, concurrency: int | None) -> dict[str, str]:
        return {"QTASKS_REDIS_URL": os.environ["BENCH_REDIS_URL"]}

    def describe(self, variant: str, concurrency: int | None) -> str:
        text = super().describe(variant, concurrency)
        plugins = PLUGIN_COUNT.get(variant, 0)
        if plugins:
            text += f" (+{plugins} NoopPlugin x {len(trigger_signatures())} triggers)"
        return text

    async def open(self, variant: str) -> None:
        await app.start_async()

    async def close(self) -> None:
        await app.stop_async()

    async def enqueue_noop(self) -> None:
        await app.add_task_async("noop")

    async def enqueue_noop_batch(self, n: int) -> None:
        await app.add_tasks_async([("noop", ())] * n)

    async def enqueue_sleep(self) -> None:
        await app.add_task_async("sleep_task")

    async def enqueue_memory(self) -> None:
        app.config.result_ttl = result_ttl()
        await app.add_task_async("noop")

    async def enqueue_delayed(self, due: float) -> None:
        await app.send_task_async("stamp", eta=datetime.fromtimestamp(due, UTC))

    async def roundtrip(self) -> None:
        task = await app.add_task_async("noop", timeout=10)
        if task.status != "success":
            raise RuntimeError(f"task ended {task.status}")


SYSTEM = QTasksSystem()

if __name__ == "__main__":
    main("qtasks_bench")
