"""Starter: runs a worker in the foreground with signal handling. Fires ``starter_*``.

SIGTERM or SIGINT stops claiming and gives running tasks the worker's grace period;
what is left is handed back to the queue. A second signal skips the grace period
(unfinished tasks are still handed back, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from ._util import lifecycle

if TYPE_CHECKING:
    from .app import BaseQueueTasks
    from .worker import Worker

log = logging.getLogger("qtasks.starter")


class Starter:
    """Owns the process: the event loop, the signals, the worker's life."""

    def __init__(self, app: BaseQueueTasks, worker: Worker, *, burst: bool = False) -> None:
        self.app = app
        self.worker = worker
        self.burst = burst
        self._signals = 0

    def start(self) -> None:
        """Run until the worker stops (blocking)."""
        asyncio.run(self.run())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Not the main thread, or not supported: then the embedding app owns signals.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        await lifecycle(lambda: self.app.pm.hook.starter_start(starter=self), "starter_start")
        try:
            await self.worker.run(burst=self.burst)
        finally:
            await lifecycle(lambda: self.app.pm.hook.starter_stop(starter=self), "starter_stop")
            await self.app.stop_async(starter=self)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "%s: finishing running tasks (up to %.0fs); signal again to stop now",
                sig.name,
                self.worker.grace,
            )
        else:
            log.warning("%s again: stopping now; unfinished tasks go back to the queue", sig.name)
            self.worker.abort()
            return
        self.worker.stop()
