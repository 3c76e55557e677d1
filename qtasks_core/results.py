"""The original QTasks' result waiters: ``SyncResult`` and ``AsyncResult``.

::

    from qtasks_core.results import AsyncResult, SyncResult

    task = app.add_task("test", 5)
    done = SyncResult(uuid=task.uuid).result(timeout=50)          # sync code
    done = await AsyncResult(uuid=task.uuid, app=app).result(timeout=50)  # async code

``result(timeout=100)`` returns the finished :class:`~qtasks_core.schemas.Task`, or
``None`` when the wait runs out, as the original's did and as ``Task.wait_result``
does: a waiting helper keeps the original's answer on both edges (only the apps'
``add_task(timeout=)`` differ, see ``docs/migrating.md``). The ``None`` loses nothing
here: the waiter keeps the id in ``.uuid``, and the task goes on. Underneath is the
app's ``wait`` (results arrive without polling; the original polled every second).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID

from . import _current
from .errors import TaskOptionError, TaskTimeoutError

if TYPE_CHECKING:
    from .app import BaseQueueTasks
    from .schemas import Task

__all__ = ["AsyncResult", "SyncResult"]

_LOG = logging.getLogger("qtasks.app")


class _Result:
    """What both waiters share: the task's id, the app, the logger."""

    def __init__(
        self,
        uuid: UUID | str | None = None,
        app: BaseQueueTasks | None = None,
        log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        kind = type(self).__name__
        if uuid is None:
            raise TaskOptionError(f"{kind} needs the task's id: write {kind}(uuid=task.uuid)")
        if not isinstance(uuid, (str, UUID)):
            raise TaskOptionError(
                f"{kind}(uuid=...) takes the task's id as a str or UUID, got "
                f"{type(uuid).__name__}: write {kind}(uuid=task.uuid)"
            )
        if log is not None and not isinstance(log, (logging.Logger, logging.LoggerAdapter)):
            raise TaskOptionError(
                f"{kind}(log=...) takes a logging.Logger, got {type(log).__name__} "
                "(the original's qtasks.logs.Logger has no counterpart: QTasks logs "
                "through the standard logging module)"
            )
        self.uuid = str(uuid)
        self._app = _the_app(app, kind)
        self.log = log if log is not None else _LOG

    def _ran_out(self, exc: TaskTimeoutError) -> None:
        self.log.info(
            "task %s not finished after %gs: result() returns None", self.uuid, exc.timeout
        )


class SyncResult(_Result):
    """Wait for a task's final state in sync code (the original's
    ``qtasks.results.SyncResult``).

    :param uuid: the task's id (``task.uuid``).
    :param app: the app the task was sent with; default the app created last in this
        process (as the original's ``_state.app_main``). The sync app only: in async
        code, and on ``qtasks_core.asyncio.QueueTasks``, use :class:`AsyncResult`.
    :param log: a ``logging.Logger`` for the note that a wait ran out (default
        ``qtasks.app``).
    """

    def __init__(
        self,
        uuid: UUID | str | None = None,
        app: BaseQueueTasks | None = None,
        log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        super().__init__(uuid, app, log)
        from .app import QueueTasks

        # The async app's wait is a coroutine: blocking on it here would need a loop of
        # our own (the original failed with AttributeError on a coroutine).
        if not isinstance(self._app, QueueTasks):
            raise TaskOptionError(
                "SyncResult on the async app (qtasks_core.asyncio.QueueTasks): write "
                "`await AsyncResult(uuid=..., app=app).result(timeout=...)`"
            )

    def result(self, timeout: float = 100) -> Task | None:
        """The finished task, or ``None`` if ``timeout`` seconds pass first (the task
        goes on; wait again with another ``result()``)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "SyncResult.result() blocks, and this thread runs an event loop: in async "
                "code write `await AsyncResult(uuid=..., app=app).result(timeout=...)`"
            )
        try:
            return self._app._portal.call(self._app.wait_async(self.uuid, timeout), "wait")
        except TaskTimeoutError as exc:
            self._ran_out(exc)
            return None


class AsyncResult(_Result):
    """Wait for a task's final state in async code (the original's
    ``qtasks.results.AsyncResult``); works with either app.

    :param uuid: the task's id (``task.uuid``).
    :param app: the app the task was sent with; default the app created last.
    :param log: a ``logging.Logger`` for the note that a wait ran out.
    """

    async def result(self, timeout: float = 100) -> Task | None:
        """The finished task, or ``None`` if ``timeout`` seconds pass first."""
        try:
            return await self._app.wait_async(self.uuid, timeout)
        except TaskTimeoutError as exc:
            self._ran_out(exc)
            return None


def _the_app(app: BaseQueueTasks | None, kind: str) -> BaseQueueTasks:
    from .app import BaseQueueTasks

    if app is None:
        current = _current.current()
        if current is None:
            raise RuntimeError(f"{kind} needs an app: pass app=, or create a QueueTasks first")
        return current
    if not isinstance(app, BaseQueueTasks):
        raise TaskOptionError(
            f"{kind}(app=...) takes a qtasks_core QueueTasks, got {type(app).__name__}"
        )
    return app
