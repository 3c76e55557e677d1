"""Progress and watch on Redis and memory, in one process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qtasks_core import QueueTasks, Task
from qtasks_core.errors import TaskOptionError, TaskTimeoutError


def test_watch_yields_each_update_then_the_end(app: QueueTasks) -> None:
    @app.task(name="steps", echo=True)
    async def steps(ctx: Any, n: int) -> int:
        for i in range(n):
            await asyncio.sleep(0.02)
            assert await ctx.set_progress(i + 1, stage=f"s{i}")
        return n

    quiet = app.add_task("steps", 0).uuid  # ends without any progress
    uuid = app.add_task("steps", 3).uuid

    async def main() -> tuple[list[Task], list[Task]]:
        worker = asyncio.create_task(app.worker().run(burst=True))
        seen = [t async for t in app.watch_async(uuid, timeout=10)]
        plain = [t async for t in app.watch_async(quiet, timeout=10)]
        await worker
        return seen, plain

    seen, plain = asyncio.run(main())
    assert [(t.progress or {}).get("value") for t in seen[:-1]] == [1, 2, 3]
    assert [(t.progress or {}).get("meta") for t in seen[:-1]] == [
        {"stage": "s0"}, {"stage": "s1"}, {"stage": "s2"}
    ]  # fmt: skip
    assert (seen[-1].status, seen[-1].returning) == ("success", 3)
    assert [(t.status, t.returning) for t in plain] == [("success", 0)]


def test_a_watch_that_runs_out_says_so(app: QueueTasks) -> None:
    @app.task(name="idle")
    def idle() -> None:
        return None

    uuid = app.add_task("idle").uuid  # no worker runs it
    with pytest.raises(TaskTimeoutError) as caught:
        list(app.watch(uuid, timeout=0.3))
    assert caught.value.uuid == uuid  # type: ignore[attr-defined]
    with pytest.raises(TaskOptionError, match="no task"):
        list(app.watch("unknown-uuid", timeout=1))


def test_bad_progress_is_refused_naming_it(app: QueueTasks) -> None:
    errors: list[str] = []

    @app.task(name="bad", echo=True)
    def bad(ctx: Any) -> None:
        for value in ("half", True, float("nan")):
            try:
                ctx.set_progress(value)
            except TaskOptionError as exc:
                errors.append(str(exc))
        assert ctx.set_progress(0.5) is True

    app.add_task("bad")
    asyncio.run(app.worker().run(burst=True))
    assert len(errors) == 3 and all("set_progress takes a number" in e for e in errors)
