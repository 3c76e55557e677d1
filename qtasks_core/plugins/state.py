"""State: one shared object per worker process, injected by annotation.

::

    class Counter(State):
        hits = 0

    @app.task
    async def hit(state: Counter) -> int:
        async with state.lock:
            state.hits += 1
            return state.hits

Every task of a worker that asks for ``Counter`` gets the same instance; a subclass
of :class:`State` is its own state. ``state.lock`` is an ``asyncio.Lock`` for updates
across awaits (plain-function tasks run in threads: use ``state.thread_lock``).

A state is also a key-value store, the original QTasks' ``AsyncState`` API (its name
is kept as an alias)::

    class Session(AsyncState):
        pass

    @app.task
    async def step(state: Session) -> dict:
        await state.set("phase", "await_phone")
        await state.update(step=1, prompt="Enter phone number")
        await state.delete("prompt")
        return await state.get_all()       # {"phase": "await_phone", "step": 1}

The store is apart from the attributes (a key never hides a method or ``lock``).
Each call is atomic; a read-then-write across awaits needs ``async with state.lock``,
which the key-value methods never take themselves. Like the attributes, the store
belongs to one worker process: not shared across processes, gone on restart.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

from qtasks_hooks import hookimpl

from .._introspect import parameters, type_hints
from ..executor import TaskExecutor


class State:
    """Base class of per-worker shared state; subclass it and annotate a parameter."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.thread_lock = threading.Lock()
        self._values: dict[str, Any] = {}
        # Held only around one dict operation, never across an await: a task holding
        # ``lock`` or ``thread_lock`` can still call every method.
        self._values_lock = threading.Lock()

    async def get(self, key: str | None = None, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when there is none; with no
        ``key``, a copy of every stored value (as :meth:`get_all`)."""
        if key is None:
            return await self.get_all()
        with self._values_lock:
            return self._values.get(key, default)

    async def get_all(self) -> dict[str, Any]:
        """A copy of every stored key and value."""
        with self._values_lock:
            return dict(self._values)

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        with self._values_lock:
            self._values[key] = value

    async def update(self, **values: Any) -> dict[str, Any]:
        """Store each keyword argument under its name; returns a copy of every value."""
        with self._values_lock:
            self._values.update(values)
            return dict(self._values)

    async def delete(self, key: str) -> None:
        """Remove ``key`` (nothing happens when it is not stored)."""
        with self._values_lock:
            self._values.pop(key, None)

    async def clear(self) -> None:
        """Remove every stored key."""
        with self._values_lock:
            self._values.clear()


#: The original QTasks' name (``qtasks.plugins.states.AsyncState``) for :class:`State`.
AsyncState = State


@functools.lru_cache(maxsize=1024)
def _states_of(func: Any) -> dict[str, type[State]]:
    """Parameters of ``func`` annotated with a ``State`` subclass (cached per function)."""
    hints = type_hints(func)
    return {n: c for n, c in hints.items() if isinstance(c, type) and issubclass(c, State)}


class StatePlugin:
    """Injects the worker's instance of each ``State`` subclass a task asks for."""

    def __init__(self) -> None:
        self._states: dict[type[State], State] = {}

    @hookimpl
    def task_executor_args_replace(
        self, task_executor: TaskExecutor, args: list[Any], kw: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]] | None:
        func = task_executor.task_func.func
        wanted = {name: cls for name, cls in _states_of(func).items() if name not in kw}
        if not wanted:
            return None
        kw = dict(kw)
        names = [p.name for p in parameters(func)]
        for name, cls in wanted.items():
            if names.index(name) < len(args) + (1 if task_executor.task_func.echo else 0):
                continue  # given positionally by the caller
            if cls not in self._states:
                self._states[cls] = cls()
            kw[name] = self._states[cls]
        return list(args), kw
