"""The plugin: counts task runs in the worker triggers, serves them with Redis' gauges.

================================  =====================================================
trigger                           does
================================  =====================================================
``worker_start`` (async)          opens the endpoint (first worker of the process)
``worker_execute_before``         notes when a task run starts (keyed by its uuid)
``worker_execute_after``          counts the run by app, task, queue and status,
                                  observes its duration
``worker_stop`` (async)           closes the endpoint (last worker of the process)
================================  =====================================================

Configuration (read when the worker starts): ``QTASKS_PROMETHEUS_PORT`` (default 9464;
``0`` picks a free port, logged), ``QTASKS_PROMETHEUS_HOST`` (default ``127.0.0.1``),
``QTASKS_PROMETHEUS_BUCKETS`` (histogram bounds in seconds, e.g. ``0.1,1,10``), and
prometheus_client's ``PROMETHEUS_MULTIPROC_DIR`` for ``qtasks worker --processes N``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from qtasks_hooks import hookimpl

from .collector import RedisCollector
from .endpoint import Endpoint
from .metrics import DEFAULT_BUCKETS, ENV_MULTIPROC, Metrics, parse_buckets

if TYPE_CHECKING:
    from qtasks_core import QueueTasks, Worker
    from qtasks_core.schemas import TaskExecSchema, TaskPrioritySchema

log = logging.getLogger("qtasks.prometheus")

ENV_PORT: Final = "QTASKS_PROMETHEUS_PORT"
ENV_HOST: Final = "QTASKS_PROMETHEUS_HOST"
ENV_BUCKETS: Final = "QTASKS_PROMETHEUS_BUCKETS"
DEFAULT_PORT: Final = 9464
DEFAULT_HOST: Final = "127.0.0.1"
#: The queue label of a run whose task this worker does not know.
UNKNOWN_QUEUE: Final = "unknown"


class PrometheusPlugin:
    """Exports the metrics of the worker process it is loaded in.

    One instance per process (the entry point's): its workers share the counters and
    the endpoint. ``host``/``port``/``buckets`` override the environment.
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
        self.endpoint: Endpoint | None = None
        self._lock = threading.Lock()
        self._workers: dict[Worker, asyncio.AbstractEventLoop] = {}
        # (worker id, task uuid) -> perf_counter() at worker_execute_before.
        self._started: dict[tuple[str, str], float] = {}

    @property
    def port(self) -> int | None:
        """The port this process serves, ``None`` while it serves none."""
        endpoint = self.endpoint
        return None if endpoint is None else endpoint.port

    # -- lifecycle -------------------------------------------------------------------

    @hookimpl
    async def worker_start(self, worker: Worker) -> None:
        try:
            host, port, buckets = self._settings()
        except ValueError as exc:
            log.error("Prometheus metrics disabled: %s", exc)
            return
        with self._lock:
            if self.metrics is None:
                self.metrics = Metrics(buckets)
                self.metrics.registry.register(RedisCollector(self._sources))
            self._workers[worker] = asyncio.get_running_loop()
            if self.endpoint is not None:
                return  # another worker of this process already opened it
            multiprocess = self.metrics.multiprocess_dir is not None
            endpoint = self.endpoint = Endpoint(
                self.metrics.registry,
                host,
                port,
                # Only in multiprocess mode does the port's owner serve our counts.
                standby=multiprocess and port != 0,
                hint="" if multiprocess else f" ({ENV_MULTIPROC} lets one process serve all)",
            )
        # Binding resolves the host name: off the loop.
        await asyncio.to_thread(endpoint.open)

    @hookimpl
    async def worker_stop(self, worker: Worker) -> None:
        with self._lock:
            self._workers.pop(worker, None)
            for key in [k for k in self._started if k[0] == worker.id]:
                del self._started[key]  # runs cut short by the shutdown never finish
            if self._workers:
                return  # the endpoint stays for the workers still running
            endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            await asyncio.to_thread(endpoint.close)

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

    def _sources(self) -> list[tuple[QueueTasks, asyncio.AbstractEventLoop]]:
        """Each app of this process's workers once, with a loop one of them runs on."""
        with self._lock:
            apps: dict[tuple[str, str], tuple[QueueTasks, asyncio.AbstractEventLoop]] = {}
            for worker, loop in self._workers.items():
                app = worker.app
                apps.setdefault((app.name, app.backend.location), (app, loop))
        return list(apps.values())

    # -- a task's run ----------------------------------------------------------------

    @hookimpl(trylast=True)  # last: closest to the task itself
    def worker_execute_before(self, worker: Worker, task_broker: TaskPrioritySchema) -> None:
        with self._lock:
            self._started[(worker.id, task_broker.uuid)] = time.perf_counter()

    @hookimpl(tryfirst=True)  # first: before other plugins' after-work adds to the time
    def worker_execute_after(
        self,
        worker: Worker,
        task_func: TaskExecSchema | None,
        task_broker: TaskPrioritySchema,
        model: Any,
    ) -> None:
        now = time.perf_counter()
        with self._lock:
            started = self._started.pop((worker.id, task_broker.uuid), None)
        metrics = self.metrics
        if metrics is None:  # worker_start did not run for this plugin instance
            return
        # The queue it was claimed from (a core older than 0.1's claims carry none: the
        # task's declared one then).
        queue = getattr(task_broker, "queue", None) or (
            task_func.queue if task_func is not None else UNKNOWN_QUEUE
        )
        metrics.task_finished(
            worker.app.name,
            task_broker.task_name,
            queue,
            str(model.status),
            None if started is None else now - started,
        )
