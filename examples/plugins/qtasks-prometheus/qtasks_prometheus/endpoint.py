"""The HTTP endpoint: prometheus_client's own server, with a standby for ``--processes N``.

``qtasks worker --processes N`` runs N children with the same environment, so each one
asks for the same port. Exactly one gets it (a listening port has one owner); in
multiprocess mode it serves every child's counts, so the others only wait: a standby
tries to bind again every :data:`STANDBY_RETRY` seconds and takes over when the owner
is gone (killed, restarted or stopped), without the supervisor's help.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.registry import Collector

log = logging.getLogger("qtasks.prometheus")

#: Seconds between a standby's attempts to take the port over.
STANDBY_RETRY: Final = 1.0


class Endpoint:
    """Serves ``registry`` on ``host:port`` (``/metrics``, or any path) from a thread.

    :param standby: on a busy port, wait for it (multiprocess mode: whoever owns it
        serves this process's counts too) instead of giving up with an error.
    """

    def __init__(
        self, registry: Collector, host: str, port: int, *, standby: bool, hint: str = ""
    ) -> None:
        self.registry = registry
        self.host = host
        self.requested_port = port
        self.standby = standby
        self._hint = hint
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: WSGIServer | None = None
        self._waiter: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        """The port served by this process, ``None`` while it serves none."""
        with self._lock:
            return None if self._server is None else int(self._server.server_port)

    def url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}/metrics"

    def open(self) -> None:
        """Bind now, or (standby) keep trying from a thread; blocking, call off the loop."""
        error = self._bind()
        if error is None:
            return
        if not self.standby:
            log.error(
                "cannot serve Prometheus metrics on %s:%s (%s); set QTASKS_PROMETHEUS_PORT "
                "to a free port, or 0 to pick one%s",
                self.host,
                self.requested_port,
                error,
                self._hint,
            )
            return
        log.info(
            "Prometheus metrics port %s:%s is served by another process (%s); this one "
            "(pid %d) takes over if that one stops",
            self.host,
            self.requested_port,
            error,
            os.getpid(),
        )
        self._waiter = threading.Thread(
            target=self._wait_for_port, name="qtasks-prometheus-standby", daemon=True
        )
        self._waiter.start()

    def _bind(self) -> OSError | None:
        with self._lock:
            if self._closing.is_set():
                return None
            try:
                server, _thread = start_http_server(
                    self.requested_port, addr=self.host, registry=self.registry
                )
            except OSError as exc:
                return exc
            self._server = server
            port = int(server.server_port)
        log.info("Prometheus metrics at %s (pid %d)", self.url(port), os.getpid())
        return None

    def _wait_for_port(self) -> None:
        while not self._closing.wait(STANDBY_RETRY):
            if self._bind() is None:
                return

    def close(self) -> None:
        """Stop serving (or waiting); blocking, call off the loop."""
        self._closing.set()
        waiter = self._waiter
        if waiter is not None:
            waiter.join()
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        log.info("Prometheus metrics endpoint closed")
