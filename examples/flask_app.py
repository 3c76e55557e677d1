"""Flask + QTasks: the sync API from request handlers, in any number of threads.

Run it from the ``examples`` folder::

    cd examples
    export QTASKS_REDIS_URL=redis://127.0.0.1:6379/0  # unset: QTasks' embedded server
    qtasks worker -A flask_app:qtasks_app &            # a worker, in its own process
    flask --app flask_app:api run --port 5000          # or any WSGI server

or, with the worker inside the web process (one process to run)::

    QTASKS_EMBEDDED_WORKER=1 python flask_app.py

then::

    curl -X POST 'localhost:5000/add?a=2&b=3'  # {"uuid": ..., "status": "success", "result": 5}
    curl localhost:5000/tasks/<uuid>          # the task as QTasks stores it

Sync calls (``qtasks_app.add_task``, ``qtasks_app.get``) are safe from every request
thread: they hand their work to one event-loop thread owned by the app, which keeps one
connection pool; no loop, thread or connection is created per request. Flask has no
shutdown hook, so ``qtasks_app.stop()`` runs at exit (``atexit``); the embedded worker
(``qtasks_app.running_worker()``) is stopped when the server returns.

Environment: ``QTASKS_REDIS_URL``; ``QTASKS_EMBEDDED_WORKER=1`` for the in-process
worker; ``QTASKS_WAIT_TIMEOUT`` (seconds ``POST /add`` waits for the result, default 10;
past it the answer is 504 with the task's uuid, to poll ``GET /tasks/<uuid>``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from typing import Any

from flask import Flask, request

from qtasks_core import QueueTasks, TaskTimeoutError

qtasks_app = QueueTasks("flask-example")
atexit.register(qtasks_app.stop)


@qtasks_app.task
def add(a: int, b: int) -> int:
    return a + b


def wait_timeout() -> float:
    return float(os.environ.get("QTASKS_WAIT_TIMEOUT", "10"))


def embedded_worker() -> bool:
    return os.environ.get("QTASKS_EMBEDDED_WORKER", "").lower() in ("1", "true", "yes", "on")


api = Flask(__name__)


@api.post("/add")
def add_numbers() -> tuple[dict[str, Any], int]:
    """Enqueue ``add(a, b)`` and wait for its result."""
    a = request.args.get("a", type=int)
    b = request.args.get("b", type=int)
    if a is None or b is None:
        return {"error": "query parameters a and b must be integers"}, 400
    try:
        task = qtasks_app.add_task("add", a, b, timeout=wait_timeout())
    except TaskTimeoutError as exc:
        status = exc.task.status if exc.task is not None else "unknown"
        return {"uuid": exc.uuid, "status": status, "poll": f"/tasks/{exc.uuid}"}, 504
    return {"uuid": task.uuid, "status": task.status, "result": task.returning}, 200


@api.get("/tasks/<uuid>")
def read_task(uuid: str) -> tuple[dict[str, Any], int]:
    """The task's current state (404 if unknown or expired)."""
    task = qtasks_app.get(uuid)
    if task is None:
        return {"error": f"no task {uuid}"}, 404
    return task.model_dump(mode="json"), 200


if __name__ == "__main__":
    worker = qtasks_app.running_worker() if embedded_worker() else contextlib.nullcontext()
    with worker:
        api.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), threaded=True)
