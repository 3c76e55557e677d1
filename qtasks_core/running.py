"""Running workers from the app: in this process, in an event loop, or on the app's own
thread (``qtasks worker`` runs :meth:`WorkerOps.run_forever`).

The worker itself (:mod:`qtasks_core.worker`) is loaded on first use: an app that only
sends tasks never imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import TaskOptionError
from .wiring import Wiring


class WorkerOps(Wiring):
    """The app's ways to run a worker."""

    def worker(self, **options: Any) -> Any:
        """A :class:`~qtasks_core.worker.Worker` for this app (not started)."""
        from .worker import Worker

        return Worker(self._whole, **options)

    async def serve(self, *, burst: bool = False, **options: Any) -> None:
        """Run a worker in the current event loop until cancelled (for embedding).

        Cancelling it stops the worker the graceful way (running tasks get the grace
        period, the rest go back to the queue), then re-raises the cancellation.
        """
        worker = self.worker(**options)
        run = asyncio.ensure_future(worker.run(burst=burst))
        try:
            # Shielded: a cancellation must reach the worker as stop(), not land inside
            # a Redis call (where Python 3.11's wait_for can lose it).
            await asyncio.shield(run)
        except asyncio.CancelledError:
            worker.stop()
            await run
            raise

    @contextmanager
    def running_worker(self, **options: Any) -> Iterator[Any]:
        """Run a worker on the app's own event-loop thread for the ``with`` block."""
        worker = self.worker(**options)
        loop = self._portal.loop
        future = asyncio.run_coroutine_threadsafe(worker.run(), loop)
        self._portal_workers[worker] = future
        try:
            yield worker
        finally:
            self._stop_portal_worker(worker)

    def _stop_portal_worker(self, worker: Any) -> None:
        future = self._portal_workers.pop(worker, None)
        if future is None or future.done():
            return
        self._portal.loop.call_soon_threadsafe(worker.stop)
        future.result(timeout=worker.grace + 10)

    def run_forever(self, num_workers: int | None = None, **options: Any) -> None:
        """Run a worker in this process until SIGTERM/SIGINT (what ``qtasks worker`` does).

        ``num_workers`` (the original QTasks' name) is the worker's ``concurrency``:
        tasks run at once.
        """
        from .starter import Starter

        if num_workers is not None:
            if "concurrency" in options:
                raise TaskOptionError("give num_workers= or concurrency=, not both")
            options["concurrency"] = num_workers

        Starter(self._whole, self.worker(**options)).start()
