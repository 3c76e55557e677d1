"""A QTasks worker inside an existing asyncio program, next to the program's own work.

Run it with ``python examples/asyncio_embed.py`` (``QTASKS_REDIS_URL`` if set, else
QTasks' embedded server). It prints the results and how often the program's own
coroutine ran meanwhile, then exits cleanly.

The worker is one more task of the program's event loop: ``asyncio.create_task(
worker.run())`` with ``worker = app.worker()``. Async tasks run on that loop, plain
functions in the worker's thread pool, so neither blocks the program. ``worker.stop()``
ends it the way SIGTERM ends ``qtasks worker``: running tasks get the grace period,
tasks not started stay queued for any other worker, and the worker's record is removed.
Then ``await app.stop_async()`` closes QTasks.

(``app.serve()`` is the same in one call: cancelling its task stops the worker the same
graceful way.)
"""

from __future__ import annotations

import asyncio
import time

from qtasks_core import QueueTasks

app = QueueTasks("asyncio-embed")


@app.task
async def square(n: int) -> int:
    """An async task: runs on the program's loop, between its other coroutines."""
    await asyncio.sleep(0.01)
    return n * n


@app.task
def slow_double(n: int) -> int:
    """A plain function: runs in the worker's thread pool, never blocking the loop."""
    time.sleep(0.02)
    return 2 * n


async def heartbeat(beats: list[float], every: float = 0.01) -> None:
    """The program's own coroutine: keeps ticking while tasks run (until cancelled)."""
    while True:
        beats.append(time.monotonic())
        await asyncio.sleep(every)


async def produce(n: int) -> tuple[list[int], list[int]]:
    """Enqueue ``2 * n`` tasks and wait for every result."""
    squares = [app.add_task_async("square", i, timeout=30) for i in range(n)]
    doubles = [app.add_task_async("slow_double", i, timeout=30) for i in range(n)]
    done = await asyncio.gather(*squares, *doubles)
    results = [task.returning for task in done]
    return results[:n], results[n:]


async def main(n: int = 20) -> dict[str, object]:
    beats: list[float] = []
    worker = app.worker(concurrency=8, grace=10)
    running = asyncio.create_task(worker.run(), name="qtasks-worker")
    ticker = asyncio.create_task(heartbeat(beats), name="heartbeat")
    try:
        squares, doubles = await produce(n)
    finally:
        ticker.cancel()
        worker.stop()
        await asyncio.gather(ticker, running, return_exceptions=True)
        await app.stop_async()
    return {"squares": squares, "doubles": doubles, "heartbeats": len(beats)}


if __name__ == "__main__":
    outcome = asyncio.run(main())
    print("squares:", outcome["squares"])
    print("doubles:", outcome["doubles"])
    print("heartbeats while the tasks ran:", outcome["heartbeats"])
