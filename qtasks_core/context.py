"""``ctx``: what an ``echo=True`` task receives as its first argument.

Methods that talk to the backend work from both kinds of task: in an ``async def``
task they return an awaitable (``await ctx.get_task(uuid)``); in a plain ``def`` task,
which runs in a worker thread, they block and return the value.

The original QTasks passed a task object with the context at ``self.ctx``; ``ctx.ctx``
is the context itself, so ``self.ctx.task_uuid`` and ``self.add_task(...)`` written for
the original work with ``self`` being this object.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ._util import dumps
from .errors import TaskCancel, TaskOptionError, TaskPluginTriggerError

if TYPE_CHECKING:
    from .app import BaseQueueTasks
    from .config import QueueConfig
    from .executor import TaskExecutor
    from .schemas import Task, TaskExecSchema, TaskPrioritySchema

T = TypeVar("T")

#: What ``get_component`` hands out: the app's parts a task may use. Not the backend:
#: the engine is reached through the components, which fire the triggers.
COMPONENTS = ("broker", "storage", "global_config", "config")


class TaskContext:
    """The running task's view of itself and of the app."""

    def __init__(
        self,
        app: BaseQueueTasks,
        task_func: TaskExecSchema,
        task_broker: TaskPrioritySchema,
        loop: asyncio.AbstractEventLoop,
        executor: TaskExecutor | None = None,
    ) -> None:
        self.app = app
        self.task_func = task_func
        self.task_broker = task_broker
        self._loop = loop
        self._executor = executor
        self._metadata: Task | None = None

    @property
    def aborted(self) -> bool:
        """Whether someone asked to abort this task (``app.abort``). A sync task runs
        in a thread, which cannot be stopped from outside: a long one checks this now
        and then and returns; it then ends ``cancel`` with the abort's reason."""
        return self._executor is not None and self._executor.abort_reason is not None

    @property
    def ctx(self) -> TaskContext:
        """This context: the original's ``self.ctx`` on an echo task's first argument."""
        return self

    @property
    def task_name(self) -> str:
        return self.task_broker.task_name

    @property
    def task_uuid(self) -> str:
        return self.task_broker.uuid

    @property
    def extra(self) -> dict[str, Any]:
        """The task's extra options (``@app.task(test=True)`` → ``{"test": True}``)."""
        return self.task_func.extra

    @property
    def tags(self) -> tuple[str, ...]:
        return self.task_func.tags

    @property
    def description(self) -> str | None:
        return self.task_func.description

    @property
    def generate_handler(self) -> Any:
        """The task's ``generate_handler`` (``None`` when it has none)."""
        return self.task_func.generate_handler

    @property
    def attempt(self) -> int:
        """1 for the first run; more after a retry or a recovery."""
        return self.task_broker.attempts

    def get_logger(self, name: str | None = None) -> logging.Logger:
        """A logger named after the task (``qtasks.task.<name>``)."""
        return logging.getLogger(f"qtasks.task.{name or self.task_name}")

    def get_metadata(self, cache: bool = True) -> Task | Any:
        """This task's own record, a :class:`~qtasks_core.schemas.Task` (awaitable in
        async tasks), as the original QTasks' ``get_metadata(cache=True)``:
        ``cache=True`` (the default) reads it once per run and then hands out the same
        record, ``cache=False`` reads it anew.

        The task's registration (name, tags, description, options) is on the context
        itself: ``ctx.task_name``, ``ctx.tags``, ``ctx.description``, ``ctx.extra``.
        """
        if not isinstance(cache, bool):
            raise TaskOptionError(
                f"get_metadata(cache={cache!r}): cache is True (read the record once per "
                "run) or False (read it anew); for the task's tags or options read "
                "ctx.tags, ctx.description, ctx.extra"
            )
        if cache and self._metadata is not None:
            return self._bridge(_value(self._metadata))
        return self._bridge(self._read_own(keep=cache))

    async def _read_own(self, *, keep: bool) -> Task | None:
        task = await self.app.get_async(self.task_uuid)
        if keep:
            self._metadata = task
        return task

    def _bridge(self, coro: Coroutine[Any, Any, T]) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            return coro
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def set_progress(self, value: float, **meta: Any) -> Any:
        """Report how far the task got: ``value`` (a fraction such as ``0.4``, or a
        count), with any JSON-serializable ``meta`` (``done=40, of=100``). Stored on
        the task's record (``get(uuid).progress``) and seen by ``app.watch(uuid)`` in
        any process; awaitable in async tasks. Returns whether it was written (a task
        that no longer runs on this worker writes nothing)."""
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise TaskOptionError(
                f"set_progress takes a number (a fraction or a count), not {value!r}"
            )
        data = dumps({"value": value, "meta": meta, "at": time.time()}, what="progress meta")
        token = "" if self._executor is None else self._executor.claim_token
        return self._bridge(self.app.storage.progress(self.task_uuid, data, token))

    def get_config(self, key: str | None = None, name: str = "main") -> QueueConfig | Any:
        """Without ``key``: the app's settings, ``app.config`` (as the original QTasks;
        not awaitable). With ``key``: a global config value shared by every process
        (``None`` when unset; awaitable in async tasks)."""
        if key is None:
            return self.app.config
        return self._bridge(self.app.global_config.get(name, key))

    def get_component(self, name: str) -> Any:
        """A part of the app by name: ``broker``, ``storage``, ``global_config`` or
        ``config``."""
        if name not in COMPONENTS:
            backend = (
                " (the backend is not handed to tasks: its operations are the "
                "components' methods, which fire their triggers)"
                if name == "backend"
                else ""
            )
            raise TaskOptionError(
                f"get_component({name!r}): no such component{backend}; write one of "
                f"{', '.join(map(repr, COMPONENTS))}"
            )
        return getattr(self.app, name)

    def add_task(
        self,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        task_name: str | None = None,
        **kwargs: Any,
    ) -> Task | Any:
        """Enqueue this task again, or ``task_name`` (the original's ``self.add_task``);
        awaitable in async tasks. As :meth:`~qtasks_core.QueueTasks.add_task_async`: a
        wait (``timeout``) that runs out raises ``TaskTimeoutError``, which keeps the id."""
        return self._bridge(
            self.app.add_task_async(
                task_name or self.task_name, *args, priority=priority, timeout=timeout, **kwargs
            )
        )

    def get_task(self, uuid: str) -> Task | Any | None:
        """Another task's current state, or ``None``."""
        return self._bridge(self.app.get_async(uuid))

    def sleep(self, seconds: float) -> Any:
        """Sleep without holding the event loop (awaitable in async tasks)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            time.sleep(seconds)
            return None
        return asyncio.sleep(seconds)

    def cancel(self, reason: str = "") -> NoReturn:
        """End the task now with status ``cancel`` and ``reason`` stored."""
        raise TaskCancel(reason)

    def plugin_error(self, message: str = "", **extra: Any) -> NoReturn:
        """Hand the task's outcome to ``task_executor_run_task_trigger_error`` plugins."""
        raise TaskPluginTriggerError(message, **extra)


async def _value(value: T) -> T:
    return value
