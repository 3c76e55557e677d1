"""Echo tasks, extra task options and ``shared_task(awaiting=...)`` as the original
QTasks documents them (``self.ctx``, ``self.add_task``, ``self.extra``)."""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any

import pytest

from qtasks_core import QueueTasks, shared_task
from qtasks_core.errors import TaskOptionError


def test_self_ctx_and_self_add_task_in_echo_tasks(app: QueueTasks) -> None:
    @app.task
    def child(x: int) -> int:
        return x * 10

    @app.task(echo=True, tags=["demo"])
    async def parent(self: Any, x: int) -> dict[str, Any]:
        again = await self.add_task(x + 1, task_name="child", timeout=10)
        metadata = await self.ctx.get_metadata(cache=True)
        return {
            "uuid": self.ctx.task_uuid,
            "metadata_uuid": metadata.uuid,
            "metadata_status": metadata.status,
            "cached": (await self.ctx.get_metadata(cache=True)) is metadata,
            "child": again.returning,
            "priority_setting": self.ctx.get_config().task_default_priority,
            "broker_is_the_apps": self.ctx.get_component("broker") is app.broker,
            "tags": list(self.tags),
        }

    @app.task(echo=True)
    def sync_parent(self: Any) -> int:
        # A plain function: the same calls block instead of returning awaitables.
        assert self.ctx.get_metadata(cache=False).task_name == "sync_parent"
        return self.add_task(4, task_name="child", timeout=10).returning

    with app.running_worker():
        task = app.add_task("parent", 1, timeout=20)
        sync = app.add_task("sync_parent", timeout=20)
    assert task.status == "success", task.traceback
    assert task.returning == {
        "uuid": task.uuid,
        "metadata_uuid": task.uuid,
        "metadata_status": "process",
        "cached": True,
        "child": 20,
        "priority_setting": 0,
        "broker_is_the_apps": True,
        "tags": ["demo"],
    }
    assert sync.returning == 40, sync.traceback


@pytest.mark.parametrize("name", ["worker", "backend"])
def test_get_component_names_what_there_is(app: QueueTasks, name: str) -> None:
    @app.task(echo=True)
    async def look(self: Any) -> Any:
        return self.ctx.get_component(name)

    with app.running_worker():
        task = app.add_task("look", timeout=10)
    assert task.status == "error"
    assert f"get_component('{name}')" in (task.traceback or "")
    assert "'broker'" in (task.traceback or "")
    # The engine itself stays behind the components, whose methods fire the triggers.
    assert ("not handed to tasks" in (task.traceback or "")) == (name == "backend")


def test_extra_task_options_are_the_tasks_extra(app: QueueTasks) -> None:
    @app.task(echo=True, test="test")
    async def based(self: Any) -> Any:
        return self.extra

    assert based.extra == {"test": "test"}
    with app.running_worker():
        assert app.add_task("based", timeout=10).returning == {"test": "test"}
    # A near miss of a known option is a typo, never extra metadata.
    with pytest.raises(TaskOptionError, match=r"'retyr'.*misspelled 'retry'"):

        @app.task(retyr=3)
        def typo() -> None: ...


def test_shared_task_awaiting(app: QueueTasks) -> None:
    suffix = f"{os.getpid()}_{id(app)}"

    @shared_task(name=f"shared_async_{suffix}", awaiting=True)
    def double(x: int) -> int:
        return 2 * x

    @shared_task(name=f"shared_sync_{suffix}", awaiting=False)
    async def triple(x: int) -> int:
        return 3 * x

    with app.running_worker():
        # awaiting=True: add_task is a coroutine, on the sync app too.
        pending = double.add_task(21, timeout=10)
        assert inspect.iscoroutine(pending)
        assert asyncio.run(pending).returning == 42
        # awaiting=False: add_task blocks, whatever the function is.
        assert triple.add_task(2, timeout=10).returning == 6
    with pytest.raises(TaskOptionError, match="awaiting"):
        shared_task(awaiting="yes")


def test_shared_task_awaiting_true_on_the_async_app(redis_url: str) -> None:
    from qtasks_core.asyncio import QueueTasks as AsyncQueueTasks

    app = AsyncQueueTasks(f"compat-shared-{os.getpid()}", redis_url=redis_url)

    @shared_task(name=f"shared_on_async_{os.getpid()}", awaiting=True)
    async def hello(name: str) -> str:
        return f"Hello, {name}!"

    async def main() -> str:
        worker = asyncio.create_task(app.serve())
        try:
            return (await hello.add_task("World", timeout=10)).returning
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
            await app.flush_all()
            await app.stop()

    assert asyncio.run(main()) == "Hello, World!"


def test_get_metadata_without_cache_is_the_tasks_own_record(app: QueueTasks) -> None:
    # The original's default: get_metadata() is get_metadata(cache=True).
    @app.task(echo=True)
    async def async_meta(self: Any) -> list[Any]:
        task = await self.ctx.get_metadata()
        return [task.uuid == self.ctx.task_uuid, task.status]

    @app.task(echo=True)
    def sync_meta(self: Any) -> str:
        return self.ctx.get_metadata().task_name

    @app.task(echo=True)
    def wrong_cache(self: Any) -> Any:
        return self.ctx.get_metadata(cache="tags")

    with app.running_worker():
        first = app.add_task("async_meta", timeout=20)
        second = app.add_task("sync_meta", timeout=20)
        wrong = app.add_task("wrong_cache", timeout=20)
    assert first.returning == [True, "process"], first.traceback
    assert second.returning == "sync_meta", second.traceback
    assert wrong.status == "error"
    assert "ctx.tags" in (wrong.traceback or "")
