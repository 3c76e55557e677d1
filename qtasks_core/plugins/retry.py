"""Retries: ``@app.task(retry=N, retry_on_exc=(...), retry_backoff=s, retry_jitter=True)``.

A failed task whose retries are not used up is stored with status ``retry`` and waits
in the backend (not in worker memory) for ``retry_backoff * 2**k`` seconds (capped at
one hour) before it is queued again under the same uuid, so a caller waiting on that
uuid sees the final state. After ``N`` retries (``N + 1`` attempts) it ends ``error``.

With ``retry_jitter`` (the default, as in Celery) the wait is drawn between half of
that and all of it: tasks that failed together (a database restart) come back spread
out instead of as one herd, and each still waits at least half its backoff.
``retry_jitter=False`` keeps the exact delays.
"""

from __future__ import annotations

import random
from typing import Final

from qtasks_hooks import hookimpl

from ..schemas import TaskExecSchema, TaskPrioritySchema, TaskStatusErrorSchema

MAX_DELAY: Final = 3600.0


class RetryPlugin:
    """Turns an ``error`` into a delayed ``retry`` while the task has retries left."""

    @hookimpl(tryfirst=True)
    def worker_task_error_retry(
        self,
        task_func: TaskExecSchema | None,
        task_broker: TaskPrioritySchema,
        exc: BaseException,
        model: TaskStatusErrorSchema,
        retryable: bool,
    ) -> TaskStatusErrorSchema | None:
        if not retryable or task_func is None or not task_func.retry:
            return None
        if task_func.retry_on_exc and not isinstance(exc, task_func.retry_on_exc):
            return None
        left = task_func.retry if task_broker.retry is None else task_broker.retry
        if left <= 0:
            return None
        done = task_func.retry - left
        delay = min(task_func.retry_backoff * 2**done, MAX_DELAY)
        if task_func.retry_jitter:
            delay = random.uniform(delay / 2, delay)
        return model.model_copy(update={"status": "retry", "retry": left - 1, "retry_delay": delay})
