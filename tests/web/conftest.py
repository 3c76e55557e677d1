"""Fixtures of the dashboard's tests: a dashboard over the suite's apps (memory and a
real Redis server, from tests/conftest.py), and a browser-like client for it."""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra")

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 under its TestClient; httpx is what the dev extra has.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from qtasks_core import QueueTasks
from qtasks_core.web import create_app

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_PAGE_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
#: Where the test client says it is: a loopback name, as `qtasks web` serves by default.
ORIGIN = "http://127.0.0.1:8080"


class Browser:
    """A TestClient that keeps cookies and sends forms as a page of the dashboard
    would: with the session's CSRF token and the dashboard's own Origin."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def csrf(self, path: str = "/") -> str:
        """The session's CSRF token, as every form of the page carries it."""
        page = self.client.get(path, follow_redirects=True)
        assert self.client.cookies.get("qtasks_csrf"), f"{path} set no CSRF cookie"
        [token] = _PAGE_CSRF.findall(page.text)
        for found in _CSRF.findall(page.text):
            assert found == token, "a form carries another token than the page's"
        return token

    def post(self, path: str, data: dict[str, str], *, origin: str | None = ORIGIN) -> Any:
        headers = {"Origin": origin} if origin is not None else {}
        return self.client.post(path, data=data, headers=headers, follow_redirects=False)

    def act(self, path: str, **fields: str) -> Any:
        """Submit an action's form as its button would."""
        return self.post(path, {"csrf": self.csrf(), **fields})


@pytest.fixture
def dashboard() -> Iterator[Callable[..., Browser]]:
    """``dashboard(app, read_only=..., token=...)``: a browser on that app's dashboard,
    at :data:`ORIGIN` (``base_url=`` for another)."""
    clients: list[TestClient] = []

    def open_dashboard(app: QueueTasks, *, base_url: str = ORIGIN, **options: Any) -> Browser:
        client = TestClient(create_app(app, **options), base_url=base_url)
        client.__enter__()
        clients.append(client)
        return Browser(client)

    yield open_dashboard
    for client in clients:
        client.__exit__(None, None, None)


def make_dead_letter(app: QueueTasks, task_name: str, *args: object) -> str:
    """Queue a task and set it aside as a worker does with one that kept killing its
    workers: claimed, then buried with a reason. Through the backend's contract, as
    the backend suite does: no public method makes a dead letter on purpose."""
    task = app.add_task(task_name, *args)

    async def bury() -> None:
        claimed = await app.backend.claim(1, "dashboard-test", 30.0, 5)
        [record] = claimed.tasks
        assert record["uuid"] == task.uuid
        assert await app.backend.dead_letter(
            task.uuid, record["token"], "kept killing its workers (3 deliveries)", '{"raw": 1}'
        )

    asyncio.run(bury())
    return task.uuid


def make_dead_letters(app: QueueTasks, task_name: str, n: int) -> list[str]:
    """``n`` dead letters, as :func:`make_dead_letter` makes one, claimed and set aside
    200 at a time; their ids, oldest first."""
    tasks = app.add_tasks([(task_name, (i, i)) for i in range(n)])

    async def bury() -> list[str]:
        buried: list[str] = []
        while len(buried) < n:
            claimed = await app.backend.claim(200, "dashboard-test", 30.0, 5)
            for record in claimed.tasks:
                reason = f"kept killing its workers (letter {len(buried)})"
                assert await app.backend.dead_letter(record["uuid"], record["token"], reason, "")
                buried.append(record["uuid"])
        return buried

    buried = asyncio.run(bury())
    assert sorted(buried) == sorted(t.uuid for t in tasks)
    return buried
