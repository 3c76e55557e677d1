"""TaskExecutor: runs one task function. Fires the ``task_executor_*`` triggers.

Async functions run on the worker's event loop; plain functions run in the worker's
thread pool, never on the loop. ``max_time`` is enforced for both: at the deadline
the task ends ``error``. Python cannot kill a thread, so an overrunning plain function
keeps its thread until it returns; its result is then discarded.

Middlewares (:mod:`qtasks_core.middlewares`) run around the function: the before
ones see ``args`` / ``kwargs`` as the function will get them (before the argument
plugins), the after ones see ``result`` (after ``decode``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from ._introspect import parameters
from ._util import fired
from .context import TaskContext
from .errors import TaskCancel, TaskExitError, TaskPluginTriggerError
from .middlewares import check_middlewares
from .schemas import ArgMeta, TaskExecSchema, TaskPrioritySchema, TaskStatusProcessSchema

if TYPE_CHECKING:
    from qtasks_hooks import PluginManager

    from .app import BaseQueueTasks


def _inspect_kind(func: Callable[..., Any]) -> str:
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        return "generator"
    return "async" if inspect.iscoroutinefunction(func) else "sync"


_cached_kind = functools.lru_cache(maxsize=4096)(_inspect_kind)


def _kind(func: Callable[..., Any]) -> str:
    """How a task function runs: "generator", "async" or "sync" (asked once per
    function: three inspections per run were a measurable part of a no-op task)."""
    try:
        return _cached_kind(func)
    except TypeError:  # an unhashable callable object
        return _inspect_kind(func)


class TaskExecutor:
    """Runs ``task_func`` with the arguments of ``task_broker`` and returns its result."""

    def __init__(
        self,
        task_func: TaskExecSchema,
        task_broker: TaskPrioritySchema,
        *,
        app: BaseQueueTasks,
        pm: PluginManager,
        threads: Executor | None = None,
        model: TaskStatusProcessSchema | None = None,
    ) -> None:
        self.task_func = task_func
        self.task_broker = task_broker
        self.app = app
        self.pm = pm
        self.threads = threads
        #: The processing state as ``worker_execute_before`` plugins left it.
        self.model = model
        self.context: TaskContext | None = None
        #: The arguments the function is about to receive (middlewares may change them).
        self.args: list[Any] = list(task_broker.args)
        self.kwargs: dict[str, Any] = dict(task_broker.kwargs)
        #: What the task returned, once it did (after middlewares may replace it).
        self.result: Any = None
        #: Why the task is being aborted (``app.abort``), once it is.
        self.abort_reason: str | None = None
        #: The claim this run holds (set by the worker; "" when run without one):
        #: what the task writes about itself while it runs is fenced by it.
        self.claim_token = ""
        #: The asyncio task running the task's code, while it runs; and the one an
        #: abort cancelled.
        self._running: asyncio.Task[Any] | None = None
        self._cancelled: asyncio.Task[Any] | None = None

    def abort(self, reason: str) -> None:
        """Stop the task: an async one is cancelled at its next ``await``; a sync one
        (a thread cannot be killed) sees ``ctx.aborted`` and should return. Either way
        it ends ``cancel`` with ``reason``."""
        self.abort_reason = reason
        if self._running is not None and self._cancelled is None:
            # The task is suspended inside its own code (this runs on the same loop),
            # so the cancellation lands there and nowhere else.
            self._cancelled = self._running
            self._running.cancel()

    async def _abortable(self, awaitable: Any) -> Any:
        # No task of its own (a task per run costs a loop turn each way, measured at
        # a fifth of the throughput): an abort cancels the task running this, and
        # _aborted takes that one cancellation back.
        self._running = asyncio.current_task()
        try:
            return await awaitable
        finally:
            self._running = None

    def _aborted(self, exc: BaseException) -> TaskCancel | None:
        """The cancel an abort turns ``exc`` into; ``None`` if it was not the abort."""
        if self.abort_reason is None:
            return None
        task = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and task is not None:
            ours = 1 if task is self._cancelled else 0
            if task.cancelling() > ours:
                return None  # the worker itself is being cancelled (shutdown): not ours
            if ours:
                task.uncancel()
        return TaskCancel(self.abort_reason)

    def args_info(self, args: list[Any], kw: dict[str, Any]) -> list[ArgMeta]:
        """Each parameter of the function with the value it is about to receive."""
        params = parameters(self.task_func.func)
        if self.task_func.echo and params:
            params = params[1:]
        info = []
        for position, param in enumerate(params):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if position < len(args):
                info.append(
                    ArgMeta(
                        name=param.name,
                        value=args[position],
                        position=position,
                        annotation=param.annotation,
                    )
                )
            elif param.name in kw:
                info.append(
                    ArgMeta(
                        name=param.name,
                        value=kw[param.name],
                        annotation=param.annotation,
                        is_kwarg=True,
                    )
                )
        return info

    async def execute(self) -> Any:
        """Run the task: middlewares, argument plugins, the function, result plugins."""
        spec = self.task_func
        if spec.middlewares_before or spec.middlewares_after:
            # Again here (it is cached): a task declared without the check, or changed
            # by a plugin since, must not run with a middleware that would be skipped.
            check_middlewares(spec.name, spec.middlewares_before, spec.middlewares_after)
        await fired(self.pm.hook.task_executor_middlewares_execute(task_executor=self))
        executor: TaskExecutor = self
        for middleware in spec.middlewares_before:
            executor = await executor._before(middleware)
        return await executor._execute_task()

    async def _before(self, middleware: Any) -> TaskExecutor:
        """Run one before-middleware; the executor that runs the rest of the task."""
        if not isinstance(middleware, type):
            await fired(middleware(self))
            return self
        returned = await fired(middleware(self)())
        if returned is None:
            return self
        if isinstance(returned, TaskExecutor):
            return returned
        raise TypeError(
            f"middleware {middleware.__qualname__} returned {type(returned).__name__}; "
            "a TaskMiddleware returns None or a task executor (self.task_executor)"
        )

    async def _after(self, middleware: Any) -> None:
        """Run one after-middleware on ``self.result``."""
        if not isinstance(middleware, type):
            replaced = await fired(middleware(self, self.result))
            if replaced is not None:
                self.result = replaced
            return
        returned = await fired(middleware(self)())
        if isinstance(returned, TaskExecutor) and returned is not self:
            self.result = returned.result
        elif returned is not None and returned is not self:
            raise TypeError(
                f"middleware {middleware.__qualname__} returned {type(returned).__name__}; "
                "an after TaskMiddleware replaces the result by setting "
                "self.task_executor.result, and returns None or the executor"
            )

    async def _execute_task(self) -> Any:
        pm = self.pm
        args, kw = list(self.args), dict(self.kwargs)
        new = await fired(
            pm.hook.task_executor_args_replace(
                task_executor=self, args=args, kw=kw, args_info=self.args_info(args, kw)
            )
        )
        if new is not None:
            args, kw = list(new[0]), dict(new[1])
        if self.task_func.echo:
            self.context = TaskContext(
                self.app, self.task_func, self.task_broker, asyncio.get_running_loop(), self
            )
            args.insert(0, self.context)
        try:
            result = await self._run(args, kw)
        except TaskPluginTriggerError as exc:
            new = await fired(
                pm.hook.task_executor_run_task_trigger_error(
                    task_executor=self,
                    task_func=self.task_func,
                    task_broker=self.task_broker,
                    e=exc,
                )
            )
            if new is None:
                raise
            result = new
        if self.task_func.decode is not None:
            result = self.task_func.decode(result)
            new = await fired(pm.hook.task_executor_decode(task_executor=self, result=result))
            result = result if new is None else new
        self.result = result
        for middleware in self.task_func.middlewares_after:
            await self._after(middleware)
        return self.result

    async def _run(self, args: list[Any], kw: dict[str, Any]) -> Any:
        func = self.task_func.func
        pm = self.pm
        kind = _kind(func)
        if kind == "generator":
            results = await self._bounded(self._collect(func, args, kw))
            if self.abort_reason is not None:
                raise TaskCancel(self.abort_reason)
            new = await fired(
                pm.hook.task_executor_run_task_gen(task_executor=self, results=results)
            )
            return results if new is None else list(new)
        try:
            if kind == "async":
                result = await self._bounded(func(*args, **kw), abortable=True)
            else:
                call = functools.partial(func, *args, **kw)
                result = await self._bounded(self._in_thread(call, contextvars.copy_context()))
        except (Exception, asyncio.CancelledError) as exc:
            cancel = self._aborted(exc)
            if cancel is None:
                raise
            raise cancel from None
        if self.abort_reason is not None:
            raise TaskCancel(self.abort_reason)  # a sync task that saw ctx.aborted returned
        new = await fired(pm.hook.task_executor_run_task(task_executor=self, result=result))
        return result if new is None else new

    async def _bounded(self, awaitable: Any, *, abortable: bool = False) -> Any:
        max_time = self.task_func.max_time
        # The guard goes inside the task an abort can cancel: a SystemExit raised in a
        # task of its own would leave the event loop.
        guarded = self._guarded(awaitable)
        if abortable:
            guarded = self._abortable(guarded)
        if max_time is None:
            return await guarded
        try:
            return await asyncio.wait_for(guarded, max_time)
        except TimeoutError:
            raise TimeoutError(
                f"task {self.task_func.name!r} exceeded max_time={max_time:g}s"
            ) from None

    async def _guarded(self, awaitable: Any) -> Any:
        # A task calling sys.exit() (or raising KeyboardInterrupt) fails that task:
        # left alone, asyncio would carry it out of the event loop and end the worker,
        # and with it every task running beside it. Caught inside the awaitable, since
        # wait_for runs it as a task of its own.
        try:
            return await awaitable
        except (SystemExit, KeyboardInterrupt) as exc:
            raise TaskExitError(
                f"task {self.task_func.name!r} raised {type(exc).__name__}"
                f"{'(' + repr(exc.args[0]) + ')' if exc.args else ''}; a task cannot stop "
                "its worker (stop workers with SIGTERM)"
            ) from exc

    async def _in_thread(self, call: Callable[[], Any], context: contextvars.Context) -> Any:
        """Run ``call`` in the thread pool inside ``context``: a copy of the context the
        worker's triggers ran in, as ``asyncio.to_thread`` gives (``run_in_executor``
        alone gives none), so what a plugin set there (a request id, a span) is seen by
        a plain task and by the tasks it enqueues."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, context.run, call)

    async def _collect(
        self, func: Callable[..., Any], args: list[Any], kw: dict[str, Any]
    ) -> list[Any]:
        handler = self.task_func.generate_handler
        results = []
        if inspect.isasyncgenfunction(func):
            async for value in func(*args, **kw):
                results.append(await fired(handler(value)) if handler else value)
                if self.abort_reason is not None:
                    return results  # aborted: stops between two values
            return results
        generator = func(*args, **kw)
        sentinel = object()
        # One context for the whole run: what the generator sets stays set between
        # its values.
        context = contextvars.copy_context()
        step = functools.partial(next, generator, sentinel)
        while self.abort_reason is None:
            value = await self._in_thread(step, context)
            if value is sentinel:
                return results
            results.append(await fired(handler(value)) if handler else value)
        # In its thread and its context, as its steps ran: its cleanup may reset what it
        # set, and may block.
        await self._in_thread(generator.close, context)
        return results
