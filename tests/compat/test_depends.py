"""``Depends`` as the original QTasks documents it: ``Annotated[T, Depends(f, scope=)]``
with its ``ScopeEnum``, next to the default-value form."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pytest

import qtasks_core
from qtasks_core import QueueTasks
from qtasks_core.plugins.depends import Depends, ScopeEnum

# Module level, as the original's docs have it: string annotations resolve here.
events: list[str] = []


@asynccontextmanager
async def session_dep() -> AsyncIterator[int]:
    events.append("Open")
    yield 123
    events.append("Close")


def pool() -> Iterator[dict[str, Any]]:
    events.append("pool open")
    yield {"pool": True}
    events.append("pool close")


def test_depends_in_annotated_with_the_originals_scopes(app: QueueTasks) -> None:
    events.clear()

    @app.task
    async def test(dep: Annotated[int, Depends(session_dep, scope=ScopeEnum.TASK)]) -> int:
        events.append(f"use {dep}")
        return dep

    @app.task
    def query(
        n: int,
        db: Annotated[dict[str, Any], Depends(pool, scope=ScopeEnum.BROKER)],
        limit: int = Depends(lambda: 3),
    ) -> int:
        assert db == {"pool": True}
        return n * limit

    with app.running_worker(concurrency=3):
        assert test.add_task(timeout=10).returning == 123
        assert events == ["Open", "use 123", "Close"]
        tasks = [query.add_task(i) for i in range(4)]
        assert [app.wait(t.uuid, 10).returning for t in tasks] == [0, 3, 6, 9]
    # Made once for the process, closed when the app's broker stops.
    assert events.count("pool open") == 1 and "pool close" not in events
    app.stop()
    assert events[-1] == "pool close"


def test_scopes_by_name_and_an_unknown_scope_refused() -> None:
    assert qtasks_core.ScopeEnum is ScopeEnum and qtasks_core.Depends is Depends
    assert [Depends(pool, scope=s.value).scope for s in ScopeEnum] == list(ScopeEnum)
    # A default value is built where the function is defined: refused there.
    with pytest.raises(ValueError, match=r"scope 'process' does not exist; write one of"):

        def job(db: dict[str, Any] = Depends(pool, scope="process")) -> None: ...

    with pytest.raises(TypeError, match="without calling"):
        Depends(pool())  # type: ignore[arg-type]


def test_a_string_annotation_with_a_bad_scope_fails_its_task_saying_so(app: QueueTasks) -> None:
    # Under `from __future__ import annotations` (this module) an annotation is built
    # only when the worker reads it: the task fails with the message, never skipped.
    @app.task
    def job(db: Annotated[dict[str, Any], Depends(pool, scope="process")]) -> None: ...

    with app.running_worker():
        task = job.add_task(timeout=10)
    assert task.status == "error"
    assert "scope 'process' does not exist" in (task.traceback or "")
