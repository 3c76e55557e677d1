"""What a worker process counts: task runs and their durations, on ``prometheus_client``.

Counters and the histogram live in the process that runs the tasks. With
``PROMETHEUS_MULTIPROC_DIR`` set (``qtasks worker --processes N``), prometheus_client
keeps their values in per-process files in that folder, and whichever process serves
the endpoint reads every process's files (:class:`~prometheus_client.multiprocess.
MultiProcessCollector`): a child that died, or was restarted, still counts. No gauge is
kept here (the gauges are read from Redis at scrape time), so no ``mark_process_dead``
is needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

#: prometheus_client reads it when it is imported: set it in the worker's environment.
ENV_MULTIPROC: Final = "PROMETHEUS_MULTIPROC_DIR"

#: Prometheus' default buckets, stretched to the minutes a background task may take.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


def parse_buckets(text: str) -> tuple[float, ...]:
    """Bucket bounds from ``"0.1,1,10"`` (sorted, positive, no duplicates)."""
    try:
        bounds = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"buckets must be comma-separated numbers, got {text!r}") from None
    if not bounds or bounds[0] <= 0 or math.isinf(bounds[-1]):
        raise ValueError(f"buckets must be finite positive numbers, got {text!r}")
    return tuple(bounds)


def multiprocess_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, or ``None`` when it is off."""
    return os.environ.get(ENV_MULTIPROC) or None


class Metrics:
    """The counters and the histogram of one process, and the registry a scrape reads.

    ``registry`` is what the endpoint serves: the metrics of this process, or, in
    multiprocess mode, a :class:`MultiProcessCollector` over every process's files.
    """

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.multiprocess_dir = multiprocess_dir()
        self.registry = CollectorRegistry()
        # In multiprocess mode the values go to the folder's files whatever registry
        # holds the metric objects; registering them as well would serve this process's
        # counts twice.
        own = None if self.multiprocess_dir else self.registry
        if self.multiprocess_dir:
            MultiProcessCollector(self.registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        self.tasks = Counter(
            "qtasks_tasks",
            "Task runs finished, by app, task, queue and final status (success, error, "
            "cancel, or retry: failed and will run again).",
            ["app", "task", "queue", "status"],
            registry=own,
        )
        self.duration = Histogram(
            "qtasks_task_duration_seconds",
            "Seconds a task run took in its worker (plugins and executor included).",
            ["app", "task", "queue"],
            buckets=tuple(buckets),
            registry=own,
        )

    def task_finished(
        self, app: str, task: str, queue: str, status: str, seconds: float | None
    ) -> None:
        """Count one finished run; ``seconds`` is ``None`` when its start was not seen."""
        self.tasks.labels(app, task, queue, status).inc()
        if seconds is not None:
            self.duration.labels(app, task, queue).observe(seconds)
