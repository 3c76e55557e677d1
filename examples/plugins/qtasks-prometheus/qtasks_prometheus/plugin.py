"""The plugin: four worker triggers and an HTTP endpoint in the worker's event loop.

================================  =====================================================
trigger                           does
================================  =====================================================
``worker_start`` (async)          starts the metrics server (first worker of the process)
``worker_execute_before``         notes when a task run starts (keyed by its uuid)
``worker_execute_after``          counts the run by task and status, observes its time
``worker_stop`` (async)           closes the server (last worker of the process)
================================  =====================================================

Configuration (read when the worker starts): ``QTASKS_PROMETHEUS_PORT`` (default 9464;
``0`` picks a free port, logged), ``QTASKS_PROMETHEUS_HOST`` (default ``127.0.0.1``),
``QTASKS_PROMETHEUS_BUCKETS`` (histogram bounds in seconds, e.g. ``0.1,1,10``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Final

from qtasks_hooks import hookimpl

from .metrics import DEFAULT_BUCKETS, Metrics, parse_buckets
from .server import MetricsServer

if TYPE_CHECKING:
    from qtasks_core import QueueTasks, Worker
    from qtasks_core.schemas import TaskPrioritySchema

log = logging.getLogger("qtasks.prometheus")

ENV_PORT: Final = "QTASKS_PROMETHEUS_PORT"
ENV_HOST: Final = "QTASKS_PROMETHEUS_HOST"
ENV_BUCKETS: Final = "QTASKS_PROMETHEUS_BUCKETS"
DEFAULT_PORT: Final = 9464
DEFAULT_HOST: Final = "127.0.0.1"
#: A scrape gives the backend this long to report the queue depth.
STATS_TIMEOUT: Final = 5.0


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("moving the metrics endpoint failed", exc_info=future.exception())


class PrometheusPlugin:
    """Exports the metrics of the worker process it is loaded in.

    One instance serves a whole process: if several workers run in it (embedded apps),
    they share the counters and the endpoint, and ``qtasks_queue_depth`` adds up the
    queues of their apps. ``host``/``port``/``buckets`` override the environment.
    """

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        buckets: Sequence[float] | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._buckets = tuple(buckets) if buckets is not None else None
        self.metrics: Metrics | None = None
        self.server: MetricsServer | None = None
        self._server_loop: asyncio.AbstractEventLoop | None = None
        self._workers: dict[Worker, asyncio.AbstractEventLoop] = {}
        # (worker id, task uuid) -> perf_counter() at worker_execute_before.
        self._started: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    # -- what callers can read -------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The port the endpoint listens on, ``None`` while it does not."""
        return self.server.port if self.server is not None else None

    @property
    def running(self) -> int:
        """Task runs between ``worker_execute_before`` and ``worker_execute_after``."""
        with self._lock:
            return len(self._started)

    # -- lifecycle -------------------------------------------------------------------

    @hookimpl
    async def worker_start(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        try:
            host, port, buckets = self._settings()
        except ValueError as exc:
            log.error("Prometheus metrics disabled: %s", exc)
            return
        with self._lock:
            if self.metrics is None:
                self.metrics = Metrics(buckets)
            self._workers[worker] = loop
            if self._server_loop is not None:
                return  # another worker of this process already serves the endpoint
            self._server_loop = loop
        await self._open(host, port)

    @hookimpl
    async def worker_stop(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._workers.pop(worker, None)
            for key in [k for k in self._started if k[0] == worker.id]:
                del self._started[key]  # runs cut short by the shutdown never finish
            if self.server is None or self._server_loop is not loop:
                return
            if any(other is loop for other in self._workers.values()):
                return  # the server's loop still runs a worker: keep serving
            server, self.server, self._server_loop = self.server, None, None
            successor = next(iter(self._workers.values()), None)
            if successor is not None:
                self._server_loop = successor
        await server.close()
        if successor is None:
            log.info("Prometheus metrics endpoint closed")
            return
        # The endpoint lived in this worker's loop, which ends: move it to a live one
        # (same port). Not awaited: that loop may be ending too.
        try:
            moved = asyncio.run_coroutine_threadsafe(
                self._open(server.host, server.port), successor
            )
        except RuntimeError:  # that loop is closed: its worker is gone as well
            with self._lock:
                if self._server_loop is successor:
                    self._server_loop = None
            return
        moved.add_done_callback(_log_failure)

    async def _open(self, host: str, port: int | None) -> None:
        loop = asyncio.get_running_loop()
        server = MetricsServer(self._render, host, port or 0)
        try:
            await server.start()
        except OSError as exc:
            with self._lock:
                if self._server_loop is loop:
                    self._server_loop = None
            log.error(
                "cannot serve Prometheus metrics on %s:%s (%s); set %s to a free port, "
                "or 0 to pick one",
                host,
                port,
                exc,
                ENV_PORT,
            )
            return
        with self._lock:
            # A handed-over endpoint may arrive after the workers of its loop stopped.
            orphan = not any(other is loop for other in self._workers.values())
            if orphan:
                if self._server_loop is loop:
                    self._server_loop = None
            else:
                self.server = server
        if orphan:
            await server.close()
            return
        log.info("Prometheus metrics at %s", server.url)

    def _settings(self) -> tuple[str, int, tuple[float, ...]]:
        host = self._host or os.environ.get(ENV_HOST) or DEFAULT_HOST
        port = self._port
        if port is None:
            raw = os.environ.get(ENV_PORT, "").strip()
            try:
                port = int(raw) if raw else DEFAULT_PORT
            except ValueError:
                raise ValueError(f"{ENV_PORT}={raw!r} is not a port number") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range (0-65535)")
        buckets = self._buckets
        if buckets is None:
            raw = os.environ.get(ENV_BUCKETS, "").strip()
            buckets = parse_buckets(raw) if raw else DEFAULT_BUCKETS
        return host, port, buckets

    # -- a task's run ----------------------------------------------------------------

    @hookimpl(trylast=True)  # last: closest to the task itself
    def worker_execute_before(self, worker: Worker, task_broker: TaskPrioritySchema) -> None:
        with self._lock:
            self._started[(worker.id, task_broker.uuid)] = time.perf_counter()

    @hookimpl(tryfirst=True)  # first: before other plugins' after-work adds to the time
    def worker_execute_after(
        self, worker: Worker, task_broker: TaskPrioritySchema, model: Any
    ) -> None:
        now = time.perf_counter()
        with self._lock:
            started = self._started.pop((worker.id, task_broker.uuid), None)
        metrics = self.metrics
        if metrics is None:  # worker_start did not run for this plugin instance
            return
        seconds = None if started is None else now - started
        metrics.task_finished(task_broker.task_name, str(model.status), seconds)

    # -- a scrape --------------------------------------------------------------------

    async def _render(self) -> str:
        with self._lock:
            apps: dict[tuple[str, str], QueueTasks] = {}
            for worker in self._workers:
                app = worker.app
                apps.setdefault((app.name, app.backend.location), app)
            running = len(self._started)
            metrics = self.metrics
        assert metrics is not None
        depth: int | None = None
        up: bool | None = None
        if apps:
            depth, up = 0, True
            for app in apps.values():
                try:
                    stats = await asyncio.wait_for(app.backend.stats(), STATS_TIMEOUT)
                except Exception as exc:
                    log.warning("queue depth of app %r unavailable: %r", app.name, exc)
                    depth, up = None, False
                    break
                depth += sum(stats.queued.values())
        return metrics.render(running=running, queue_depth=depth, backend_up=up)
