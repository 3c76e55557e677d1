"""The scale curves of QTasks (see ``scale_common`` and ``qtasks_bench``), and two of
its own: finished records (``--part records``) and a missed week of periodic ticks
(``--part ticks``).

Backlog: ``app.add_tasks_async`` (the batch enqueue), 10,000 tasks per call. The queue
is a sorted set by priority (lower first), FIFO within one: a probe sent at a higher
priority would be claimed before the backlog, but the same worker would then drain the
backlog. So the round trips go to a named queue of the same app (``probe``, a sorted
set of its own; the app's other keys are shared) served by a worker started with
``-Q probe``, while the backlog sits in the default queue.
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import time
from typing import Any

from qtasks_bench import QTasksSystem, app
from scale_common import ScaleDriver, ScaleSystem, main

from qtasks_core import QueueTasks
from qtasks_core.keys import Keys
from qtasks_core.schedules import MAX_CATCH_UP, Scheduler

CHUNK = 10_000
PROBE_QUEUE = "probe"
WEEK = 7 * 24 * 3600
DAY = 24 * 3600


class ScaleQTasks(QTasksSystem, ScaleSystem):
    prefill_how = f"app.add_tasks_async (the batch enqueue), {CHUNK:,} tasks per call"
    probe_how = (
        "sorted set by priority, FIFO within one: round trips on a named queue of the same "
        "app ('probe'), served by a worker of its own (-Q probe)"
    )

    async def prefill(self, n: int) -> None:
        for start in range(0, n, CHUNK):
            await app.add_tasks_async([("noop", ())] * min(CHUNK, n - start))

    def probe_worker_argv(self) -> list[str]:
        return [*self.worker_argv("default", None), "-Q", PROBE_QUEUE]

    async def probe_roundtrip(self) -> None:
        task = await app.send_task_async("noop", queue=PROBE_QUEUE, timeout=10)
        if task.status != "success":
            raise RuntimeError(f"task ended {task.status}")


SYSTEM = ScaleQTasks()


# -- finished records: app.list_tasks and the dashboard ---------------------------------


def timed(driver: ScaleDriver, make: Any, requests: int) -> dict[str, Any]:
    """Median and spread (ms) of ``requests`` awaits of ``make()``, after two warm-ups."""
    assert driver.loop is not None

    async def go() -> list[float]:
        for _ in range(2):
            await make()
        out = []
        for _ in range(requests):
            start = time.perf_counter()
            await make()
            out.append((time.perf_counter() - start) * 1000)
        return sorted(out)

    values = driver.loop.run_until_complete(go())
    return {"median_ms": statistics.median(values), "min_ms": values[0], "max_ms": values[-1]}


def part_records(driver: ScaleDriver) -> dict[str, Any]:
    """``--records`` tasks run to success by two workers, then each read timed."""
    n, requests = driver.args.records, driver.args.requests
    driver.r.flushall()
    began = time.perf_counter()
    driver.run_async("prefill", n)
    driver.arm(n)
    argv = SYSTEM.worker_argv("default", None)
    workers = [driver.spawn(argv, f"records-worker{i + 1}") for i in range(2)]
    try:
        driver.blpop_done(max(120.0, n / 100), workers[0])
    finally:
        for worker in workers:
            worker.stop()
    made = time.perf_counter() - began
    finished = int(driver.r.hget(Keys.for_app(app.name).counts, "success") or 0)
    reads: dict[str, Any] = {}
    for label, kwargs in (
        ("list_tasks() first page", {}),
        ("list_tasks(status='success')", {"status": "success"}),
        ("list_tasks(task_name='noop')", {"task_name": "noop"}),
    ):
        reads[label] = timed(driver, lambda kw=kwargs: app.list_tasks_async(**kw), requests)
        page = driver.loop.run_until_complete(app.list_tasks_async(**kwargs))
        reads[label]["tasks"] = len(page.tasks)
    pages: dict[str, Any] = {}
    skipped = ""
    try:
        import httpx

        from qtasks_core.web import create_app
    except ImportError as exc:
        skipped = f"dashboard not measured: {exc}"
    else:
        web = create_app(app)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web), base_url="http://localhost"
        )

        async def get(path: str) -> None:
            response = await client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path}: {response.status_code}")

        for label, path in (
            ("dashboard overview /", "/"),
            ("dashboard tasks /tasks", "/tasks"),
            ("dashboard tasks /tasks?status=success", "/tasks?status=success"),
        ):
            pages[label] = timed(driver, lambda p=path: get(p), requests)
        driver.loop.run_until_complete(client.aclose())
    return {
        "records": n,
        "finished": finished,
        "make_seconds": made,
        "used_memory": driver.used_memory(),
        "requests": requests,
        "reads": reads,
        "pages": pages,
        "skipped": skipped,
    }


# -- a missed week of every-second ticks --------------------------------------------------

#: (case, schedule options, seconds missed in --quick)
TICK_CASES: list[tuple[str, dict[str, Any], int]] = [
    ("every=1, missed='once' (default)", {"every": 1}, WEEK),
    ("every=1, missed='skip'", {"every": 1, "missed": "skip"}, WEEK),
    ("every=1, missed='each'", {"every": 1, "missed": "each"}, WEEK),
    ("cron='* * * * * *', missed='once'", {"cron": "* * * * * *"}, DAY),
]


async def tick_case(
    driver: ScaleDriver, index: int, options: dict[str, Any], gap: int, budget: float
) -> dict[str, Any]:
    name = f"ticks{index}"
    ticks = QueueTasks(name, driver.args.redis_url, load_entry_points=False)

    @ticks.periodic(name="every-second", **options)
    async def tick() -> None:
        return None

    await ticks.start_async()
    keys = Keys.for_app(name)
    seconds, micros = driver.r.time()
    now_ms = seconds * 1000 + micros // 1000
    # The cursor as a scheduler leaves it, then no scheduler for `gap` seconds.
    start_tick = (now_ms // 1000 - gap) * 1000
    driver.r.hset(keys.schedule("every-second"), mapping={"next": start_tick})
    scheduler = Scheduler(ticks)
    steps: list[float] = []
    began = time.perf_counter()
    while True:
        step = time.perf_counter()
        wait = await scheduler.step()
        steps.append(time.perf_counter() - step)
        # wait > 0: nothing due any more; else steps go on until the budget is spent.
        if wait > 0 or time.perf_counter() - began > budget:
            break
    caught_up = wait > 0
    spent = sum(steps)
    fired = int(driver.r.zcard(keys.queue))
    cursor = int(driver.r.hget(keys.schedule("every-second"), "next") or 0)
    seconds, micros = driver.r.time()
    behind = max(0, seconds * 1000 + micros // 1000 - cursor)
    # How fast the cursor moved through the due ticks: what is left takes this long.
    moved = cursor - start_tick
    estimate = spent + (behind * spent / moved if moved > 0 else float("inf"))
    # One more step: the ordinary cost of a tick once caught up (or the next catch-up).
    await asyncio.sleep(0.05)
    step = time.perf_counter()
    await scheduler.step()
    next_step = time.perf_counter() - step
    await ticks.stop_async()
    return {
        "gap_seconds": gap,
        "due_ticks": gap,
        "steps": len(steps),
        "first_step_seconds": steps[0],
        "seconds": spent,
        "fired": fired,
        "caught_up": caught_up,
        "cursor_behind_seconds": behind / 1000,
        "estimated_catch_up_seconds": estimate if estimate != float("inf") else None,
        "next_step_ms": next_step * 1000,
    }


def part_ticks(driver: ScaleDriver) -> dict[str, Any]:
    """Each case: a schedule of the app's own, its cursor set ``gap`` seconds back (as
    if no scheduler ran for that long), then ``Scheduler.step`` until it has caught up
    or ``--tick-budget`` seconds have passed."""
    assert driver.loop is not None
    cases = {}
    for index, (label, options, quick_gap) in enumerate(TICK_CASES):
        gap = quick_gap if driver.args.quick else WEEK
        driver.r.flushall()
        cases[label] = driver.loop.run_until_complete(
            tick_case(driver, index, options, gap, driver.args.tick_budget)
        )
    return {"cases": cases, "max_catch_up": MAX_CATCH_UP, "budget": driver.args.tick_budget}


if __name__ == "__main__":
    module = importlib.import_module("scale_qtasks")
    main(module.SYSTEM, {"records": module.part_records, "ticks": module.part_ticks})
