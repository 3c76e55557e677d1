"""Throughput over the last minutes, drawn as a small inline SVG bar chart.

The backend keeps running totals of finished tasks (success, error, cancel), not a
history, so the dashboard samples those totals each time the overview is read (every
2 s while someone watches it) and charts the differences. Minutes when no one had the
overview open show no bars: the chart says "not watched" rather than "zero".
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup

__all__ = ["Series", "Throughput"]

#: Seconds per bar, and bars shown: five minutes in 10 s steps.
BUCKET: Final = 10.0
BUCKETS: Final = 30
#: Samples closer together than this add nothing (several viewers poll at once).
_MIN_STEP: Final = 1.0
FINISHED: Final = ("success", "error", "cancel")


@dataclass(frozen=True, slots=True)
class Series:
    """Tasks finished per bucket, oldest first; ``None`` where nothing was sampled."""

    counts: list[int | None]
    #: Tasks finished per second over the last ``BUCKET`` seconds.
    rate: float

    def svg(self, width: int = 300, height: int = 60) -> Markup:
        """The bars as an inline SVG (no script, no inline style: the page's CSP)."""
        known = [c for c in self.counts if c is not None]
        top = max([*known, 1])
        step = width / len(self.counts)
        bars = []
        for index, count in enumerate(self.counts):
            x = index * step
            if count is None:
                bars.append(
                    f'<rect class="gap" x="{x:.1f}" y="{height - 2}" width="{step - 1:.1f}" '
                    f'height="2"><title>not watched</title></rect>'
                )
                continue
            h = max(1.0, count / top * (height - 4)) if count else 1.0
            seconds_ago = (len(self.counts) - index) * BUCKET
            bars.append(
                f'<rect class="bar" x="{x:.1f}" y="{height - h:.1f}" width="{step - 1:.1f}" '
                f'height="{h:.1f}"><title>{count} finished, {seconds_ago:.0f} s ago'
                "</title></rect>"
            )
        return Markup(
            f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="tasks finished per {BUCKET:.0f} s">'
            + "".join(bars)
            + "</svg>"
        )


class Throughput:
    """Samples of the finished-task total, kept for the chart's span."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, counts: dict[str, int], now: float | None = None) -> None:
        """Record the backend's totals (``status_counts``) as seen at ``now``."""
        now = time.time() if now is None else now
        total = sum(counts.get(status, 0) for status in FINISHED)
        if self._samples and now - self._samples[-1][0] < _MIN_STEP:
            return
        self._samples.append((now, total))
        horizon = now - BUCKET * (BUCKETS + 1)
        while len(self._samples) > 2 and self._samples[1][0] < horizon:
            self._samples.popleft()

    def series(self, now: float | None = None) -> Series:
        """The bars ending at ``now``."""
        now = time.time() if now is None else now
        counts: list[int | None] = [None] * BUCKETS
        samples = list(self._samples)
        for (t0, a), (t1, b) in itertools.pairwise(samples):
            # A total that went down was reset (flush_all): count nothing for that step.
            done = max(0, b - a)
            if t1 - t0 > BUCKET * 3:
                continue  # a long unwatched gap: its tasks are not spread as a rate
            index = BUCKETS - 1 - int((now - t1) // BUCKET)
            if 0 <= index < BUCKETS:
                counts[index] = (counts[index] or 0) + done
        recent = [(t, total) for t, total in samples if t >= now - BUCKET]
        rate = 0.0
        if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            rate = max(0, recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])
        return Series(counts=counts, rate=rate)
