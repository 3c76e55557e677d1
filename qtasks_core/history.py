"""The history of finished tasks: the figures the ``qtasks.history`` plugin adds up on
each worker and the dashboard reads back.

Time is cut into buckets of :data:`BUCKET` seconds of the Redis server's clock. Per
bucket the backend keeps counts (``history_add`` adds to them, ``history_read`` reads
them back), named:

==================  ============================================================
figure              what
==================  ============================================================
``success``,        runs that ended so (final statuses)
``error``,
``cancel``
``retry``           runs that failed and will run again
``run_n``,          runs timed, and their run times added up (µs), from the start
``run_us``          of the run to its outcome
``run_<k>``         runs whose time falls in latency bin ``k`` (see :func:`bin_of`)
``wait_n``,         first attempts timed from their enqueue to their start, and
``wait_us``,        their waits added up (µs), and per latency bin
``wait_<k>``
``reports``         reports a worker sent in that bucket (one per flush, even
                    with nothing finished): who reports at all
==================  ============================================================

Counts from many workers add up, so do the bins: a percentile is read from the
merged bins (:func:`percentile`), never averaged from per-worker percentiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BINS",
    "BUCKET",
    "FINISHED",
    "REPORTS",
    "RETRY",
    "Latency",
    "bin_of",
    "bin_range",
    "latency",
    "merge",
    "percentile",
]

#: Seconds per bucket.
BUCKET: Final = 10
#: The statuses a run ends in for good, and the one of a run that will run again.
FINISHED: Final = ("success", "error", "cancel")
RETRY: Final = "retry"
REPORTS: Final = "reports"
#: Latency bins: bin 0 holds times under 0.1 ms; bin ``k`` the times in
#: [0.1 ms * 2**(k-1), 0.1 ms * 2**k); the last one everything from about 7 minutes on.
#: Coarse on purpose: a bin is one counter per bucket, and a percentile read from them
#: is within a factor of 2**0.5 of the truth at worst.
BINS: Final = 24
_BASE: Final = 1e-4
#: The bins' figure names, by ``int(seconds * 10_000).bit_length()`` (which is the bin,
#: floor(log2) + 1, without a log or a call on a worker's hot path) for any time under
#: 58 million years: the indexes past the last bin name the last bin.
RUN_BINS: Final = tuple(f"run_{min(k, BINS - 1)}" for k in range(65))
WAIT_BINS: Final = tuple(f"wait_{min(k, BINS - 1)}" for k in range(65))


def bin_of(seconds: float) -> int:
    """The latency bin of a time in seconds (a negative one, from skewed clocks, is 0)."""
    return min(int(max(seconds, 0.0) * 10_000).bit_length(), BINS - 1)


def bin_range(k: int) -> tuple[float, float]:
    """The seconds bin ``k`` spans, ``[low, high)`` (the last bin's ``high`` is twice
    its ``low``: the scale a percentile in it is read on)."""
    if k <= 0:
        return 0.0, _BASE
    low = _BASE * 2 ** (k - 1)
    return low, low * 2


def merge(buckets: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """The figures of several buckets (or workers) added up."""
    total: dict[str, int] = {}
    for figures in buckets:
        for name, n in figures.items():
            total[name] = total.get(name, 0) + n
    return total


def percentile(figures: Mapping[str, int], kind: str, q: float) -> float | None:
    """The ``q`` quantile (0 < q < 1) of the ``kind`` times (``run`` or ``wait``), in
    seconds, from the bins of ``figures``; ``None`` with nothing timed. Inside a bin
    the times are taken as spread evenly on a log scale (linearly in bin 0)."""
    counts = [max(figures.get(f"{kind}_{k}", 0), 0) for k in range(BINS)]
    n = sum(counts)
    if n == 0:
        return None
    rank = q * n
    seen = 0
    for k, count in enumerate(counts):
        if count and seen + count >= rank:
            low, high = bin_range(k)
            part = (rank - seen) / count
            return high * part if k == 0 else low * (high / low) ** part
        seen += count
    return bin_range(BINS - 1)[1]  # pragma: no cover - rank never exceeds n


@dataclass(frozen=True, slots=True)
class Latency:
    """How long runs took (or waited): how many were timed, their mean and two
    percentiles, in seconds; ``None`` for each with nothing timed."""

    n: int
    mean: float | None
    p50: float | None
    p95: float | None


def latency(figures: Mapping[str, int], kind: str) -> Latency:
    """The ``kind`` (``run`` or ``wait``) latency of merged ``figures``."""
    n = figures.get(f"{kind}_n", 0)
    mean = figures.get(f"{kind}_us", 0) / n / 1e6 if n > 0 else None
    return Latency(n, mean, percentile(figures, kind, 0.5), percentile(figures, kind, 0.95))
