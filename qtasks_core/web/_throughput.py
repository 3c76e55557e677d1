"""Throughput and latency over the last 5 minutes or hour, drawn as inline SVG.

The figures are the history the workers report (the built-in plugin
``qtasks.history``, see :mod:`qtasks_core.history`): kept in the backend, so a reload,
a restart or a second dashboard shows the same bars. One read per request, of the
hours the period spans, whatever the traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from markupsafe import Markup

from ..history import FINISHED, REPORTS, RETRY, Latency, latency, merge, percentile

if TYPE_CHECKING:
    from ..storage import Storage

__all__ = ["DEFAULT_PERIOD", "PERIODS", "Chart", "chart"]

#: Each period: its span and seconds per bar, and how the page names it.
PERIODS: Final = {"5m": (300, 10, "5 minutes"), "1h": (3600, 60, "hour")}
DEFAULT_PERIOD: Final = "5m"
#: A worker reports every 5 s: none reported for this long means none reports now.
SILENT: Final = 30
#: The bars' stack, bottom up: the figure, its class and how a title names it.
_STACK: Final = (
    ("success", "ok", "succeeded"),
    ("error", "err", "failed"),
    ("cancel", "cancel", "cancelled"),
    (RETRY, "retry", "failed, to retry"),
)


def duration(seconds: float | None) -> str:
    """A latency as the page shows it: ``0.4 ms``, ``12 ms``, ``1.2 s``, ``3.5 min``."""
    if seconds is None:
        return "none"
    if seconds < 0.001:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


@dataclass(frozen=True, slots=True)
class Chart:
    """One period of the history, as bars of ``step`` seconds, oldest first."""

    period: str
    label: str
    step: int
    #: Per bar, the figures of its buckets added up.
    bars: list[dict[str, int]]
    #: The whole period's run time and queue wait.
    run: Latency
    wait: Latency
    finished: int
    failed: int
    retried: int
    #: Finished tasks per second over the period.
    rate: float
    #: Whether any worker reported in the period, and in the last ``SILENT`` seconds.
    reported: bool
    reporting: bool

    duration = staticmethod(duration)

    def svg(self, width: int = 420, height: int = 80) -> Markup:
        """Tasks ended per bar, stacked by status (no script, no inline style: the
        page's CSP)."""
        top = max([1, *(sum(bar.get(f, 0) for f, _, _ in _STACK) for bar in self.bars)])
        step = width / len(self.bars)
        shapes = []
        for index, bar in enumerate(self.bars):
            x = index * step
            ago = self._ago(index)
            parts = [(f, css, words) for f, css, words in _STACK if bar.get(f, 0) > 0]
            if not parts:
                shapes.append(
                    f'<rect class="none" x="{x:.1f}" y="{height - 1}" width="{step - 1:.1f}" '
                    f'height="1"><title>nothing ended, {ago}</title></rect>'
                )
                continue
            title = ", ".join(f"{bar[f]} {words}" for f, _, words in parts) + f", {ago}"
            y = float(height)
            for figure, css, _ in parts:
                h = max(1.0, bar[figure] / top * (height - 4))
                y -= h
                shapes.append(
                    f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{step - 1:.1f}" '
                    f'height="{h:.1f}"><title>{title}</title></rect>'
                )
        return self._svg("chart", width, height, f"tasks ended per {self.step} s", shapes)

    def latency_svg(self, width: int = 420, height: int = 80) -> Markup:
        """Run time per bar, from its p50 to its p95, on a log scale."""
        marks = [
            (i, percentile(bar, "run", 0.5), percentile(bar, "run", 0.95))
            for i, bar in enumerate(self.bars)
        ]
        known = [p95 for _, _, p95 in marks if p95 is not None]
        high = max([*known, 0.001]) * 1.5
        low = min(high / 1000, 0.0001)
        span = math.log10(high / low)

        def y(seconds: float) -> float:
            return height - max(0.0, math.log10(max(seconds, low) / low)) / span * (height - 4)

        step = width / len(self.bars)
        shapes = [f'<text class="axis" x="4" y="12">{duration(high)}</text>']
        for index, p50, p95 in marks:
            if p50 is None or p95 is None:
                continue
            top, bottom = y(p95), y(p50)
            shapes.append(
                f'<rect class="lat" x="{index * step:.1f}" y="{top:.1f}" '
                f'width="{step - 1:.1f}" height="{max(2.0, bottom - top):.1f}">'
                f"<title>run time p50 {duration(p50)}, p95 {duration(p95)}, "
                f"{self._ago(index)}</title></rect>"
            )
        return self._svg("chart latency", width, height, "run time, p50 to p95", shapes)

    def _ago(self, index: int) -> str:
        seconds = (len(self.bars) - index) * self.step
        return f"{seconds // 60} min ago" if seconds >= 120 else f"{seconds} s ago"

    @staticmethod
    def _svg(css: str, width: int, height: int, label: str, shapes: list[str]) -> Markup:
        return Markup(
            f'<svg class="{css}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{label}">' + "".join(shapes) + "</svg>"
        )


async def chart(storage: Storage, period: str, now: float) -> Chart:
    """The chart of ``period`` (a key of :data:`PERIODS`) ending at ``now``: one read
    of the history."""
    span, step, label = PERIODS[period]
    end = int(now // step) * step + step
    start = end - span
    history = await storage.history_read(min(start, now - SILENT), step)
    bars: list[dict[str, int]] = [{} for _ in range(span // step)]
    for bucket, figures in history.items():
        if bucket < start:
            continue
        # A bucket past the end (the server's clock ahead of this one) is the latest.
        bar = bars[min((bucket - start) // step, len(bars) - 1)]
        for name, n in figures.items():
            bar[name] = bar.get(name, 0) + n
    total = merge(bars)
    finished = sum(total.get(status, 0) for status in FINISHED)
    recent = now - SILENT - step
    return Chart(
        period=period,
        label=label,
        step=step,
        bars=bars,
        run=latency(total, "run"),
        wait=latency(total, "wait"),
        finished=finished,
        failed=total.get("error", 0),
        retried=total.get(RETRY, 0),
        rate=finished / span,
        reported=bool(total),
        reporting=any(f.get(REPORTS) for b, f in history.items() if b >= recent),
    )
