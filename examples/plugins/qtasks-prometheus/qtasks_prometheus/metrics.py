"""The metrics a worker process keeps, and the Prometheus text exposition format (0.0.4).

No client library: the format is a few lines per sample,
https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    """A label value as the text format wants it: ``\\``, ``"`` and newlines escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """``3`` for whole numbers, ``0.25`` otherwise, ``+Inf``/``-Inf``/``NaN`` as Go writes."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def labels(**pairs: str) -> str:
    if not pairs:
        return ""
    inner = ",".join(f'{name}="{escape_label(str(value))}"' for name, value in pairs.items())
    return "{" + inner + "}"


def parse_buckets(text: str) -> tuple[float, ...]:
    """Bucket bounds from ``"0.1,1,10"`` (sorted, positive, no duplicates)."""
    try:
        bounds = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"buckets must be comma-separated numbers, got {text!r}") from None
    if not bounds or bounds[0] <= 0 or math.isinf(bounds[-1]):
        raise ValueError(f"buckets must be finite positive numbers, got {text!r}")
    return tuple(bounds)


@dataclass(slots=True)
class _Histogram:
    counts: list[int]
    total: float = 0.0
    count: int = 0


@dataclass
class Metrics:
    """What one worker process counts. Thread-safe: workers may run on several loops."""

    buckets: Sequence[float] = DEFAULT_BUCKETS
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _finished: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    _durations: dict[str, _Histogram] = field(default_factory=dict, repr=False)

    def task_finished(self, task: str, status: str, seconds: float | None) -> None:
        """Count one finished run of ``task``; ``seconds`` is ``None`` when unknown."""
        with self._lock:
            key = (task, status)
            self._finished[key] = self._finished.get(key, 0) + 1
            if seconds is None:
                return
            histogram = self._durations.get(task)
            if histogram is None:
                histogram = self._durations[task] = _Histogram([0] * len(self.buckets))
            # Buckets are cumulative when written; here each run lands in one slot.
            index = bisect_left(self.buckets, seconds)
            if index < len(self.buckets):
                histogram.counts[index] += 1
            histogram.total += seconds
            histogram.count += 1

    def finished(self, task: str, status: str) -> int:
        with self._lock:
            return self._finished.get((task, status), 0)

    def render(
        self,
        *,
        running: int,
        queue_depth: int | None,
        backend_up: bool | None,
    ) -> str:
        """The whole exposition: counters and histograms kept here, gauges given."""
        with self._lock:
            finished = sorted(self._finished.items())
            durations = sorted(
                (task, list(h.counts), h.total, h.count) for task, h in self._durations.items()
            )
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)

        family(
            "qtasks_tasks_total",
            "counter",
            "Task runs finished by this worker process, by task and final status "
            "(success, error, retry, cancel).",
            (
                f"qtasks_tasks_total{labels(task=task, status=status)} {n}"
                for (task, status), n in finished
            ),
        )
        samples: list[str] = []
        for task, counts, total, count in durations:
            cumulative = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                cumulative += n
                le = format_value(float(bound))
                samples.append(
                    f"qtasks_task_duration_seconds_bucket{labels(task=task, le=le)} {cumulative}"
                )
            samples.append(
                f"qtasks_task_duration_seconds_bucket{labels(task=task, le='+Inf')} {count}"
            )
            samples.append(
                f"qtasks_task_duration_seconds_sum{labels(task=task)} {format_value(total)}"
            )
            samples.append(f"qtasks_task_duration_seconds_count{labels(task=task)} {count}")
        family(
            "qtasks_task_duration_seconds",
            "histogram",
            "Seconds a task run took in this worker process (plugins and executor included).",
            samples,
        )
        family(
            "qtasks_tasks_running",
            "gauge",
            "Tasks running now in this worker process.",
            [f"qtasks_tasks_running {running}"],
        )
        if queue_depth is not None:
            family(
                "qtasks_queue_depth",
                "gauge",
                "Tasks waiting in the queue (all priorities) of the app(s) this process "
                "works for, read from the backend at scrape time.",
                [f"qtasks_queue_depth {queue_depth}"],
            )
        if backend_up is not None:
            family(
                "qtasks_backend_up",
                "gauge",
                "Whether the backend answered the queue-depth read of this scrape.",
                [f"qtasks_backend_up {int(backend_up)}"],
            )
        return "\n".join(lines) + "\n"
