"""The gauges, read from Redis at scrape time through the app's public API.

Queue depth, running, scheduled and dead tasks and live workers are facts of the app's
Redis, the same for every worker of the app: read them when Prometheus asks
(:class:`qtasks_core.stats.Stats`), rather than keep them per process. Nothing to sum
across processes, nothing stale when a worker dies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from qtasks_core.stats import Stats

if TYPE_CHECKING:
    from qtasks_core import QueueTasks

log = logging.getLogger("qtasks.prometheus")

#: A scrape gives Redis this long to answer, per app.
STATS_TIMEOUT: Final = 5.0

#: The apps to report, each with the event loop of one of its running workers.
Sources = Callable[[], list[tuple["QueueTasks", asyncio.AbstractEventLoop]]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape read of one app."""

    queues: dict[str, dict[int, int]]
    running: int
    scheduled: int
    dead: int
    workers: int


async def snapshot(app: QueueTasks) -> Snapshot:
    """Read the app's figures (``Stats(app).inspect_async()``)."""
    stats = await Stats(app).inspect_async()
    # InspectStats.dead is newer than qtasks-core 0.1.0: count the letters there.
    dead = getattr(stats, "dead", None)
    if dead is None:
        dead = len(await app.dead_letters_async())
    return Snapshot(
        queues=stats.queues,
        running=stats.running,
        scheduled=stats.scheduled,
        dead=int(dead),
        workers=len(stats.workers),
    )


class RedisCollector(Collector):
    """A prometheus_client collector whose ``collect()`` reads each app's Redis.

    It runs in the HTTP server's thread; the read runs in the event loop of one of the
    app's workers (``asyncio.run_coroutine_threadsafe``), on that worker's connections,
    so a scrape opens no connection of its own. An app whose read fails or times out
    reports ``qtasks_backend_up 0`` and no other gauge.
    """

    def __init__(self, sources: Sources, timeout: float = STATS_TIMEOUT) -> None:
        self._sources = sources
        self._timeout = timeout

    def _read(self, app: QueueTasks, loop: asyncio.AbstractEventLoop) -> Snapshot | None:
        try:
            future = asyncio.run_coroutine_threadsafe(
                asyncio.wait_for(snapshot(app), self._timeout), loop
            )
        except RuntimeError:  # the worker's loop closed between listing and reading
            return None
        try:
            return future.result(self._timeout + 1)
        except Exception as exc:
            future.cancel()
            log.warning("Redis figures of app %r unavailable for this scrape: %r", app.name, exc)
            return None

    def collect(self) -> Iterable[Metric]:
        labels = ["app"]
        depth = GaugeMetricFamily(
            "qtasks_queue_depth",
            "Tasks waiting in a queue, by priority (Redis, at scrape time; the same for "
            "every worker of the app).",
            labels=["app", "queue", "priority"],
        )
        running = GaugeMetricFamily(
            "qtasks_tasks_running", "Tasks running now on any worker of the app.", labels=labels
        )
        scheduled = GaugeMetricFamily(
            "qtasks_tasks_scheduled",
            "Tasks waiting for their due time (delay, eta, retry backoff).",
            labels=labels,
        )
        dead = GaugeMetricFamily(
            "qtasks_dead_letters",
            "Tasks set aside (unreadable, or killing their workers): `qtasks dead`.",
            labels=labels,
        )
        workers = GaugeMetricFamily(
            "qtasks_workers", "Live workers of the app, on every machine.", labels=labels
        )
        up = GaugeMetricFamily(
            "qtasks_backend_up",
            "1 if this scrape read the app's figures from Redis, else 0.",
            labels=labels,
        )
        for app, loop in self._sources():
            snap = self._read(app, loop)
            up.add_metric([app.name], 0 if snap is None else 1)
            if snap is None:
                continue
            for queue, priorities in sorted(snap.queues.items()):
                for priority, count in sorted(priorities.items()):
                    depth.add_metric([app.name, queue, str(priority)], count)
            running.add_metric([app.name], snap.running)
            scheduled.add_metric([app.name], snap.scheduled)
            dead.add_metric([app.name], snap.dead)
            workers.add_metric([app.name], snap.workers)
        return [depth, running, scheduled, dead, workers, up]
