"""FastAPI + QTasks: enqueue from async request handlers, await results, read tasks by id.

Run it (``pip install uvicorn`` first) from the ``examples`` folder::

    cd examples
    export QTASKS_REDIS_URL=redis://127.0.0.1:6379/0  # unset: QTasks' embedded server
    qtasks worker -A fastapi_app:qtasks_app &          # a worker, in its own process
    uvicorn fastapi_app:api --port 8000

or, with the worker inside the web process (one process to run)::

    QTASKS_EMBEDDED_WORKER=1 python fastapi_app.py

then::

    curl -X POST 'localhost:8000/add?a=2&b=3'  # {"uuid": ..., "status": "success", "result": 5}
    curl localhost:8000/tasks/<uuid>          # the task as QTasks stores it

The lifespan starts QTasks with the app (so a wrong ``QTASKS_REDIS_URL`` fails at start,
not on the first request), runs the optional worker as a task of the server's event
loop, and on shutdown stops the worker (running tasks get its grace period, the rest
stay queued) and closes QTasks (``await qtasks_app.stop_async()``).

The worker is ``qtasks_app.worker()`` run as a task and ended with ``worker.stop()``;
``qtasks_app.serve()`` in a task, cancelled at shutdown, does the same.

Environment: ``QTASKS_REDIS_URL``; ``QTASKS_EMBEDDED_WORKER=1`` for the in-process
worker; ``QTASKS_WAIT_TIMEOUT`` (seconds ``POST /add`` waits for the result, default 10;
past it the answer is 504 with the task's uuid, to poll ``GET /tasks/{uuid}``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException

from qtasks_core import QueueTasks, TaskTimeoutError

qtasks_app = QueueTasks("fastapi-example")


@qtasks_app.task
def add(a: int, b: int) -> int:
    return a + b


def wait_timeout() -> float:
    return float(os.environ.get("QTASKS_WAIT_TIMEOUT", "10"))


def embedded_worker() -> bool:
    return os.environ.get("QTASKS_EMBEDDED_WORKER", "").lower() in ("1", "true", "yes", "on")


@asynccontextmanager
async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
    await qtasks_app.start_async()
    worker = qtasks_app.worker(concurrency=8, grace=10) if embedded_worker() else None
    running = asyncio.create_task(worker.run(), name="qtasks-worker") if worker else None
    try:
        yield
    finally:
        if worker is not None and running is not None:
            # Stop claiming; running tasks get the grace period, the rest go back.
            worker.stop()
            await running
        await qtasks_app.stop_async()


api = FastAPI(title="QTasks + FastAPI", lifespan=lifespan)


@api.post("/add")
async def add_numbers(a: int, b: int) -> dict[str, Any]:
    """Enqueue ``add(a, b)`` and wait for its result."""
    try:
        task = await qtasks_app.add_task_async("add", a, b, timeout=wait_timeout())
    except TaskTimeoutError as exc:
        status = exc.task.status if exc.task is not None else "unknown"
        raise HTTPException(
            status_code=504,
            detail={"uuid": exc.uuid, "status": status, "poll": f"/tasks/{exc.uuid}"},
        ) from None
    return {"uuid": task.uuid, "status": task.status, "result": task.returning}


@api.get("/tasks/{uuid}")
async def read_task(uuid: str) -> dict[str, Any]:
    """The task's current state (404 if unknown or expired)."""
    task = await qtasks_app.get_async(uuid)
    if task is None:
        raise HTTPException(status_code=404, detail=f"no task {uuid}")
    return task.model_dump(mode="json")


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(api, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
