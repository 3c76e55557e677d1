"""Unique tasks: one task per key while it is queued or running, atomically."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from qtasks_core import QueueTasks
from qtasks_core.errors import TaskOptionError
from qtasks_core.starter import Starter


def _register(app: QueueTasks) -> list[int]:
    ran: list[int] = []

    @app.task(name="invoice")
    def invoice(n: int) -> int:
        ran.append(n)
        return n

    return ran


def test_a_second_enqueue_with_the_key_returns_the_first_task(app: QueueTasks) -> None:
    ran = _register(app)
    first = app.send_task("invoice", [1], unique_key="invoice:42")
    again = app.send_task("invoice", [2], unique_key="invoice:42")
    other = app.send_task("invoice", [3], unique_key="invoice:43")
    assert again.uuid == first.uuid and again.args == (1,)
    assert other.uuid != first.uuid
    Starter(app, app.worker(), burst=True).start()
    assert sorted(ran) == [1, 3]
    # Ended: the key is free again.
    later = app.send_task("invoice", [4], unique_key="invoice:42")
    assert later.uuid != first.uuid and later.status == "new"


def test_unique_for_holds_the_key_after_the_task_ended(app: QueueTasks) -> None:
    ran = _register(app)
    first = app.send_task("invoice", [1], unique_key="k", unique_for=timedelta(minutes=10))
    Starter(app, app.worker(), burst=True).start()
    assert app.get(first.uuid).status == "success"  # type: ignore[union-attr]
    again = app.send_task("invoice", [2], unique_key="k")
    assert (again.uuid, again.status) == (first.uuid, "success")
    assert ran == [1]


def test_fifty_concurrent_enqueues_make_one_task(app: QueueTasks) -> None:
    _register(app)

    async def main() -> set[str]:
        sent = await asyncio.gather(
            *(app.send_task_async("invoice", [i], unique_key="once") for i in range(50))
        )
        return {t.uuid for t in sent}

    uuids = asyncio.run(main())
    assert len(uuids) == 1
    assert len(app.list_tasks(status="new").tasks) == 1


@pytest.mark.parametrize(
    ("kw", "names"),
    [
        ({"unique_key": ""}, "unique_key must be a non-empty string"),
        ({"unique_key": 42}, "unique_key must be a non-empty string"),
        ({"unique_key": "k", "unique_for": 0}, "unique_for must be more than 0"),
        ({"unique_key": "k", "unique_for": -1}, "unique_for must be"),
        ({"unique_for": 5}, "unique_for needs a unique_key"),
    ],
)
def test_bad_unique_options_are_refused(app: QueueTasks, kw: dict, names: str) -> None:
    _register(app)
    with pytest.raises(TaskOptionError, match=names):
        app.send_task("invoice", [1], **kw)
    assert app.list_tasks(status="new").tasks == []
