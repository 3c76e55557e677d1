"""The history of finished tasks: each worker adds up what it ran, per 10 s, and
reports it to the backend every few seconds, where the dashboard's overview reads it.

Per run that ends, in the bucket of its end (:data:`qtasks_core.history.BUCKET`
seconds of the Redis server's clock): its final status (``success``, ``error``,
``cancel``, or ``retry`` when it runs again), its run time (from its start to its
outcome, on the worker's monotonic clock) and, for a first attempt, its wait in the
queue (from its enqueue, a time of the server's clock, to its start), each as a count,
a sum and a log-spaced histogram, so that percentiles stay right once many workers'
figures are added up (see :mod:`qtasks_core.history` for the figures).

A run costs the worker a few dictionary increments; the figures are written from an
asyncio task of the worker every :data:`FLUSH_EVERY` seconds and as it stops (one
atomic write for all, never one per task; on a backend outage they wait for the next
write, a day of them at most). The worker learns the server's clock from each write's
answer, so buckets and waits are on the clock of the task records, whatever its own.

A task sent with a delay waits from its enqueue, its delay included; a retry and a
task queued again after its worker died have no wait counted (their worker does not
know when they fell due).

Only worker processes report, and nothing is collected for them (the status-change
feed stays off). Turn it off with ``QueueTasks(block_plugins=["qtasks.history"])`` or
``QTASKS_DISABLE_PLUGINS=qtasks.history`` on the workers: the overview then says that
no worker reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Final

from qtasks_hooks import hookimpl

from ..errors import BackendError
from ..history import BUCKET, REPORTS, RUN_BINS, WAIT_BINS
from ..keys import HISTORY_TTL

if TYPE_CHECKING:
    from ..schemas import FinishedModel, TaskPrioritySchema
    from ..storage import Storage
    from ..worker import Worker

log = logging.getLogger("qtasks.history")

#: Seconds between two reports of a worker.
FLUSH_EVERY: Final = 5.0
#: Runs remembered at most: a run whose outcome never comes (its worker was stopped
#: hard) would otherwise stay.
_KEPT: Final = 10_000


class HistoryPlugin:
    """Adds up the runs of this process's workers per bucket and reports the figures."""

    def __init__(self) -> None:
        #: The running tasks' starts: (monotonic time, queue wait in seconds or None).
        self._started: dict[str, tuple[float, float | None]] = {}
        #: Figures not reported yet: bucket -> figure -> count.
        self._buckets: dict[int, defaultdict[str, int]] = {}
        #: The server's clock less this process's monotonic one (learned from each
        #: report): one clock read per step of a run, not two.
        self._to_server = time.time() - time.perf_counter()
        #: The bucket runs end in now, its figures, and the monotonic time it ends at.
        self._current: defaultdict[str, int] = defaultdict(int)
        self._current_ends = -math.inf
        #: The workers running, and the task that reports for them.
        self._workers: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._failing = False

    # -- a run, on the worker's hot path: a few dict steps, no call but the clock's ------

    @hookimpl
    def worker_execute_before(self, task_broker: TaskPrioritySchema) -> None:
        now = time.perf_counter()
        # A first attempt was queued when it was created; a later one fell due at a
        # moment this worker does not know.
        if task_broker.attempts == 1:
            self._started[task_broker.uuid] = (now, now + self._to_server - task_broker.created_at)
        else:
            self._started[task_broker.uuid] = (now, None)
        if len(self._started) > _KEPT:
            del self._started[next(iter(self._started))]

    # Last of the chain: the status other plugins settled on (a retry's) is the one counted.
    @hookimpl(trylast=True)
    def worker_remove_finished_task(
        self, task_broker: TaskPrioritySchema, model: FinishedModel
    ) -> None:
        now = time.perf_counter()
        figures = self._current if now < self._current_ends else self._bucket(now)
        figures[model.status] += 1
        begun = self._started.pop(task_broker.uuid, None)
        if begun is None:
            return
        run = now - begun[0]
        figures["run_n"] += 1
        figures["run_us"] += int(run * 1_000_000)
        figures[RUN_BINS[int(run * 10_000).bit_length()]] += 1
        wait = begun[1]
        if wait is not None and wait > 0:
            figures["wait_n"] += 1
            figures["wait_us"] += int(wait * 1_000_000)
            figures[WAIT_BINS[int(wait * 10_000).bit_length()]] += 1
        elif wait is not None:
            # Ahead of its enqueue by the clocks' error: no wait to speak of.
            figures["wait_n"] += 1
            figures[WAIT_BINS[0]] += 1

    def _bucket(self, now: float) -> defaultdict[str, int]:
        """The figures of the bucket the monotonic time ``now`` is in (now the current
        one)."""
        at = now + self._to_server
        bucket = int(at // BUCKET) * BUCKET
        figures = self._buckets.get(bucket)
        if figures is None:
            figures = self._buckets[bucket] = defaultdict(int)
        self._current = figures
        self._current_ends = now + (bucket + BUCKET - at)
        return figures

    # -- reporting, off the tasks' path ----------------------------------------------------

    @hookimpl
    async def worker_start(self, worker: Worker) -> None:
        self._workers.add(worker.id)
        if self._flusher is None:
            self._stop = asyncio.Event()
            # The first report at once: it learns the server's clock before a task ends.
            await self.flush(worker.app.storage)
            self._flusher = asyncio.create_task(
                self._report(worker.app.storage), name="qtasks-history"
            )

    @hookimpl
    async def worker_stop(self, worker: Worker) -> None:
        self._workers.discard(worker.id)
        if self._workers or self._flusher is None:
            return
        self._stop.set()
        flusher, self._flusher = self._flusher, None
        await flusher  # its last report included

    async def _report(self, storage: Storage) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), FLUSH_EVERY)
            await self.flush(storage)

    async def flush(self, storage: Storage) -> None:
        """Report the figures added up since the last report, and a report of its own
        (so the overview knows a worker reports, even with nothing finished)."""
        pending, self._buckets = self._buckets, {}
        self._current_ends = -math.inf  # the next run starts a bucket of the new batch
        sent: dict[int, dict[str, int]] = {bucket: dict(f) for bucket, f in pending.items()}
        before = time.perf_counter()
        now = int((before + self._to_server) // BUCKET) * BUCKET
        sent.setdefault(now, {})[REPORTS] = sent.get(now, {}).get(REPORTS, 0) + 1
        try:
            server = await storage.history_add(sent)
        except (BackendError, OSError) as exc:
            self._keep(pending)
            if not self._failing:
                log.warning("could not report the history of finished tasks (%s); keeping it", exc)
            self._failing = True
            return
        except Exception:
            # A plugin's or our own bug: the history is not worth a worker.
            log.exception("reporting the history of finished tasks failed; going on")
            return
        after = time.perf_counter()
        self._failing = False
        # The reply left the server about halfway through the call.
        self._to_server = server - (before + after) / 2

    def _keep(self, pending: dict[int, defaultdict[str, int]]) -> None:
        """Put figures that could not be written back for the next report, and forget
        those the backend would have forgotten by now."""
        for bucket, figures in pending.items():
            kept = self._buckets.setdefault(bucket, defaultdict(int))
            for name, n in figures.items():
                kept[name] += n
        horizon = time.perf_counter() + self._to_server - HISTORY_TTL
        for bucket in [b for b in self._buckets if b < horizon]:
            del self._buckets[bucket]
