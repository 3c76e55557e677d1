"""Every operation of the app has its three forms: ``<name>_async`` (a coroutine on both
apps), ``<name>`` blocking on ``qtasks_core.QueueTasks``, and ``<name>`` a coroutine on
``qtasks_core.asyncio.QueueTasks``. An operation added to the base without one of its
edges fails here, not in a user's hands."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from qtasks_core import QueueTasks
from qtasks_core.app import BaseQueueTasks
from qtasks_core.asyncio import QueueTasks as AsyncQueueTasks

#: Public methods that are no operation of the app's data (declaring, running a
#: worker): each exists in one form only, on purpose.
NOT_OPERATIONS = {
    "task",
    "periodic",
    "include_router",
    "add_plugin",
    "signature",
    "current",
    "worker",
    "serve",
    "running_worker",
    "run_forever",
}
#: Where the asyncio app's edge is its own coroutine, not the base's: a wait that runs
#: out returns None there, as in the original QTasks.
ASYNC_OWN = {"add_task", "send_task"}
#: Where the sync app's edge does more than block on the coroutine.
SYNC_OWN = {"stop"}


def _is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)


def _operations() -> list[str]:
    return sorted(
        name.removesuffix("_async")
        for name, member in inspect.getmembers(BaseQueueTasks)
        if name.endswith("_async") and not name.startswith("_") and _is_async(member)
    )


def test_the_operations_are_found() -> None:
    # The list the other tests walk is the base's coroutines: it cannot be empty or
    # miss the well-known ones.
    assert {"add_task", "get", "abort", "watch", "start_workflow", "schedules"} <= set(
        _operations()
    )


@pytest.mark.parametrize("name", _operations())
def test_each_operation_blocks_on_the_sync_app(name: str) -> None:
    edge = getattr(QueueTasks, name, None)
    assert edge is not None, f"QueueTasks lacks {name}: add `{name} = sync_edge(...)`"
    assert not _is_async(edge), f"QueueTasks.{name} must block, not be a coroutine"
    if name not in SYNC_OWN:
        assert edge.__qtasks_edge__ is getattr(BaseQueueTasks, f"{name}_async")
        # The signature a user's IDE shows is the coroutine's.
        coroutine = getattr(BaseQueueTasks, f"{name}_async")
        assert inspect.signature(edge) == inspect.signature(coroutine)
    assert getattr(QueueTasks, f"{name}_async") is getattr(BaseQueueTasks, f"{name}_async")


@pytest.mark.parametrize("name", _operations())
def test_each_operation_is_a_coroutine_on_the_asyncio_app(name: str) -> None:
    edge = getattr(AsyncQueueTasks, name, None)
    assert edge is not None, f"asyncio.QueueTasks lacks {name}"
    assert _is_async(edge), f"asyncio.QueueTasks.{name} must be a coroutine"
    if name not in ASYNC_OWN:
        assert edge is getattr(BaseQueueTasks, f"{name}_async")
    assert getattr(AsyncQueueTasks, f"{name}_async") is getattr(BaseQueueTasks, f"{name}_async")


@pytest.mark.parametrize("app_class", [QueueTasks, AsyncQueueTasks])
def test_no_public_method_lacks_its_twin(app_class: type) -> None:
    operations = set(_operations())
    for name, member in inspect.getmembers(app_class, callable):
        if name.startswith("_") or name.endswith("_async") or isinstance(member, type):
            continue
        assert name in operations or name in NOT_OPERATIONS, (
            f"{app_class.__module__}.{app_class.__name__}.{name} has no {name}_async on "
            "BaseQueueTasks: write the operation once, as a coroutine there"
        )


def test_both_apps_run_the_same_operations(tmp_path: Any) -> None:
    """The edges are not only there: each form reaches the same task."""
    sync_app = QueueTasks("edges", "memory://", load_entry_points=False)

    @sync_app.task
    def add(a: int, b: int) -> int:
        return a + b

    task = sync_app.add_task("add", 1, 2)
    assert sync_app.get(task.uuid) == sync_app.get(task.uuid)
    assert sync_app.abort(task.uuid) == "cancelled"
    assert sync_app.get(task.uuid).status == "cancel"  # type: ignore[union-attr]
    assert [t.uuid for t in sync_app.list_tasks(status="cancel").tasks] == [task.uuid]
    assert sync_app.schedules() == []
    again = sync_app.retry(task.uuid)
    assert again.task_name == "add" and again.uuid != task.uuid
    sync_app.stop()

    async def main() -> None:
        app = AsyncQueueTasks("edges-async", "memory://", load_entry_points=False)
        app.task(name="add")(lambda a, b: a + b)
        queued = await app.add_task("add", 1, 2)
        assert queued is not None
        assert await app.abort(queued.uuid) == "cancelled"
        assert (await app.retry(queued.uuid)).task_name == "add"
        assert await app.schedules() == []
        assert (await app.list_workflows()).tasks == []
        assert await app.workflow(queued.uuid) is None
        assert await app.purge_queue("default") == 1
        await app.stop()

    asyncio.run(main())


def test_a_sync_edge_called_in_an_event_loop_names_its_coroutine() -> None:
    app = QueueTasks("edges-loop", "memory://", load_entry_points=False)

    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"await app\.abort_async\(\.\.\.\)"):
            app.abort("x")
        with pytest.raises(RuntimeError, match=r"await app\.watch_async\(\.\.\.\)"):
            next(iter(app.watch("x")))

    asyncio.run(main())
    app.stop()
