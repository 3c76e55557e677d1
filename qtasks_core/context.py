"""``ctx``: what an ``echo=True`` task receives as its first argument.

Methods that talk to the backend work from both kinds of task: in an ``async def``
task they return an awaitable (``await ctx.get_task(uuid)``); in a plain ``def`` task,
which runs in a worker thread, they block and return the value.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from .errors import TaskCancel, TaskPluginTriggerError

if TYPE_CHECKING:
    from .app import QueueTasks
    from .schemas import Task, TaskExecSchema, TaskPrioritySchema

T = TypeVar("T")


class TaskContext:
    """The running task's view of itself and of the app."""

    def __init__(
        self,
        app: QueueTasks,
        task_func: TaskExecSchema,
        task_broker: TaskPrioritySchema,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.app = app
        self.task_func = task_func
        self.task_broker = task_broker
        self._loop = loop

    @property
    def task_name(self) -> str:
        return self.task_broker.task_name

    @property
    def task_uuid(self) -> str:
        return self.task_broker.uuid

    @property
    def attempt(self) -> int:
        """1 for the first run; more after a retry or a recovery."""
        return self.task_broker.attempts

    def get_logger(self, name: str | None = None) -> logging.Logger:
        """A logger named after the task (``qtasks.task.<name>``)."""
        return logging.getLogger(f"qtasks.task.{name or self.task_name}")

    def get_metadata(self) -> dict[str, Any]:
        """The task's registration: name, priority, tags, description, options."""
        return self.task_func.model_dump(exclude={"func", "executor", "generate_handler", "decode"})

    def _bridge(self, coro: Coroutine[Any, Any, T]) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            return coro
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def get_config(self, key: str, name: str = "main") -> Any:
        """A global config value (``None`` when unset)."""
        return self._bridge(self.app.global_config.get(name, key))

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
