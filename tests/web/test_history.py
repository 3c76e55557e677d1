"""The overview's throughput and latency: read from the history the workers report,
so a reload, a second dashboard or a new process shows the same figures; a period
switch; what the page says before any worker reported, or when the workers' plugin
is off. On the in-memory backend and on a real Redis server."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from qtasks_core import QueueTasks, Stats
from qtasks_core.backends import MemoryBackend
from qtasks_core.history import BUCKET
from qtasks_core.starter import Starter
from qtasks_core.web._throughput import chart, duration
from tests.support import wait_for


def _run_some(app: QueueTasks) -> None:
    @app.task(name="nap")
    async def nap(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @app.task(name="boom")
    def boom() -> None:
        raise ValueError("no")

    for _ in range(5):
        app.add_task("nap", 0.02)
    app.add_task("boom")
    Starter(app, app.worker(), burst=True).start()


def _figure(html: str, name: str) -> str:
    found = re.search(rf"<span {name}>([^<]+)<", html)
    assert found is not None, f"no {name} on the page"
    return found.group(1)


def _latency(html: str, kind: str) -> tuple[str, str]:
    row = re.search(rf'<tr data-latency="{kind}">(.*?)</tr>', html, re.S)
    assert row is not None, f"no {kind} latency on the page"
    p50 = re.search(r"<td class=\"num\" data-p50>([^<]+)<", row.group(1))
    p95 = re.search(r"<td class=\"num\" data-p95>([^<]+)<", row.group(1))
    assert p50 is not None and p95 is not None
    return p50.group(1), p95.group(1)


def test_the_overview_charts_what_the_workers_reported(app, dashboard) -> None:
    _run_some(app)
    html = dashboard(app).get("/").text
    assert _figure(html, "data-finished") == "6"
    assert _figure(html, "data-failed") == "1"
    assert '<svg class="chart"' in html and '<svg class="chart latency"' in html
    assert 'class="ok"' in html and 'class="err"' in html  # stacked by status
    assert "5 succeeded, 1 failed" in html
    p50, p95 = _latency(html, "run")
    assert p50.endswith("ms") and p95.endswith("ms")
    wait_p50, _ = _latency(html, "wait")
    assert wait_p50 != "none"
    assert "No worker has reported yet" not in html
    assert "<script" not in html.split("<main>")[1]  # the CSP: no inline script


def test_the_history_survives_a_new_dashboard_and_a_new_process(app, dashboard, request) -> None:
    _run_some(app)
    first = dashboard(app).get("/").text
    # Another dashboard of the same app (a reload after a restart, a second replica).
    again = dashboard(app).get("/").text
    assert _figure(again, "data-finished") == _figure(first, "data-finished") == "6"
    assert _latency(again, "run") == _latency(first, "run")
    if isinstance(app.backend, MemoryBackend):
        return  # an in-memory history lives as long as its process
    # Another process's app of the same name, on the same Redis: a restart.
    url = request.getfixturevalue("redis_url")
    elsewhere = QueueTasks(app.name, redis_url=url, load_entry_points=False)
    try:
        there = dashboard(elsewhere).get("/").text
    finally:
        elsewhere.stop()
    assert _figure(there, "data-finished") == "6"
    assert _latency(there, "run") == _latency(first, "run")


def test_the_period_switch_reads_the_last_hour(app, dashboard) -> None:
    _run_some(app)
    browser = dashboard(app)
    hour = browser.get("/?period=1h").text
    assert 'data-period="1h"' in hour and "last hour" in hour
    assert _figure(hour, "data-finished") == "6"
    assert '<a href="/?period=1h" aria-current="true">1h</a>' in hour
    # The poll keeps the period.
    assert 'hx-get="/?period=1h"' in hour
    assert browser.get("/?period=1y").status_code == 400


def test_before_any_report_the_overview_says_so(app, dashboard) -> None:
    html = dashboard(app).get("/").text
    assert "No worker has reported yet" in html
    assert 'data-history="off"' not in html  # no worker lives: nothing is off


def test_the_overview_says_when_live_workers_do_not_report(dashboard, redis_url) -> None:
    app = QueueTasks(
        f"history-off-{time.monotonic_ns()}",
        redis_url=redis_url,
        load_entry_points=False,
        block_plugins=["qtasks.history"],
    )
    try:
        with app.running_worker():
            # The page tells from the live workers: wait until this one has said it is.
            wait_for(lambda: Stats(app).inspect().workers, 30, "the worker to be live")
            html = dashboard(app).get("/").text
    finally:
        app.stop()
    assert "No worker has reported yet" in html
    assert 'data-history="off"' in html and "qtasks.history" in html


def test_a_day_of_history_reads_in_a_few_milliseconds(redis_app: QueueTasks) -> None:
    # A busy day: every 10 s bucket with its statuses and a spread of latency bins.
    async def fill_and_read() -> tuple[float, float]:
        storage = redis_app.storage
        now = await storage.history_add({})
        start = int(now // BUCKET) * BUCKET - 86_400
        figures = {"success": 120, "error": 3, "retry": 2, "run_n": 125, "run_us": 9_000_000}
        figures |= {f"run_{k}": 10 for k in range(6, 16)}
        figures |= {"wait_n": 120, "wait_us": 600_000} | {f"wait_{k}": 12 for k in range(3, 13)}
        for hour in range(start, start + 86_400 + 1, 3600):
            await storage.history_add(
                {b: figures for b in range(hour, hour + 3600, BUCKET) if b <= now}
            )
        timings = {}
        for period in ("5m", "1h"):
            began = time.perf_counter()
            for _ in range(5):
                shown = await chart(storage, period, time.time())
            timings[period] = (time.perf_counter() - began) / 5
            assert shown.finished > 0 and shown.run.p95 is not None
        return timings["5m"], timings["1h"]

    five_minutes, hour = asyncio.run(fill_and_read())
    # A few ms on the benchmark machine (the hour: two hashes of 360 buckets each);
    # generous here, for a loaded CI runner.
    assert five_minutes < 0.05 and hour < 0.25, (five_minutes, hour)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "none"), (0.0004, "0.40 ms"), (0.0042, "4.2 ms"), (0.25, "250 ms"), (3.21, "3.2 s"),
     (150, "2.5 min")],
)  # fmt: skip
def test_latencies_read_in_their_unit(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown
