"""Declaring tasks: ``@app.task``, routers, ``shared_task`` and the task handle.

What a module needs to declare tasks, apart from the app that runs them: a router's
tasks are declared before any app exists, and a handle finds its app when called.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, overload

from typing_extensions import ParamSpec, TypeVar

from . import _current
from ._validate import check_concurrency_limit, check_queue, parse_rate_limit
from .errors import TaskOptionError
from .middlewares import check_middlewares
from .schemas import Task, TaskExecSchema

if TYPE_CHECKING:
    from .app import BaseQueueTasks
    from .workflows import Signature

#: A task function's parameters and its result (its coroutine's, for ``async def``).
#: Defaults: a bare ``TaskHandle`` annotation is any task's (valid under ``--strict``).
P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)


_TASK_OPTIONS = {
    "queue",
    "concurrency_limit",
    "rate_limit",
    "priority",
    "echo",
    "max_time",
    "retry",
    "retry_on_exc",
    "retry_backoff",
    "retry_jitter",
    "decode",
    "tags",
    "description",
    "generate_handler",
    "executor",
    "middlewares_before",
    "middlewares_after",
}


class TaskHandle(Generic[P, R]):
    """What ``@app.task`` returns: still the plain function, plus ``add_task``.

    Generic in the function's parameters and result, so a type checker checks a call's
    arguments against the function's and types its result::

        @app.task
        def add(a: int, b: int) -> int: ...

        add.add_task(2, 3)                            # Task[int]
        add.add_task("2", 3)                          # error: "str", expected "int"
        add.with_options(timeout=10).add_task(2, 3)   # options, arguments checked

    ``add.add_task(2, 3, timeout=10)`` (options beside the arguments, as the original
    QTasks wrote it) keeps working and type-checks, but a type checker cannot check the
    arguments of such a call: Python's typing has no way to add keywords to a
    function's own (PEP 612). :meth:`with_options` keeps both checked.
    """

    def __init__(self, spec: TaskExecSchema, owner: BaseQueueTasks | Router | None) -> None:
        self.spec = spec
        self._owner = owner
        self.__wrapped__ = spec.func
        self.__doc__ = spec.func.__doc__
        self.__name__ = getattr(spec.func, "__name__", spec.name)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def extra(self) -> dict[str, Any]:
        """The task's extra options (``@app.task(test=True)`` → ``{"test": True}``)."""
        return self.spec.extra

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Call the function itself, here (no queue): ``add(2, 3)``."""
        return self.spec.func(*args, **kwargs)

    def _app(self) -> BaseQueueTasks:
        owner = self._owner
        app = owner.app if isinstance(owner, Router) else owner
        if app is None:
            app = _current.current()
        if app is None:
            raise RuntimeError(
                f"task {self.name!r} belongs to no app yet: include its router "
                "in a QueueTasks app, or create the app first"
            )
        return app

    # Checked calls first; the two after them take the original's options beside the
    # arguments (one of them given), which nothing can check against the function's.
    @overload
    def add_task(self, *args: P.args, **kwargs: P.kwargs) -> Task[R]: ...
    @overload
    def add_task(
        self, *args: Any, timeout: float, priority: int | None = None, **kwargs: Any
    ) -> Task[R]: ...
    @overload
    def add_task(
        self, *args: Any, priority: int, timeout: float | None = None, **kwargs: Any
    ) -> Task[R]: ...

    def add_task(self, *args: Any, **kwargs: Any) -> Task[R]:
        """Enqueue this task (see :meth:`QueueTasks.add_task`: ``priority`` and
        ``timeout`` are its options, any other keyword the task's); on an app of
        :mod:`qtasks_core.asyncio` this returns the coroutine to await."""
        # The app's own edge: blocking on QueueTasks, a coroutine on the asyncio app's.
        add_task: Callable[..., Task[R]] = self._app()._edge("add_task")
        return add_task(self.name, *args, **kwargs)

    @overload
    async def add_task_async(self, *args: P.args, **kwargs: P.kwargs) -> Task[R]: ...
    @overload
    async def add_task_async(
        self, *args: Any, timeout: float, priority: int | None = None, **kwargs: Any
    ) -> Task[R]: ...
    @overload
    async def add_task_async(
        self, *args: Any, priority: int, timeout: float | None = None, **kwargs: Any
    ) -> Task[R]: ...

    async def add_task_async(self, *args: Any, **kwargs: Any) -> Task[R]:
        """Enqueue this task from async code (see :meth:`QueueTasks.add_task_async`)."""
        return await self._app().add_task_async(self.name, *args, **kwargs)

    def with_options(
        self,
        *,
        priority: int | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
    ) -> Options[P, R]:
        """This task with call options set, its arguments still checked:
        ``add.with_options(timeout=10, queue="fast").add_task(2, 3)``. The options are
        :meth:`QueueTasks.send_task_async`'s; each is checked when the task is sent."""
        given = {
            "priority": priority,
            "timeout": timeout,
            "queue": queue,
            "delay": delay,
            "eta": eta,
            "expires": expires,
            "unique_key": unique_key,
            "unique_for": unique_for,
        }
        return Options(self, {k: v for k, v in given.items() if v is not None})

    def send_task(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Task:
        """Enqueue this task with explicit ``args``/``kwargs`` and call options
        (``priority, timeout, queue, delay, eta, expires``: see
        :meth:`QueueTasks.send_task_async`)."""
        send_task: Callable[..., Task] = self._app()._edge("send_task")
        return send_task(self.name, args, kwargs, **options)

    async def send_task_async(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Task:
        """Async twin of :meth:`send_task`."""
        return await self._app().send_task_async(self.name, args, kwargs, **options)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """This task's call as a step of a workflow (see :mod:`qtasks_core.workflows`):
        in a chain it gets the previous step's result as its first argument."""
        return self._app().signature(self.name, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """:meth:`s` that takes no result from the step before."""
        return dataclasses.replace(self.s(*args, **kwargs), immutable=True)


class Options(Generic[P, R]):
    """A task with call options set (:meth:`TaskHandle.with_options`): its
    ``add_task`` takes the function's arguments only, checked by a type checker."""

    def __init__(self, handle: TaskHandle[P, R], options: dict[str, Any]) -> None:
        self._handle = handle
        self._options = options

    def add_task(self, *args: P.args, **kwargs: P.kwargs) -> Task[R]:
        """Enqueue the task with these options (blocking; a coroutine on an app of
        :mod:`qtasks_core.asyncio`, as :meth:`TaskHandle.add_task`)."""
        send_task: Callable[..., Task[R]] = self._handle._app()._edge("send_task")
        return send_task(self._handle.name, args, kwargs, **self._options)

    async def add_task_async(self, *args: P.args, **kwargs: P.kwargs) -> Task[R]:
        """Async twin of :meth:`add_task`."""
        return await self._handle._app().send_task_async(
            self._handle.name, args, kwargs, **self._options
        )


def _make_spec(
    func: Callable[..., Any], name: str | None, options: dict[str, Any]
) -> TaskExecSchema:
    # The original's idiom: any other keyword is the task's own metadata (``extra``,
    # e.g. ``test=True`` for its testing plugin). A near miss of a known option is a
    # typo, not metadata: refused, or ``retyr=3`` would silently never retry.
    extra = {k: options.pop(k) for k in set(options) - _TASK_OPTIONS}
    for key in sorted(extra):
        close = difflib.get_close_matches(key, _TASK_OPTIONS, n=1, cutoff=0.8)
        if close:
            raise TaskOptionError(
                f"task option {key!r} of {getattr(func, '__name__', func)!r} looks like "
                f"a misspelled {close[0]!r}: write {close[0]}=..., or give the extra "
                f"value under another name (other keywords are kept as the task's extra)"
            )
    for key in ("tags", "middlewares_before", "middlewares_after"):
        if options.get(key) is not None:
            options[key] = tuple(options[key])
        else:
            options.pop(key, None)
    if options.get("queue") is not None:
        options["queue"] = check_queue(options["queue"])
    if options.get("concurrency_limit") is not None:
        check_concurrency_limit(options["concurrency_limit"])
    if options.get("rate_limit") is not None:
        parse_rate_limit(options["rate_limit"])
    exc = options.get("retry_on_exc")
    if exc is not None and not isinstance(exc, tuple):
        options["retry_on_exc"] = tuple(exc) if isinstance(exc, list) else (exc,)
    options = {k: v for k, v in options.items() if v is not None}
    if extra:
        options["extra"] = extra
    return TaskExecSchema(name=name or func.__name__, func=func, **options)


class Declare(Protocol):
    """``@app.task(...)`` with options: the decorator it returns."""

    @overload
    def __call__(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> TaskHandle[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> TaskHandle[P, R]: ...


class AwaitedDeclare(Protocol):
    """The asyncio app's ``@app.task(...)`` with options: the decorator it returns."""

    @overload
    def __call__(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> AwaitedTaskHandle[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> AwaitedTaskHandle[P, R]: ...


class Registry:
    """Shared by the app and routers: the ``task`` decorator."""

    tasks: dict[str, TaskExecSchema]
    default_queue: str | None = None
    #: What ``task`` wraps a function in (the asyncio app's handle awaits).
    _handle_kind: type[TaskHandle[Any, Any]]

    # An ``async def`` task's result is its coroutine's: listed first, or the plain
    # overload would type it as the coroutine.
    @overload
    def task(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> TaskHandle[P, R]: ...
    @overload
    def task(self, func: Callable[P, R], /) -> TaskHandle[P, R]: ...
    @overload
    def task(self, func: None = None, /, *, name: str | None = None, **options: Any) -> Declare: ...

    def task(
        self, func: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any
    ) -> Any:
        """Register a task, bare (``@app.task``) or with options (``@app.task(retry=3)``).

        Returns a :class:`TaskHandle`, typed by the function's parameters and result.
        Options: ``name, queue, priority, echo, max_time, retry, retry_on_exc,
        retry_backoff, retry_jitter, decode, tags, description, generate_handler, executor,
        middlewares_before, middlewares_after``. Any other keyword is kept, as in the
        original QTasks, in the task's ``extra`` dict (``handle.extra``, ``ctx.extra``),
        except a near miss of an option's name, refused as a typo.
        """
        default_queue = self.default_queue
        kind = getattr(self, "_handle_kind", TaskHandle)

        def register(f: Callable[..., Any]) -> TaskHandle[Any, Any]:
            given = dict(options)
            if default_queue is not None and given.get("queue") is None:
                given["queue"] = default_queue
            spec = _make_spec(f, name, given)
            check_middlewares(spec.name, spec.middlewares_before, spec.middlewares_after)
            self.tasks[spec.name] = spec
            return kind(spec, self)  # type: ignore[arg-type]

        return register(func) if func is not None else register


class Router(Registry):
    """A group of tasks declared apart from the app, then ``app.include_router(router)``.

    :param queue: the queue of the router's tasks that do not name one.
    """

    def __init__(self, *, queue: str | None = None) -> None:
        self.tasks = {}
        self.app: BaseQueueTasks | None = None
        self.default_queue = None if queue is None else check_queue(queue)


#: The original QTasks' routers: one kind serves sync and async tasks alike here.
AsyncRouter = SyncRouter = Router


#: The tasks of ``shared_task``: every app of the process takes them when it starts.
SHARED = Router()


class AsyncTaskHandle(TaskHandle[P, R]):
    """A task handle whose ``add_task`` is a coroutine on any app
    (``shared_task(awaiting=True)``)."""

    async def add_task(self, *args: Any, **kwargs: Any) -> Task[R]:  # type: ignore[override]
        """:meth:`TaskHandle.add_task_async`."""
        return await self._app().add_task_async(self.name, *args, **kwargs)


class SyncTaskHandle(TaskHandle[P, R]):
    """A task handle whose ``add_task`` blocks on any app (``shared_task(awaiting=False)``)."""

    def add_task(self, *args: Any, **kwargs: Any) -> Task[R]:
        """Enqueue this task, blocking (see :meth:`QueueTasks.add_task`)."""
        app = self._app()
        # Blocking, also on an app of qtasks_core.asyncio: that is what awaiting=False
        # asks for.
        return app._portal.call(app.add_task_async(self.name, *args, **kwargs), "add_task")


class AwaitedTaskHandle(TaskHandle[P, R]):
    """What the asyncio app's ``@app.task`` returns: ``add_task`` is a coroutine
    whose wait (``timeout``) returns ``None`` when it runs out, as the asyncio app's
    ``add_task``; its arguments are checked as :class:`TaskHandle`'s."""

    @overload  # type: ignore[override]
    async def add_task(self, *args: P.args, **kwargs: P.kwargs) -> Task[R] | None: ...
    @overload
    async def add_task(
        self, *args: Any, timeout: float, priority: int | None = None, **kwargs: Any
    ) -> Task[R] | None: ...
    @overload
    async def add_task(
        self, *args: Any, priority: int, timeout: float | None = None, **kwargs: Any
    ) -> Task[R] | None: ...

    async def add_task(self, *args: Any, **kwargs: Any) -> Task[R] | None:
        """Enqueue this task (see the asyncio app's ``add_task``)."""
        add_task: Callable[..., Awaitable[Task[R] | None]] = self._app()._edge("add_task")
        return await add_task(self.name, *args, **kwargs)

    def with_options(self, **options: Any) -> AwaitedOptions[P, R]:
        """:meth:`TaskHandle.with_options`, whose ``add_task`` is awaited."""
        return AwaitedOptions(self, super().with_options(**options)._options)


class AwaitedOptions(Options[P, R]):
    """:class:`Options` of the asyncio app's handles: ``add_task`` is a coroutine
    whose wait (``timeout``) returns ``None`` when it runs out."""

    async def add_task(  # type: ignore[override]
        self, *args: P.args, **kwargs: P.kwargs
    ) -> Task[R] | None:
        """Enqueue the task with these options."""
        send_task: Callable[..., Awaitable[Task[R] | None]] = self._handle._app()._edge("send_task")
        return await send_task(self._handle.name, args, kwargs, **self._options)


def shared_task(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    awaiting: bool | None = None,
    **options: Any,
) -> Any:
    """Declare a task that every app in the process knows (for libraries).

    :param awaiting: the original QTasks' option: ``True`` makes the handle's
        ``add_task`` a coroutine, ``False`` makes it block, whichever app runs it;
        ``None`` (default) follows the app (a coroutine on :mod:`qtasks_core.asyncio`'s).
    """
    if awaiting is not None and not isinstance(awaiting, bool):
        raise TaskOptionError(f"shared_task(awaiting=...) is True, False or None, got {awaiting!r}")
    kind = {None: TaskHandle, True: AsyncTaskHandle, False: SyncTaskHandle}[awaiting]

    def register(f: Callable[..., Any]) -> TaskHandle[Any, Any]:
        handle = SHARED.task(name=name, **options)(f)
        return kind(handle.spec, SHARED)

    return register(func) if func is not None else register
