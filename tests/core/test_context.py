"""A task runs in the context its worker's triggers ran in: a request id that a plugin
sets in ``worker_execute_before`` is seen by async, plain and generator tasks alike, and
by the tasks they enqueue (the way request ids, tracing and logging context travel)."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any

import pytest

from qtasks_core import QueueTasks, hookimpl
from tests.support import wait_for

REQUEST: contextvars.ContextVar[str | None] = contextvars.ContextVar("request", default=None)


class RequestIds:
    """Carries the current request id into every task enqueued under it, and sets it
    again in the worker before the task runs."""

    @hookimpl
    def qtasks_add_task_before_broker(self, extra: dict[str, Any]) -> dict[str, Any] | None:
        request = REQUEST.get()
        return None if request is None else {"extra": {**extra, "request": request}}

    @hookimpl
    def worker_execute_before(self, task_broker: Any) -> None:
        REQUEST.set(task_broker.extra.get("request"))


class AsyncRequestIds(RequestIds):
    """The same, its worker trigger an async impl."""

    @hookimpl
    async def worker_execute_before(self, task_broker: Any) -> None:  # type: ignore[override]
        REQUEST.set(task_broker.extra.get("request"))


@pytest.fixture(params=[RequestIds, AsyncRequestIds])
def traced(
    app: QueueTasks, request: pytest.FixtureRequest
) -> Iterator[dict[str, list[str | None]]]:
    seen: dict[str, list[str | None]] = {}

    @app.task(name="plain")
    def plain(child: str | None = None) -> None:
        seen.setdefault("plain", []).append(REQUEST.get())
        if child:
            app.add_task(child)  # from the task's thread: the sync edge

    @app.task(name="gen")
    def gen() -> Iterator[int]:
        seen.setdefault("gen", []).append(REQUEST.get())
        yield 1
        seen.setdefault("gen", []).append(REQUEST.get())
        yield 2

    @app.task(name="coro")
    async def coro(child: str | None = None) -> None:
        seen.setdefault("coro", []).append(REQUEST.get())
        if child:
            await app.add_task_async(child)

    @app.task(name="leaf")
    def leaf() -> None:
        seen.setdefault("leaf", []).append(REQUEST.get())

    app.add_plugin(request.param(), name="request-ids")
    yield seen


def _run_under(app: QueueTasks, request: str, calls: list[tuple[Any, ...]], done: Any) -> None:
    token = REQUEST.set(request)
    try:
        tasks = [app.add_task(*call) for call in calls]
    finally:
        REQUEST.reset(token)
    with app.running_worker():
        for task in tasks:
            assert app.wait(task.uuid, timeout=10).status == "success"
        wait_for(done, timeout=10, what="the tasks the tasks enqueued")


def test_plain_generator_and_async_tasks_see_what_the_worker_triggers_set(
    app: QueueTasks, traced: dict[str, list[str | None]]
) -> None:
    calls = [("plain", "leaf"), ("gen",), ("coro", "leaf")]
    _run_under(app, "req-1", calls, lambda: len(traced.get("leaf", [])) == 2)
    assert traced["plain"] == ["req-1"]
    assert traced["gen"] == ["req-1", "req-1"]  # on both of its steps
    assert traced["coro"] == ["req-1"]
    # The children, one enqueued from a thread and one from the loop, carried it on.
    assert traced["leaf"] == ["req-1", "req-1"]
