"""The history of finished tasks (``qtasks.history``): a worker adds up what it ran
per 10 s bucket and reports it every few seconds, never per task; percentiles come
right out of many workers' merged bins; the plugin is switched off like any
built-in. On Redis and on the in-memory backend."""

from __future__ import annotations

import asyncio
import math
import random
import time
from types import SimpleNamespace

import pytest

from qtasks_core import QueueTasks, TaskCancel
from qtasks_core.errors import BackendError
from qtasks_core.history import (
    BINS,
    BUCKET,
    RUN_BINS,
    bin_of,
    bin_range,
    latency,
    merge,
    percentile,
)
from qtasks_core.plugins.history import HistoryPlugin
from qtasks_core.starter import Starter
from tests.conftest import MakeApp


def _drain(app: QueueTasks) -> None:
    """Run a worker until the queue is empty (its delayed retries included)."""
    Starter(app, app.worker(), burst=True).start()


def _history(app: QueueTasks) -> dict[str, int]:
    """The app's history of the last hour, every bucket added up."""
    read = asyncio.run(app.storage.history_read(time.time() - 3600))
    return merge(read.values())


# -- a worker reports -------------------------------------------------------------------


def test_a_worker_reports_statuses_run_times_and_waits(make_app: MakeApp) -> None:
    app = make_app()
    tries: dict[str, int] = {}

    @app.task(name="nap")
    async def nap(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @app.task(name="fail")
    def fail() -> None:
        raise ValueError("no")

    @app.task(name="give_up")
    def give_up() -> None:
        raise TaskCancel("not today")

    @app.task(name="flaky", retry=1, retry_backoff=0.01)
    def flaky(key: str) -> None:
        tries[key] = tries.get(key, 0) + 1
        if tries[key] == 1:
            raise RuntimeError("first time")

    for _ in range(3):
        app.add_task("nap", 0.03)
    app.add_task("fail")
    app.add_task("give_up")
    app.add_task("flaky", "k")
    _drain(app)

    figures = _history(app)
    assert {s: figures.get(s, 0) for s in ("success", "error", "cancel", "retry")} == {
        "success": 4,  # three naps, and the flaky one's second attempt
        "error": 1,
        "cancel": 1,
        "retry": 1,
    }
    assert figures["run_n"] == 7  # every run, the retried one's two
    assert figures["wait_n"] == 6  # first attempts only
    assert figures["reports"] >= 2  # as the worker started, and as it stopped
    run = latency(figures, "run")
    assert run.p95 is not None and 0.015 <= run.p95 <= 0.12  # the naps
    wait = latency(figures, "wait")
    assert wait.mean is not None and 0 <= wait.mean < 30


def test_a_report_is_one_write_for_many_tasks(make_app: MakeApp) -> None:
    app = make_app()

    @app.task(name="noop")
    def noop() -> None: ...

    writes: list[dict[int, dict[str, int]]] = []
    add = app.storage.history_add

    async def counted(buckets: dict[int, dict[str, int]]) -> float:
        writes.append(buckets)
        return await add(buckets)

    app.storage.history_add = counted  # type: ignore[method-assign]
    app.add_tasks([("noop", ()) for _ in range(200)])
    _drain(app)

    assert merge(writes_figures for b in writes for writes_figures in b.values())["success"] == 200
    assert len(writes) <= 4  # at the start, every 5 s, at the stop: never per task
    assert _history(app)["success"] == 200


@pytest.mark.parametrize("how", ["block_plugins", "environment"])
def test_switched_off_like_any_builtin(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "environment":
        monkeypatch.setenv("QTASKS_DISABLE_PLUGINS", "qtasks.history")
        app = make_app()
    else:
        app = make_app(block_plugins=["qtasks.history"])

    @app.task(name="noop")
    def noop() -> None: ...

    app.add_task("noop")
    _drain(app)

    assert _history(app) == {}
    assert "qtasks.history" not in [info.name for info in app.pm.plugin_infos()]


# -- the plugin on its own: outages and the server's clock -------------------------------


class _Storage:
    """Stands in for the storage: fails while ``down``; its clock runs ``ahead``."""

    def __init__(self, ahead: float = 0.0) -> None:
        self.down = False
        self.ahead = ahead
        self.written: list[dict[int, dict[str, int]]] = []

    async def history_add(self, buckets: dict[int, dict[str, int]]) -> float:
        if self.down:
            raise BackendError("connection refused", command="history_add")
        self.written.append(buckets)
        return time.time() + self.ahead


def _run_one(plugin: HistoryPlugin, uuid: str, status: str = "success") -> None:
    task = SimpleNamespace(uuid=uuid, attempts=1, created_at=time.time() + 3600 - 0.5)
    plugin.worker_execute_before(task)  # type: ignore[arg-type]
    plugin.worker_remove_finished_task(task, SimpleNamespace(status=status))  # type: ignore[arg-type]


def test_figures_wait_through_an_outage_and_go_on_the_servers_clock() -> None:
    plugin = HistoryPlugin()
    storage = _Storage(ahead=3600)  # the server's clock: an hour ahead of this one
    asyncio.run(plugin.flush(storage))  # type: ignore[arg-type]
    _run_one(plugin, "a")
    storage.down = True
    asyncio.run(plugin.flush(storage))  # type: ignore[arg-type]
    _run_one(plugin, "b", "error")
    storage.down = False
    asyncio.run(plugin.flush(storage))  # type: ignore[arg-type]

    figures = merge(storage.written[-1].values())
    assert figures["success"] == 1 and figures["error"] == 1  # kept through the outage
    # Buckets and waits on the server's clock: the task was created there 0.5 s ago.
    assert min(storage.written[-1]) >= (time.time() + 3600) // BUCKET * BUCKET - 2 * BUCKET
    assert 0.3 < figures["wait_us"] / figures["wait_n"] / 1e6 < 5


# -- percentiles out of merged bins --------------------------------------------------------


def _binned(times: list[float], kind: str = "run") -> dict[str, int]:
    figures: dict[str, int] = {f"{kind}_n": len(times)}
    for t in times:
        name = f"{kind}_{bin_of(t)}"
        figures[name] = figures.get(name, 0) + 1
    return figures


def test_the_bins_cover_a_tenth_of_a_millisecond_to_minutes_doubling() -> None:
    assert bin_of(0.0) == bin_of(0.00005) == 0
    assert bin_of(0.0001) == 1 and bin_of(0.00019) == 1 and bin_of(0.0002) == 2
    assert bin_of(-1.0) == 0  # skewed clocks
    assert bin_of(600.0) == bin_of(1e9) == BINS - 1
    for k in range(1, BINS - 1):
        low, high = bin_range(k)
        assert bin_of(low) == k and bin_of(high * 0.999) == k and high == 2 * low
    # The worker's hot path names the bin by an index of its own: the same bins.
    assert set(RUN_BINS) == {f"run_{k}" for k in range(BINS)}
    for t in (0.0, 0.00007, 0.0003, 0.0123, 1.5, 419.0, 1e6):
        assert RUN_BINS[int(t * 10_000).bit_length()] == f"run_{bin_of(t)}"


def test_percentiles_of_merged_workers_are_the_merged_runs_ones() -> None:
    # One worker runs a thousand quick tasks, another a hundred slow ones: the p95 of
    # all runs is a slow one's, which no mean of the two workers' p95s gives.
    quick, slow = _binned([0.005] * 1000), _binned([2.0] * 100)
    both = merge([quick, slow])
    p50, p95 = percentile(both, "run", 0.5), percentile(both, "run", 0.95)
    assert p50 is not None and bin_range(bin_of(0.005))[0] <= p50 < bin_range(bin_of(0.005))[1]
    assert p95 is not None and bin_range(bin_of(2.0))[0] <= p95 < bin_range(bin_of(2.0))[1]
    assert percentile({}, "run", 0.5) is None


def test_percentiles_are_within_a_bins_width_of_the_exact_ones() -> None:
    rng = random.Random(7)
    workers = [[10 ** rng.uniform(-3.5, 1.5) for _ in range(3000)] for _ in range(4)]
    merged = merge(_binned(times) for times in workers)
    everything = sorted(t for times in workers for t in times)
    # Close where runs fill their bins; within a bin (a factor of 2) where they stop
    # short of its end (the slowest 1 %, here).
    for q, off_by in ((0.5, 0.15), (0.95, 0.15), (0.99, 1.0)):
        exact = everything[int(q * len(everything))]
        estimate = percentile(merged, "run", q)
        assert estimate is not None and abs(math.log2(estimate / exact)) < off_by, q


def test_the_per_task_cost_is_a_few_microseconds() -> None:
    plugin = HistoryPlugin()
    tasks = [SimpleNamespace(uuid=str(i), attempts=1, created_at=time.time()) for i in range(2000)]
    done = SimpleNamespace(status="success")
    start = time.perf_counter()
    for task in tasks:
        plugin.worker_execute_before(task)  # type: ignore[arg-type]
        plugin.worker_remove_finished_task(task, done)  # type: ignore[arg-type]
    per_task = (time.perf_counter() - start) / len(tasks)
    # About 2 us on the benchmark machine; generous here, for a loaded CI runner.
    assert per_task < 50e-6
