"""The sync edge: one event-loop thread per app that sync callers hand coroutines to.

A sync ``app.add_task()`` never creates an event loop per call: it submits the same
coroutine the async API runs to this long-lived loop and waits for it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    """A daemon thread running an event loop, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(
                    target=run, name=f"qtasks-portal-{self._name}", daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def call(self, coro: Coroutine[Any, Any, T], method: str | None = None) -> T:
        """Run ``coro`` on the portal's loop and return its result (blocking).

        Refused at once, before anything runs, on a thread that runs an event loop
        (an ``async def``, a notebook): blocking there would stall every other task of
        that loop. The error names the ``*_async`` twin of the sync method called
        (``method``, default the caller's name).

        The coroutine runs in a copy of the caller's context (:mod:`contextvars`), as it
        would under ``await``: the caller's current OpenTelemetry span, or a request id
        in a context variable, is what the plugins fired inside it see.
        """
        if asyncio._get_running_loop() is not None:
            coro.close()
            method = method or sys._getframe(1).f_code.co_name
            raise RuntimeError(
                f"app.{method}() blocks, and this thread runs an event loop: in async code "
                f"write `await app.{method}_async(...)` (or use "
                "`from qtasks_core.asyncio import QueueTasks`, whose methods are coroutines)"
            )
        loop = self._loop or self.loop
        # A lock the loop releases when the task ends: about 20 µs less per call than
        # run_coroutine_threadsafe's concurrent Future (its Condition and chained
        # callbacks), on every sync add_task.
        done = threading.Lock()
        done.acquire()
        ended: list[asyncio.Future[T]] = []

        def finished(task: asyncio.Future[T]) -> None:
            ended.append(task)
            done.release()

        def start() -> None:
            try:
                task = loop.create_task(coro)
            except BaseException as exc:  # handed to the caller, never lost in the loop
                failed: asyncio.Future[T] = loop.create_future()
                failed.set_exception(exc)
                finished(failed)
                return
            task.add_done_callback(finished)

        # No explicit copy_context() needed: call_soon_threadsafe captures the context
        # current on *this* thread for its callback, and the task that callback creates
        # inherits it. The test of a sync producer's span parenting its task's run in
        # the worker (tests/integration/test_opentelemetry_distribution.py) fails if
        # that is lost.
        loop.call_soon_threadsafe(start)
        done.acquire()
        return ended[0].result()

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
