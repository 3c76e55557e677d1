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
