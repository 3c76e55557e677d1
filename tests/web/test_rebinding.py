"""A real ``qtasks web`` process under attack: a page of another site whose name now
resolves to 127.0.0.1 (DNS rebinding) sends its own ``Host`` and ``Origin``; and the
command's refusal to listen beyond loopback without a token."""

from __future__ import annotations

import html
import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qtasks_core import QueueTasks
from tests.support import free_port, pythonpath, wait_for

HERE = Path(__file__).resolve().parent
ATTACKER = "rebind.attacker.example"


class Dashboard:
    """``qtasks web`` as a user starts it, without a token: its output kept to read."""

    def __init__(self, redis_url: str, name: str, tmp: Path, *options: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if k != "QTASKS_WEB_TOKEN"}
        self.env.update(
            QTASKS_REDIS_URL=redis_url, QTASKS_TEST_APP=name, PYTHONPATH=pythonpath(HERE)
        )
        self.port = free_port()
        self.log = tmp / f"web-{self.port}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    *_qtasks("web", "--port", str(self.port), "--log-level", "warning"),
                    *options,
                ],
                env=self.env,
                cwd=HERE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._answers, 30, "the dashboard to answer")

    def _answers(self) -> bool:
        assert self.process.poll() is None, f"qtasks web exited: {self.log.read_text()}"
        try:
            return self.request("GET", "/login", host=f"127.0.0.1:{self.port}")[0] == 303
        except OSError:
            return False

    def request(
        self, method: str, path: str, *, host: str, headers: dict[str, str] | None = None,
        body: str | None = None,
    ) -> tuple[int, str]:  # fmt: skip
        """Send exactly these headers (a browser's, the attacker's), to loopback: the
        status and the page's text as a reader sees it (entities unescaped)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            data = (body or "").encode()
            if body is not None:
                conn.putheader("Content-Type", "application/x-www-form-urlencoded")
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data if body is not None else None)
            reply = conn.getresponse()
            return reply.status, html.unescape(reply.read().decode())
        finally:
            conn.close()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)
        return self.log.read_text()


def _qtasks(*args: str) -> list[str]:
    return [sys.executable, "-m", "qtasks_core", args[0], "-A", "webapps.dash:app", *args[1:]]


@pytest.fixture
def producer(redis_server: Any) -> Iterator[QueueTasks]:
    app = QueueTasks(
        f"web-rebind-{os.getpid()}", redis_url=redis_server.url, load_entry_points=False
    )
    yield app
    app.flush_all()
    app.stop()


@pytest.fixture
def web(redis_server: Any, producer: QueueTasks, tmp_path: Path) -> Iterator[Dashboard]:
    dashboard = Dashboard(redis_server.url, producer.name, tmp_path)
    yield dashboard
    dashboard.stop()


def test_a_rebound_attackers_page_can_neither_read_a_task_nor_cancel_it(web, producer) -> None:
    task = producer.add_task("add", 40, 2, secret="the-task-argument")
    attacker = f"{ATTACKER}:{web.port}"
    origin = {"Origin": f"http://{attacker}"}

    status, page = web.request("GET", f"/task?uuid={task.uuid}", host=attacker)
    assert status == 400
    assert f"not served under the host '{attacker}'" in page
    assert f"--allowed-host {ATTACKER}" in page  # says how to allow it, when wanted
    assert "the-task-argument" not in page and producer.name not in page

    # The attacker's own cookie and the token for it: its page could set both, for its
    # own name. The host is refused before any of it is looked at.
    forged = {**origin, "Cookie": "qtasks_csrf=chosen-by-the-attacker"}
    status, page = web.request(
        "POST", "/task/cancel", host=attacker, headers=forged, body=f"uuid={task.uuid}&csrf=x"
    )
    assert status == 400 and "not served under the host" in page
    # With a loopback Host (a proxy, a tool) the attacker's Origin is still refused.
    status, page = web.request(
        "POST", "/task/cancel", host=f"127.0.0.1:{web.port}", headers=forged,
        body=f"uuid={task.uuid}&csrf=x",
    )  # fmt: skip
    assert status == 403 and f"comes from http://{attacker}" in page

    assert producer.get(task.uuid).status == "new"  # type: ignore[union-attr]
    # The dashboard's own page, under its own name, shows the task.
    status, page = web.request("GET", f"/task?uuid={task.uuid}", host=f"localhost:{web.port}")
    assert status == 200 and "the-task-argument" in page


def test_an_allowed_host_is_served_and_may_act(redis_server, producer, tmp_path) -> None:
    task = producer.add_task("add", 1, 2)
    web = Dashboard(redis_server.url, producer.name, tmp_path, "--allowed-host", "ops.internal")
    try:
        host = f"ops.internal:{web.port}"
        assert web.request("GET", "/", host=host)[0] == 200
        cookie, csrf = _session(web, host)
        status, _ = web.request(
            "POST", "/task/cancel", host=host,
            headers={"Origin": f"http://{host}", "Cookie": cookie},
            body=f"uuid={task.uuid}&csrf={csrf}",
        )  # fmt: skip
        assert status == 303
        assert producer.get(task.uuid).status == "cancel"  # type: ignore[union-attr]
    finally:
        web.stop()


def _session(web: Dashboard, host: str) -> tuple[str, str]:
    """A browser's first page under ``host``: its CSRF cookie and the forms' token."""
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": host})
        reply = conn.getresponse()
        page = reply.read().decode()
        cookie = (reply.getheader("set-cookie") or "").partition(";")[0]
    finally:
        conn.close()
    token = page.partition('<meta name="csrf-token" content="')[2].partition('"')[0]
    assert cookie.startswith("qtasks_csrf=") and token
    return cookie, token


# -- listening beyond loopback ---------------------------------------------------------


@pytest.mark.parametrize("read_only", [False, True])
def test_a_non_loopback_address_without_a_token_is_refused(read_only: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QTASKS_WEB_TOKEN"}
    command = _qtasks("web", "--host", "0.0.0.0", "--port", str(free_port()))
    done = subprocess.run(
        [*command, *(["--read-only"] if read_only else [])],
        env=env, cwd=HERE, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "--host 0.0.0.0 without a token" in line
    assert "set a token (--token or QTASKS_WEB_TOKEN), or pass --insecure-no-auth" in line


def test_insecure_no_auth_listens_beyond_loopback_with_a_warning(
    redis_server, producer, tmp_path
) -> None:
    web = Dashboard(
        redis_server.url, producer.name, tmp_path, "--host", "0.0.0.0", "--insecure-no-auth"
    )
    try:
        assert web.request("GET", "/", host=f"127.0.0.1:{web.port}")[0] == 200
        # Every interface, but still not under another site's name.
        assert web.request("GET", "/", host=f"{ATTACKER}:{web.port}")[0] == 400
    finally:
        log = web.stop()
    assert "listens on 0.0.0.0 without a token (--insecure-no-auth)" in log
    assert "can cancel tasks and purge queues" in log
