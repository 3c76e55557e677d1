"""Dependency injection: ``Depends(func, scope="task" | "worker")`` parameters.

``func`` may be a function, a coroutine function, a (async) generator function or
return a (async) context manager. With ``scope="task"`` each task gets its own value,
closed when the task ends on every path (success, error, cancel, timeout); with
``scope="worker"`` the value is made once per worker process, shared, and closed at
``worker_stop``. Concurrent tasks never close each other's resources.

::

    async def db():
        conn = await connect()
        try:
            yield conn
        finally:
            await conn.close()

    @app.task
    async def report(day: str, conn=Depends(db)): ...
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from qtasks_hooks import hookimpl

from .._introspect import parameters
from ..executor import TaskExecutor
from ..schemas import FinishedModel, TaskPrioritySchema


class Depends:
    """Marks a parameter whose value comes from ``func`` (see the module docstring)."""

    __slots__ = ("func", "scope")

    def __init__(self, func: Callable[..., Any], *, scope: Literal["task", "worker"] = "task"):
        if scope not in ("task", "worker"):
            raise ValueError(f"Depends scope must be 'task' or 'worker', not {scope!r}")
        self.func = func
        self.scope = scope

    def __repr__(self) -> str:
        return f"Depends({getattr(self.func, '__name__', self.func)!r}, scope={self.scope!r})"


async def _enter(func: Callable[..., Any], stack: contextlib.AsyncExitStack) -> Any:
    if inspect.isasyncgenfunction(func):
        return await stack.enter_async_context(contextlib.asynccontextmanager(func)())
    if inspect.isgeneratorfunction(func):
        return stack.enter_context(contextlib.contextmanager(func)())
    value = func()
    if inspect.isawaitable(value):
        value = await value
    if hasattr(value, "__aenter__"):
        return await stack.enter_async_context(value)
    if hasattr(value, "__enter__"):
        return stack.enter_context(value)
    return value


@functools.lru_cache(maxsize=1024)
def _depends_params(func: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    """The parameters of ``func`` whose default is a ``Depends`` (cached per function)."""
    return tuple(p for p in parameters(func) if isinstance(p.default, Depends))


class DependsPlugin:
    """Resolves ``Depends`` defaults before a task runs and closes them after."""

    def __init__(self) -> None:
        self._task_stacks: dict[str, contextlib.AsyncExitStack] = {}
        self._worker_stack = contextlib.AsyncExitStack()
        self._worker_values: dict[Callable[..., Any], Any] = {}
        self._worker_lock = asyncio.Lock()

    @hookimpl
    def task_executor_args_replace(
        self, task_executor: TaskExecutor, args: list[Any], kw: dict[str, Any]
    ) -> Awaitable[tuple[list[Any], dict[str, Any]]] | None:
        # A plain impl that returns an awaitable only when there is work: tasks without
        # Depends parameters stay on the caller's synchronous fast path.
        wanted = [p for p in _depends_params(task_executor.task_func.func) if p.name not in kw]
        if not wanted:
            return None
        return self._resolve(task_executor, args, kw, wanted)

    async def _resolve(
        self,
        task_executor: TaskExecutor,
        args: list[Any],
        kw: dict[str, Any],
        wanted: list[inspect.Parameter],
    ) -> tuple[list[Any], dict[str, Any]]:
        kw = dict(kw)
        uuid = task_executor.task_broker.uuid
        for param in wanted:
            dep: Depends = param.default
            if dep.scope == "worker":
                async with self._worker_lock:
                    if dep.func not in self._worker_values:
                        self._worker_values[dep.func] = await _enter(dep.func, self._worker_stack)
                kw[param.name] = self._worker_values[dep.func]
            else:
                stack = self._task_stacks.setdefault(uuid, contextlib.AsyncExitStack())
                kw[param.name] = await _enter(dep.func, stack)
        return list(args), kw

    @hookimpl
    def worker_execute_after(
        self, task_broker: TaskPrioritySchema, model: FinishedModel
    ) -> Awaitable[None] | None:
        # Fired on every path of a task, after it ran: the place to close its resources
        # (an awaitable only when the task had some, so others stay synchronous).
        stack = self._task_stacks.pop(task_broker.uuid, None)
        return None if stack is None else stack.aclose()

    @hookimpl
    async def worker_stop(self) -> None:
        self._worker_values.clear()
        await self._worker_stack.aclose()
        self._worker_stack = contextlib.AsyncExitStack()
