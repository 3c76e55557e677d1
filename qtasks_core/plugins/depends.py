"""Dependency injection: ``Depends(func, scope=...)`` parameters.

A parameter asks for a dependency in either of two forms, the FastAPI idioms::

    async def report(day: str, conn=Depends(db)): ...                 # a default value
    async def report(day: str, conn: Annotated[Conn, Depends(db)]): ...  # an annotation

``func`` may be a function, a coroutine function, a (async) generator function or
return a (async) context manager. The scope says how long a value lives:

=================  =============================================================
scope              value
=================  =============================================================
``task``           one per task, closed when the task ends on every path (success,
                   error, cancel, timeout); concurrent tasks never close each
                   other's resources
``worker``         one per process, shared by its tasks, closed at ``worker_stop``
``broker``         one per process, shared, closed when the app's broker stops
``storage``        one per process, shared, closed when the app's storage stops
``global_config``  one per process, shared, closed when the app's global config stops
=================  =============================================================

The scope is a string or a :class:`ScopeEnum` member (the original QTasks' names)::

    async def db():
        conn = await connect()
        try:
            yield conn
        finally:
            await conn.close()

    @app.task
    async def report(day: str, conn: Annotated[Conn, Depends(db, scope=ScopeEnum.WORKER)]):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from qtasks_hooks import hookimpl

from .._introspect import parameters
from ..executor import TaskExecutor
from ..schemas import FinishedModel, TaskPrioritySchema


class ScopeEnum(StrEnum):
    """How long a ``Depends`` value lives (the original QTasks' scopes, all honoured)."""

    TASK = "task"
    WORKER = "worker"
    BROKER = "broker"
    STORAGE = "storage"
    GLOBAL_CONFIG = "global_config"


class Depends:
    """Marks a parameter whose value comes from ``func`` (see the module docstring).

    :param func: makes the value: a function, coroutine function, (async) generator
        function, or a callable returning a (async) context manager.
    :param scope: a :class:`ScopeEnum` member or its value; default ``"task"``.
    :raises TypeError: ``func`` is not callable.
    :raises ValueError: ``scope`` is not one of the scopes (raised where the task is
        declared, since the marker is built with the function).
    """

    __slots__ = ("func", "scope")

    def __init__(self, func: Callable[..., Any], *, scope: ScopeEnum | str = ScopeEnum.TASK):
        if not callable(func):
            raise TypeError(
                f"Depends needs a callable that makes the value, not {func!r}: "
                "write Depends(get_session), without calling get_session"
            )
        try:
            self.scope = ScopeEnum(scope)
        except ValueError:
            names = ", ".join(repr(s.value) for s in ScopeEnum)
            raise ValueError(
                f"Depends scope {scope!r} does not exist; write one of {names} "
                "(or ScopeEnum.TASK, ScopeEnum.WORKER, ...)"
            ) from None
        self.func = func

    def __repr__(self) -> str:
        name = getattr(self.func, "__name__", self.func)
        return f"Depends({name!r}, scope={self.scope.value!r})"


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


def _annotated_depends(annotation: Any) -> Depends | None:
    """The ``Depends`` inside ``Annotated[T, ..., Depends(f)]`` (the last one wins, as
    in FastAPI), else ``None``."""
    if typing.get_origin(annotation) is not typing.Annotated:
        return None
    found = [m for m in annotation.__metadata__ if isinstance(m, Depends)]
    return found[-1] if found else None


def _hints_with_extras(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        annotations = getattr(func, "__annotations__", {})
        for name, annotation in annotations.items():
            # Left alone, such a parameter would get no value and the task would fail
            # with "missing argument", which hides the cause.
            if isinstance(annotation, str) and "Depends(" in annotation:
                raise TypeError(
                    f"parameter {name!r} of {getattr(func, '__qualname__', func)!r} is "
                    f"annotated {annotation!r}, which cannot be resolved ({exc}); with "
                    "string annotations (from __future__ import annotations) everything "
                    "the annotation names must be defined at module level, or write "
                    f"{name}=Depends(...) as a default value"
                ) from exc
        # The annotations that are already objects (not strings) still carry their
        # Annotated metadata.
        return {n: a for n, a in annotations.items() if not isinstance(a, str)}


@functools.lru_cache(maxsize=1024)
def depends_params(func: Callable[..., Any]) -> tuple[tuple[str, Depends], ...]:
    """Each parameter of ``func`` that asks for a dependency, with its marker, in
    signature order (cached per function): a ``Depends`` default, else a ``Depends``
    in its ``Annotated`` annotation.

    :raises TypeError: an annotation that mentions ``Depends`` does not resolve.
    """
    hints = _hints_with_extras(func)
    found = []
    for param in parameters(func):
        if isinstance(param.default, Depends):
            found.append((param.name, param.default))
        elif (dep := _annotated_depends(hints.get(param.name))) is not None:
            found.append((param.name, dep))
    return tuple(found)


class DependsPlugin:
    """Resolves ``Depends`` parameters before a task runs and closes them after."""

    def __init__(self) -> None:
        self._task_stacks: dict[str, contextlib.AsyncExitStack] = {}
        # Process-lived values, one stack per scope, each closed by its own stop trigger.
        self._stacks: dict[ScopeEnum, contextlib.AsyncExitStack] = {}
        self._values: dict[tuple[ScopeEnum, Callable[..., Any]], Any] = {}
        self._lock = asyncio.Lock()

    @hookimpl
    def task_executor_args_replace(
        self, task_executor: TaskExecutor, args: list[Any], kw: dict[str, Any]
    ) -> Awaitable[tuple[list[Any], dict[str, Any]]] | None:
        # A plain impl that returns an awaitable only when there is work: tasks without
        # Depends parameters stay on the caller's synchronous fast path.
        wanted = [(n, d) for n, d in depends_params(task_executor.task_func.func) if n not in kw]
        if not wanted:
            return None
        return self._resolve(task_executor, args, kw, wanted)

    async def _resolve(
        self,
        task_executor: TaskExecutor,
        args: list[Any],
        kw: dict[str, Any],
        wanted: list[tuple[str, Depends]],
    ) -> tuple[list[Any], dict[str, Any]]:
        kw = dict(kw)
        uuid = task_executor.task_broker.uuid
        for name, dep in wanted:
            if dep.scope is ScopeEnum.TASK:
                stack = self._task_stacks.setdefault(uuid, contextlib.AsyncExitStack())
                kw[name] = await _enter(dep.func, stack)
            else:
                kw[name] = await self._shared(dep)
        return list(args), kw

    async def _shared(self, dep: Depends) -> Any:
        key = (dep.scope, dep.func)
        # One lock: two tasks starting together must not both make the value.
        async with self._lock:
            if key not in self._values:
                stack = self._stacks.setdefault(dep.scope, contextlib.AsyncExitStack())
                self._values[key] = await _enter(dep.func, stack)
        return self._values[key]

    async def _close(self, scope: ScopeEnum) -> None:
        stack = self._stacks.pop(scope, None)
        if stack is None:
            return
        for key in [k for k in self._values if k[0] is scope]:
            del self._values[key]
        await stack.aclose()

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
        await self._close(ScopeEnum.WORKER)

    @hookimpl
    async def broker_stop(self) -> None:
        await self._close(ScopeEnum.BROKER)

    @hookimpl
    async def storage_stop(self) -> None:
        await self._close(ScopeEnum.STORAGE)

    @hookimpl
    async def global_config_stop(self) -> None:
        await self._close(ScopeEnum.GLOBAL_CONFIG)
