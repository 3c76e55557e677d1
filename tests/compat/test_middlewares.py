"""Task middlewares as the original QTasks documents them: ``TaskMiddleware``
subclasses, ``MyMiddleware(task_executor)`` then ``await instance()``; and anything
that could not run refused, never skipped."""

from __future__ import annotations

from typing import Any

import pytest

from qtasks_core import QueueTasks, hookimpl
from qtasks_core.errors import TaskOptionError
from qtasks_core.executor import TaskExecutor
from qtasks_core.middlewares import TaskMiddleware

calls: list[str] = []


class MyTaskMiddleware(TaskMiddleware):
    def __init__(self, task_executor: TaskExecutor):
        super().__init__(task_executor)

    async def __call__(self) -> TaskExecutor:
        executor = self.task_executor
        calls.append(f"{self.name} {executor.task_func.name} {executor.task_broker.uuid}")
        if executor.result is None:
            executor.kwargs["greeting"] = "Hi"  # before the task: its arguments
        else:
            executor.result = executor.result.upper()  # after it: its result
        return executor


class SyncNamedMiddleware(TaskMiddleware):
    """The form of the original's class docstring: a name, the executor set by hand."""

    def __init__(self, task_executor: TaskExecutor):
        super().__init__(name="SyncNamed")
        self.task_executor = task_executor

    def __call__(self) -> None:
        calls.append(self.name)


class NotAMiddleware:
    """What used to be instantiated and silently skipped."""

    def __init__(self, task_executor: TaskExecutor):
        self.task_executor = task_executor

    async def __call__(self) -> None:
        calls.append("never")


class NoCall(TaskMiddleware):
    pass


def test_the_originals_task_middleware_classes_run_before_and_after(app: QueueTasks) -> None:
    calls.clear()

    @app.task(
        middlewares_before=[MyTaskMiddleware, SyncNamedMiddleware],
        middlewares_after=[MyTaskMiddleware],
    )
    async def hello(name: str, greeting: str = "Hello") -> str:
        calls.append("task")
        return f"{greeting}, {name}!"

    with app.running_worker():
        task = hello.add_task("World", timeout=10)
    assert task.status == "success" and task.returning == "HI, WORLD!"
    uuid = task.uuid
    assert calls == [
        f"MyTaskMiddleware hello {uuid}",
        "SyncNamed",
        "task",
        f"MyTaskMiddleware hello {uuid}",
    ]


def test_middlewares_that_cannot_run_are_refused_when_the_task_is_declared(
    app: QueueTasks,
) -> None:
    # Needs the check_middlewares() call in QueueTasks.task (app.py).
    with pytest.raises(TaskOptionError, match="NotAMiddleware is not a TaskMiddleware"):

        @app.task(middlewares_before=[NotAMiddleware])
        async def one() -> None: ...

    with pytest.raises(TaskOptionError, match="NoCall does not define __call__"):

        @app.task(middlewares_after=[NoCall])
        async def two() -> None: ...

    with pytest.raises(TaskOptionError, match="give the class itself"):

        @app.task(middlewares_before=[MyTaskMiddleware(None)])  # type: ignore[arg-type]
        async def three() -> None: ...

    with pytest.raises(TaskOptionError, match=r"cannot be called as def mw\(task_executor, "):

        @app.task(middlewares_after=[lambda executor: None])
        async def four() -> None: ...

    assert not {"one", "two", "three", "four"} & set(app.tasks)


def test_a_middleware_that_cannot_run_fails_its_task_and_is_never_skipped(
    app: QueueTasks,
) -> None:
    calls.clear()

    @app.task
    async def job() -> str:
        calls.append("task")
        return "ran"

    class SwapMiddlewares:
        """A plugin that gives the task a middleware after it was declared."""

        @hookimpl
        def worker_run_task_before(self, task_func: Any) -> dict[str, Any]:
            spec = task_func.model_copy(update={"middlewares_before": (NotAMiddleware,)})
            return {"task_func": spec}

    app.add_plugin(SwapMiddlewares())
    with app.running_worker():
        task = job.add_task(timeout=10)
    assert task.status == "error"
    assert "NotAMiddleware is not a TaskMiddleware subclass" in (task.traceback or "")
    assert calls == []
