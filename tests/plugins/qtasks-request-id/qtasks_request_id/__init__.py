"""Request-id propagation, as users of Celery signals and taskiq middleware write it.

The id lives in a ``contextvars`` variable. Enqueued under it, a task carries it in its
``extra``; the worker sets it again before the task runs, so the task (async, plain or a
generator) and every task it enqueues see it, with nothing passed by hand.
"""

from __future__ import annotations

import contextvars
from typing import Any

from qtasks_hooks import hookimpl

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "qtasks_request_id", default=None
)


def current() -> str | None:
    """The request id of the code running now, if any."""
    return REQUEST_ID.get()


class RequestId:
    @hookimpl
    def qtasks_add_task_before_broker(self, extra: dict[str, Any]) -> dict[str, Any] | None:
        request = REQUEST_ID.get()
        return None if request is None else {"extra": {**extra, "request_id": request}}

    @hookimpl
    def worker_execute_before(self, task_broker: Any) -> None:
        REQUEST_ID.set(task_broker.extra.get("request_id"))


plugin = RequestId()
