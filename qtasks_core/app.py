"""``QueueTasks``: the app. Declare tasks, enqueue them, read results; fires ``qtasks_*``.

One object serves sync and async callers. Every operation is one coroutine; the
sync method runs it on the app's event-loop thread (:mod:`._portal`), the ``*_async``
method on the caller's loop:

=====================  ============================  ==================================
sync                   async                         does
=====================  ============================  ==================================
``add_task``           ``add_task_async``            enqueue (optionally wait)
``send_task``          ``send_task_async``           enqueue with explicit args/kwargs
``get``                ``get_async``                 read a task, ``None`` if unknown
``wait``               ``wait_async``                wait for a task's final state
``cancel``             ``cancel_async``              cancel a task not yet running
``ping``               ``ping_async``                is the backend there?
``flush_all``          ``flush_all_async``           delete every task of this app
``stop``               ``stop_async``                fire stop triggers, close
=====================  ============================  ==================================
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import difflib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from qtasks_hooks import PluginManager, get_plugin_manager, load_plugins

from . import _current
from ._portal import Portal
from ._util import fired, lifecycle
from ._validate import (
    check_app_name,
    check_args,
    check_batch_call,
    check_concurrency_limit,
    check_delay,
    check_expires,
    check_kwargs,
    check_priority,
    check_queue,
    check_task_name,
    check_timeout,
    check_unique_for,
    check_unique_key,
    parse_rate_limit,
)
from .backends import Backend, MemoryBackend, RedisBackend
from .backends.base import AbortResult, RequeueResult
from .broker import Broker
from .config import LOGGERS, QueueConfig, set_level
from .errors import TaskOptionError, TaskTimeoutError
from .global_config import GlobalConfig
from .middlewares import check_middlewares
from .producer import Call, Producer
from .schedules import Schedule, ScheduleState, ScheduleStore, load_runtime
from .schemas import (
    FINAL_STATUSES,
    DeadLetterPage,
    StatusChange,
    Task,
    TaskExecSchema,
    TaskPage,
    WorkflowNode,
    WorkflowView,
)
from .storage import Storage, UniqueHeld
from .workflows import MAX_MEMBERS, Flow, Signature, signature
from .workflows import start as start_workflow

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("qtasks.app")

F = TypeVar("F", bound=Callable[..., Any])

ENV_REDIS_URL = "QTASKS_REDIS_URL"
#: Tasks of one add_tasks call in flight at once (their writes share pipelines).
_BATCH = 1000


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
    "decode",
    "tags",
    "description",
    "generate_handler",
    "executor",
    "middlewares_before",
    "middlewares_after",
}


def _path_order(path: str) -> tuple[int, ...]:
    """A workflow path (``r.0.10``) in tree order: r.0.2 before r.0.10; ``e`` last."""
    if path == "e":
        return (1,)
    return (0, *(int(part) for part in path.split(".")[1:] if part.isdigit()))


class TaskHandle:
    """What ``@app.task`` returns: still the plain function, plus ``add_task``."""

    def __init__(self, spec: TaskExecSchema, owner: QueueTasks | Router | None) -> None:
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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.spec.func(*args, **kwargs)

    def _app(self) -> QueueTasks:
        owner = self._owner
        app = owner if isinstance(owner, QueueTasks) else getattr(owner, "app", None)
        if app is None:
            app = QueueTasks.current()
        if app is None:
            raise RuntimeError(
                f"task {self.name!r} belongs to no app yet: include its router "
                "in a QueueTasks app, or create the app first"
            )
        return app

    def add_task(
        self, *args: Any, priority: int | None = None, timeout: float | None = None, **kwargs: Any
    ) -> Task:
        """Enqueue this task (see :meth:`QueueTasks.add_task`); on an app of
        :mod:`qtasks_core.asyncio` this returns the coroutine to await."""
        return self._app().add_task(self.name, *args, priority=priority, timeout=timeout, **kwargs)

    async def add_task_async(
        self, *args: Any, priority: int | None = None, timeout: float | None = None, **kwargs: Any
    ) -> Task:
        """Enqueue this task from async code (see :meth:`QueueTasks.add_task_async`)."""
        return await self._app().add_task_async(
            self.name, *args, priority=priority, timeout=timeout, **kwargs
        )

    def send_task(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Task:
        """Enqueue this task with explicit ``args``/``kwargs`` and call options
        (``priority, timeout, queue, delay, eta, expires``: see
        :meth:`QueueTasks.send_task_async`)."""
        return self._app().send_task(self.name, args, kwargs, **options)

    async def send_task_async(
        self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Task:
        """Async twin of :meth:`send_task`."""
        return await self._app().send_task_async(self.name, args, kwargs, **options)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """This task's call as a step of a workflow (see :mod:`qtasks_core.workflows`):
        in a chain it gets the previous step's result as its first argument."""
        return signature(self.name, args, kwargs, app=self._app())

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """:meth:`s` that takes no result from the step before."""
        return dataclasses.replace(self.s(*args, **kwargs), immutable=True)


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


class _Registry:
    """Shared by the app and routers: the ``task`` decorator."""

    tasks: dict[str, TaskExecSchema]

    @overload
    def task(self, func: F, /) -> TaskHandle: ...

    @overload
    def task(
        self, func: None = None, /, *, name: str | None = None, **options: Any
    ) -> Callable[[F], TaskHandle]: ...

    def task(
        self, func: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any
    ) -> Any:
        """Register a task, bare (``@app.task``) or with options (``@app.task(retry=3)``).

        Options: ``name, queue, priority, echo, max_time, retry, retry_on_exc,
        retry_backoff, decode, tags, description, generate_handler, executor,
        middlewares_before, middlewares_after``. Any other keyword is kept, as in the
        original QTasks, in the task's ``extra`` dict (``handle.extra``, ``ctx.extra``),
        except a near miss of an option's name, refused as a typo.
        """
        default_queue = getattr(self, "default_queue", None)

        def register(f: Callable[..., Any]) -> TaskHandle:
            given = dict(options)
            if default_queue is not None and given.get("queue") is None:
                given["queue"] = default_queue
            spec = _make_spec(f, name, given)
            check_middlewares(spec.name, spec.middlewares_before, spec.middlewares_after)
            self.tasks[spec.name] = spec
            return TaskHandle(spec, self)  # type: ignore[arg-type]

        return register(func) if func is not None else register


class Router(_Registry):
    """A group of tasks declared apart from the app, then ``app.include_router(router)``.

    :param queue: the queue of the router's tasks that do not name one.
    """

    def __init__(self, *, queue: str | None = None) -> None:
        self.tasks = {}
        self.app: QueueTasks | None = None
        self.default_queue = None if queue is None else check_queue(queue)


#: The original QTasks' routers: one kind serves sync and async tasks alike here.
AsyncRouter = SyncRouter = Router


_shared = Router()


class AsyncTaskHandle(TaskHandle):
    """A task handle whose ``add_task`` is a coroutine on any app
    (``shared_task(awaiting=True)``)."""

    async def add_task(  # type: ignore[override]
        self, *args: Any, priority: int | None = None, timeout: float | None = None, **kwargs: Any
    ) -> Task:
        """:meth:`TaskHandle.add_task_async`."""
        return await self.add_task_async(*args, priority=priority, timeout=timeout, **kwargs)


class SyncTaskHandle(TaskHandle):
    """A task handle whose ``add_task`` blocks on any app (``shared_task(awaiting=False)``)."""

    def add_task(
        self, *args: Any, priority: int | None = None, timeout: float | None = None, **kwargs: Any
    ) -> Task:
        """Enqueue this task, blocking (see :meth:`QueueTasks.add_task`)."""
        app = self._app()
        # The sync app's method, also on an app of qtasks_core.asyncio: that is what
        # awaiting=False asks for.
        return QueueTasks.add_task(
            app, self.name, *args, priority=priority, timeout=timeout, **kwargs
        )


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

    def register(f: Callable[..., Any]) -> TaskHandle:
        handle = _shared.task(name=name, **options)(f)
        return kind(handle.spec, _shared)

    return register(func) if func is not None else register


class QueueTasks(_Registry):
    """A QTasks app.

    :param name: the app's name; apps of one name share queues and results. 1 to 128
        ASCII letters, digits, ``_``, ``.`` and ``-`` (it is part of every Redis key).
    :param redis_url: ``redis://``, ``rediss://`` or ``unix://`` URL, or ``memory://``
        for the in-process backend. Default: ``$QTASKS_REDIS_URL``, else the embedded
        Valkey server under ``./.qtasks`` (started on first use).
    :param result_ttl: seconds a finished task stays readable (``None``: forever);
        default ``$QTASKS_RESULT_TTL``, else 86400. The same as ``app.config.result_ttl``.
    :param config: the settings (:class:`~qtasks_core.config.QueueConfig`); default one
        read from the ``QTASKS_*`` environment variables. Later changes to
        ``app.config`` take effect where they apply.
    :param plugins: plugins to register besides the entry-point ones.
    :param load_entry_points: load ``qtasks.plugins`` entry points when the app starts.
    :param allow_plugins: / :param block_plugins: entry-point names to keep / skip (also
        ``$QTASKS_PLUGINS`` / ``$QTASKS_DISABLE_PLUGINS``).
    :param max_payload: largest accepted size of a task's JSON arguments, in bytes.
    :param broker_url: the original QTasks' name for ``redis_url``.
    :param events: append every status change of every task this process makes to the
        app's capped event stream, which :meth:`events` and ``qtasks events`` read from
        any process (default ``$QTASKS_EVENTS``, else off: about 3 stream entries per
        task cost some 8 % of throughput). The ``storage_status_changed`` trigger fires
        either way. The same as ``app.config.events``.
    :param events_max: entries the event stream keeps (about: trimmed with ``MAXLEN
        ~``); default ``$QTASKS_EVENTS_MAX``, else 10,000.
    """

    def __init__(
        self,
        name: str = "QueueTasks",
        redis_url: str | None = None,
        *,
        backend: Backend | None = None,
        result_ttl: float | EllipsisType | None = ...,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
        allow_plugins: Iterable[str] | None = None,
        block_plugins: Iterable[str] = (),
        max_payload: int = 1_048_576,
        builtin_plugins: bool = True,
        broker_url: str | None = None,
        config: QueueConfig | None = None,
        events: bool | None = None,
        events_max: int | None = None,
    ) -> None:
        self.name = check_app_name(name)
        if broker_url is not None and redis_url is not None and broker_url != redis_url:
            raise TaskOptionError(
                "give the Redis URL once: broker_url= (the original QTasks' name) and "
                "redis_url= differ"
            )
        self.redis_url = redis_url if redis_url is not None else broker_url
        if config is not None and result_ttl is not ...:
            raise TaskOptionError(
                "give the result TTL once: result_ttl= or QueueConfig(result_ttl=...), not both"
            )
        # ``...``: not given, so $QTASKS_RESULT_TTL (then the default) applies.
        given = {} if result_ttl is ... else {"result_ttl": result_ttl}
        self._config = config if config is not None else QueueConfig(**given)
        # Given here, they win over the config's (and the environment's) values.
        if events is not None:
            self._config.events = events
        if events_max is not None:
            self._config.events_max = events_max
        self._config.subscribe(self._setting_changed)
        self._config.apply_logging()
        self.max_payload = max_payload
        self.tasks: dict[str, TaskExecSchema] = {}
        self.pm: PluginManager = get_plugin_manager()
        self._load_entry_points = load_entry_points
        self._allow = list(allow_plugins) if allow_plugins is not None else None
        self._block = list(block_plugins)
        if builtin_plugins:
            from .plugins import register_builtins

            register_builtins(self.pm, self._block)
        for plugin in plugins:
            self.add_plugin(plugin)
        self._backend = backend
        #: The embedded server's data folder, when the app runs on it.
        self.embedded_home: str | None = None
        self._components: tuple[Broker, Storage, GlobalConfig] | None = None
        self._schedule_store: ScheduleStore | None = None
        self._started = False
        self._starting: concurrent.futures.Future[None] | None = None
        self._start_lock = threading.Lock()
        self._resolve_lock = threading.Lock()
        self._portal = Portal(name)
        #: Eager mode (for tests): ``add_task`` runs the task in this process at once
        #: and returns it finished. Every trigger fires as with a real worker.
        self.eager = False
        self._portal_workers: dict[Any, concurrent.futures.Future[None]] = {}
        #: Schedules declared in code (``@app.periodic``); those added at run time live
        #: in the backend.
        self._schedules: dict[str, Schedule] = {}
        #: The one path of every new task (see :mod:`qtasks_core.producer`).
        self.producer = Producer(self)
        _current.set_current(self)

    # -- settings ----------------------------------------------------------------------

    @property
    def config(self) -> QueueConfig:
        """The app's settings (:mod:`qtasks_core.config`), the original's ``app.config``."""
        return self._config

    @property
    def result_ttl(self) -> float | None:
        """Seconds a finished task stays readable (``app.config.result_ttl``)."""
        return self._config.result_ttl

    @result_ttl.setter
    def result_ttl(self, value: float | None) -> None:
        self._config.result_ttl = value

    def _setting_changed(self, name: str, value: Any) -> None:
        """Apply a setting changed at run time where it acts (the priority is read at
        each enqueue)."""
        if name == "result_ttl" and self._components is not None:
            self._components[1].result_ttl = value
        elif name in ("events", "events_max") and self._components is not None:
            self._components[1].events_max = self.events_max
            self._components[1].refresh_feed()
        elif name in LOGGERS:
            set_level(name, value)

    @property
    def events_max(self) -> int:
        """Entries this process keeps on the app's event stream (0: it writes none)."""
        return self._config.events_max if self._config.events else 0

    # -- declaring ---------------------------------------------------------------------

    @classmethod
    def current(cls) -> QueueTasks | None:
        """The app created last in this process (what ``shared_task`` handles use)."""
        return _current.current()

    def include_router(self, router: Router) -> None:
        """Add a router's tasks to this app."""
        self.tasks.update(router.tasks)
        router.app = self

    def add_plugin(self, plugin: object, name: str | None = None) -> str | None:
        """Register a plugin on this app's plugin manager (all components share it)."""
        return self.pm.register(plugin, name=name)

    # -- components --------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The engine under every component (resolved once, on first use)."""
        if self._backend is None:
            with self._resolve_lock:
                if self._backend is None:
                    self._backend = self._resolve_backend()
        return self._backend

    def _resolve_backend(self) -> Backend:
        url = self.redis_url or os.environ.get(ENV_REDIS_URL)
        if url == "memory://":
            return MemoryBackend()
        if url:
            return RedisBackend(url, self.name)
        from .embedded import ensure_server, home

        self.embedded_home = str(home())
        return RedisBackend(ensure_server(), self.name)

    def _build(self) -> tuple[Broker, Storage, GlobalConfig]:
        if self._components is None:
            storage = Storage(
                self.backend,
                self.pm,
                result_ttl=self.result_ttl,
                max_payload=self.max_payload,
                events_max=self.events_max,
                step_written=lambda uuid: self.producer.step_written(uuid),
            )
            self._components = (
                Broker(self.backend, storage, self.pm),
                storage,
                GlobalConfig(self.backend, self.pm),
            )
        return self._components

    @property
    def broker(self) -> Broker:
        return self._build()[0]

    @property
    def storage(self) -> Storage:
        return self._build()[1]

    @property
    def global_config(self) -> GlobalConfig:
        return self._build()[2]

    @property
    def schedule_store(self) -> ScheduleStore:
        """The schedules' part of the engine (definitions, cursors, ticks)."""
        if self._schedule_store is None:
            self._schedule_store = ScheduleStore(self.backend)
        return self._schedule_store

    async def start_async(self, worker: Worker | None = None) -> None:
        """Resolve the backend, load entry-point plugins, fire the start triggers.

        Called by every operation on first use (by a worker, with itself, so that
        ``broker_start`` sees it); concurrent first calls (from any thread or loop)
        wait for one start; later calls return at once.
        """
        if self._started:
            return
        with self._start_lock:
            first = self._starting is None
            if first:
                self._starting = concurrent.futures.Future()
            starting = self._starting
        assert starting is not None
        if not first:
            await asyncio.wrap_future(starting)
            return
        try:
            self.tasks = {**_shared.tasks, **self.tasks}
            if self._load_entry_points:
                load_plugins(self.pm, allow=self._allow, block=self._block)
            # Resolving may start the embedded server: keep it off the event loop.
            await asyncio.to_thread(lambda: self.backend)
            broker, storage, config = self._build()
            await self.backend.start()
            await storage.start()
            await config.start()
            await broker.start(worker=worker)
        except BaseException as exc:
            with self._start_lock:
                self._starting = None
            starting.set_exception(exc)
            # Nobody else may be waiting: do not let the future log "never retrieved".
            starting.exception()
            raise
        self._started = True
        starting.set_result(None)

    # -- periodic tasks ----------------------------------------------------------------

    def periodic(
        self,
        *,
        cron: str | None = None,
        tz: str = "UTC",
        every: float | timedelta | None = None,
        trigger: Any = None,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        name: str | None = None,
        missed: str = "once",
        **task_options: Any,
    ) -> Callable[[F], TaskHandle]:
        """Register a task that runs on a schedule: ``@app.periodic(cron="*/5 * * * *",
        tz="Europe/Berlin")`` or ``@app.periodic(every=30)`` (see
        :class:`~qtasks_core.schedules.Schedule`). Every worker runs the scheduler;
        each tick is enqueued exactly once however many run. ``task_options`` go to
        ``@app.task``; ``name`` names the schedule (default: the task's name)."""

        when = {
            "cron": cron, "tz": tz, "every": every, "queue": queue, "priority": priority,
            "args": tuple(args), "kwargs": dict(kwargs or {}), "missed": missed,
        }  # fmt: skip

        def register(f: F) -> TaskHandle:
            handle = self.task(f, **task_options) if task_options else self.task(f)
            schedule = Schedule(
                name or handle.name,
                handle.name,
                trigger=trigger,
                **when,  # type: ignore[arg-type]
            )
            if schedule.name in self._schedules:
                raise TaskOptionError(f"two schedules are named {schedule.name!r}: give name=")
            self._schedules[schedule.name] = schedule
            return handle

        return register

    async def add_schedule_async(
        self,
        name: str,
        task_name: str,
        *,
        cron: str | None = None,
        tz: str = "UTC",
        every: float | timedelta | None = None,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        missed: str = "once",
    ) -> Schedule:
        """Add (or replace) a schedule at run time, kept in the backend: every worker's
        scheduler is woken through the backend and takes it up at once (its first tick
        is the first after now). A trigger object lives in code: declare it with
        :meth:`periodic`."""
        if name in self._schedules:
            raise TaskOptionError(
                f"schedule {name!r} is declared in code (@app.periodic): choose another name"
            )
        schedule = Schedule(
            name, task_name, cron=cron, tz=tz, every=every, queue=queue, priority=priority,
            args=tuple(args), kwargs=dict(kwargs or {}), missed=missed,  # type: ignore[arg-type]
        )  # fmt: skip
        await self.start_async()
        await self.schedule_store.save(name, schedule.to_json())
        return schedule

    def add_schedule(self, name: str, task_name: str, **options: Any) -> Schedule:
        """Sync twin of :meth:`add_schedule_async`."""
        return self._portal.call(self.add_schedule_async(name, task_name, **options))

    async def remove_schedule_async(self, name: str) -> bool:
        """Remove a schedule added at run time; ``False`` if there was none. No tick of
        it is enqueued once this returns, on any worker (the backend refuses a tick of
        a definition no longer stored), and every scheduler is woken to drop it. A
        schedule added again under the name starts at its first tick after now."""
        if name in self._schedules:
            raise TaskOptionError(
                f"schedule {name!r} is declared in code (@app.periodic): remove it there"
            )
        await self.start_async()
        return await self.schedule_store.save(name, None)

    def remove_schedule(self, name: str) -> bool:
        """Sync twin of :meth:`remove_schedule_async`."""
        return self._portal.call(self.remove_schedule_async(name))

    async def schedules_async(self) -> list[ScheduleState]:
        """Every schedule, declared in code or added at run time, with its last and
        next run."""
        await self.start_async()
        runtime = await load_runtime(self)
        out = []
        for schedule in {**runtime, **self._schedules}.values():
            cursor = await self.schedule_store.cursor(schedule.name)
            zone = schedule.zone

            def at(value: str | None, zone: Any = zone) -> datetime | None:
                if not value or not value.isdigit() or int(value) >= 2**62:
                    return None
                return datetime.fromtimestamp(int(value) / 1000, tz=zone)

            next_ms = cursor.get("next")
            if not next_ms:
                first = schedule.next_after(int(datetime.now(UTC).timestamp() * 1000))
                next_ms = None if first is None else str(first)
            out.append(
                ScheduleState(
                    schedule=schedule,
                    last_run=at(cursor.get("last")),
                    next_run=at(next_ms),
                    declared_in_code=schedule.name in self._schedules,
                )
            )
        return sorted(out, key=lambda s: s.schedule.name)

    def schedules(self) -> list[ScheduleState]:
        """Sync twin of :meth:`schedules_async`."""
        return self._portal.call(self.schedules_async())

    # -- producing ---------------------------------------------------------------------

    async def send_task_async(
        self,
        task_name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
    ) -> Task:
        """Enqueue ``task_name`` with explicit ``args``/``kwargs`` (any names allowed,
        ``priority`` and ``timeout`` included). See :meth:`add_task_async`.

        :param queue: the queue (default: the task's own, else ``"default"``); only
            workers serving it run the task.
        :param delay: / :param eta: run no earlier than ``delay`` seconds (or a
            ``timedelta``) from now, or than ``eta`` (a timezone-aware ``datetime``).
            The task waits in the backend, not in a worker.
        :param expires: seconds, a ``timedelta`` or a timezone-aware ``datetime``: a
            task not started by then ends ``cancel`` with the reason ``expired`` and
            never runs.
        :param unique_key: while a task sent with this key is queued or running (and,
            with ``unique_for`` seconds or a ``timedelta``, until that long after it
            was sent), sending another with the key returns that task and adds none;
            checked in the same atomic step as the enqueue.

        A bad name, argument container, priority, timeout, queue or time raises
        :class:`TaskOptionError` before the app even connects.
        """
        task_name = check_task_name(task_name)
        call_args, call_kwargs = check_args(args, task_name), check_kwargs(kwargs, task_name)
        if priority is not None:
            check_priority(priority)
        timeout = check_timeout(timeout)
        options: dict[str, Any] = {}
        if queue is not None:
            options["queue"] = check_queue(queue)
        if (due := check_delay(delay, eta)) is not None:
            options["delay"] = due
        if (until := check_expires(expires)) is not None:
            options["expires"] = until
        if unique_key is not None:
            options["unique_key"] = check_unique_key(unique_key)
        if unique_for is not None:
            if unique_key is None:
                raise TaskOptionError("unique_for needs a unique_key: pass both")
            options["unique_for"] = check_unique_for(unique_for)
            kept = self.storage.result_ttl
            if kept is not None and options["unique_for"] > kept:
                raise TaskOptionError(
                    f"unique_for={options['unique_for']:g}s is longer than result_ttl="
                    f"{kept:g}s: the key is held by the task's record, which is gone by "
                    "then; raise app.config.result_ttl or shorten unique_for"
                )
        await self.start_async()
        call = await self.producer.call(task_name, call_args, call_kwargs, priority, options)
        try:
            task = await self.producer.add(call)
        except UniqueHeld as held:
            # Another task holds the key: that task is the answer, as it is now.
            existing = await self.get_async(held.uuid)
            if existing is None:
                raise TaskOptionError(
                    f"unique_key {unique_key!r} is held by task {held.uuid}, whose record "
                    "is gone; send again"
                ) from None
            return existing
        if self.eager:
            return await self._run_eagerly(task.uuid)
        if timeout is not None:
            return await self.wait_async(task.uuid, timeout)
        return task

    async def _run_eagerly(self, uuid: str) -> Task:
        from .worker import Worker

        # Exactly this task (and its retries): other tasks queued meanwhile stay queued.
        await Worker(self, concurrency=1).run(only=uuid)
        task = await self.get_async(uuid)
        assert task is not None
        return task

    async def add_task_async(
        self,
        task_name: str,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Task:
        """Enqueue a task; returns it as written (status ``new``).

        ``priority``: lower runs first (default: the task's own, else 0). With
        ``timeout`` (seconds) the call waits for the final state and returns the
        finished task; if the wait runs out it raises :class:`TaskTimeoutError`, whose
        ``uuid`` keeps the task's id (the task itself goes on). Arguments must be
        JSON-serializable; otherwise :class:`TaskSerializationError` is raised and
        nothing is written. To pass task kwargs named ``priority`` or ``timeout``, use
        :meth:`send_task_async`.
        """
        return await self.send_task_async(
            task_name, args, kwargs, priority=priority, timeout=timeout
        )

    def add_task(
        self,
        task_name: str,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Task:
        """Sync twin of :meth:`add_task_async`."""
        return self._portal.call(
            self.send_task_async(task_name, args, kwargs, priority=priority, timeout=timeout)
        )

    async def add_tasks_async(
        self,
        calls: Iterable[tuple[str, Iterable[Any], dict[str, Any]] | tuple[str, Iterable[Any]]],
        *,
        priority: int | None = None,
    ) -> list[Task]:
        """Enqueue many tasks at once: ``[(task_name, args[, kwargs]), ...]``.

        Each task goes through every trigger as with :meth:`send_task_async`; the
        writes of up to 1,000 tasks travel in one atomic script call. Returns the tasks
        in order. An error (e.g. arguments that cannot be serialized) is raised before
        that chunk is written: earlier chunks stay enqueued.
        """
        if priority is not None:
            check_priority(priority)
        results: list[Task] = []
        chunk: list[Call] = []
        # One chunk is written while the next is prepared, so Redis runs the script
        # while this process builds the next records; chunks still go one after the
        # other (in order, and none written after an error).
        writing: asyncio.Task[list[Task]] | None = None
        try:
            for index, call in enumerate(calls):
                task_name, args, kw = check_batch_call(call, index)
                if not self._started:
                    # Started once the first item passed: a bad one connects to nothing.
                    await self.start_async()
                chunk.append(await self.producer.call(task_name, args, kw, priority))
                if len(chunk) >= _BATCH:
                    if writing is not None:
                        results.extend(await writing)
                    writing = asyncio.ensure_future(self.producer.add_many(chunk))
                    chunk = []
                    await asyncio.sleep(0)  # let it send before preparing the next chunk
            if writing is not None:
                results.extend(await writing)
                writing = None
            if chunk:
                results.extend(await self.producer.add_many(chunk))
        except BaseException:
            if writing is not None:
                # The chunk already sent stays enqueued, as the docstring promises.
                await asyncio.wait([writing])
            raise
        if self.eager:
            return [await self._run_eagerly(task.uuid) for task in results]
        return results

    def add_tasks(
        self,
        calls: Iterable[tuple[str, Iterable[Any], dict[str, Any]] | tuple[str, Iterable[Any]]],
        *,
        priority: int | None = None,
    ) -> list[Task]:
        """Sync twin of :meth:`add_tasks_async`."""
        return self._portal.call(self.add_tasks_async(calls, priority=priority))

    def send_task(
        self,
        task_name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
    ) -> Task:
        """Sync twin of :meth:`send_task_async`."""
        return self._portal.call(
            self.send_task_async(
                task_name,
                args,
                kwargs,
                priority=priority,
                timeout=timeout,
                queue=queue,
                delay=delay,
                eta=eta,
                expires=expires,
                unique_key=unique_key,
                unique_for=unique_for,
            )
        )

    # -- workflows ---------------------------------------------------------------------

    def signature(
        self,
        task_name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
    ) -> Signature:
        """A call of ``task_name`` as a step of a workflow (``handle.s(...)`` is the
        short form)."""
        return signature(task_name, args, kwargs, queue=queue, priority=priority, app=self)

    async def start_workflow_async(
        self,
        flow: Flow,
        *,
        name: str = "workflow",
        timeout: float | None = None,
        on_error: Signature | None = None,
    ) -> Task:
        """Start a chain, group or chord (:mod:`qtasks_core.workflows`); returns the
        workflow's own task: ``process`` until it ends ``success`` with the last step's
        result as ``returning`` (a group's: the list of its members' results), or
        ``error`` naming the member that failed. Wait for it like any task
        (``app.wait(task.uuid, timeout)``, or ``timeout=`` here). ``on_error``: a
        signature run once if the workflow fails, given ``{"workflow", "member",
        "task_name", "status", "error"}`` as its first argument.

        The workflow and its first tasks are written at once; the backend then starts
        each next step in the same atomic step that writes a member's final status.
        """
        check_task_name(name)
        timeout = check_timeout(timeout)
        await self.start_async()
        uuid, _ = await start_workflow(
            self, flow, name=name, ttl=self.storage.result_ttl, on_error=on_error
        )
        if self.eager:
            await self._run_workflow_eagerly(uuid)
        if timeout is not None or self.eager:
            return await self.wait_async(uuid, timeout if timeout is not None else 0.1)
        task = await self.get_async(uuid)
        assert task is not None
        return task

    def start_workflow(
        self,
        flow: Flow,
        *,
        name: str = "workflow",
        timeout: float | None = None,
        on_error: Signature | None = None,
    ) -> Task:
        """Sync twin of :meth:`start_workflow_async`."""
        return self._portal.call(
            self.start_workflow_async(flow, name=name, timeout=timeout, on_error=on_error)
        )

    async def list_workflows_async(self, *, before: str | None = None, limit: int = 50) -> TaskPage:
        """A page of workflows (their own tasks), newest first: running and ended, for
        as long as their records are kept. ``before``: the ``next`` of the previous
        page."""
        await self.start_async()
        tasks, cursor = await self.storage.list_workflows(before, limit)
        return TaskPage(tasks=tasks, next=cursor)

    def list_workflows(self, *, before: str | None = None, limit: int = 50) -> TaskPage:
        """Sync twin of :meth:`list_workflows_async`."""
        return self._portal.call(self.list_workflows_async(before=before, limit=limit))

    async def workflow_async(self, uuid: str) -> WorkflowView | None:
        """The workflow ``uuid``: its own task and its tree with each member's status
        (``waiting`` for a step whose turn has not come); ``None`` if there is no such
        workflow (or it expired)."""
        task = await self.get_async(uuid)
        if task is None:
            return None
        stored = await self.storage.workflow_nodes(uuid)
        kinds: dict[str, Literal["task", "chain", "group"]] = {
            "t": "task",
            "c": "chain",
            "g": "group",
        }
        nodes = []
        for path in sorted((p for p in stored if "#" not in p), key=_path_order):
            try:
                node = json.loads(stored[path])
            except ValueError:
                continue
            if not isinstance(node, dict) or node.get("k") not in kinds:
                continue
            view = WorkflowNode(path=path, kind=kinds[node["k"]], settle=bool(node.get("s")))
            if node["k"] == "t":
                view.task_name = str((node.get("f") or {}).get("task_name", ""))
                view.uuid = f"{uuid}:{path}"
            nodes.append(view)
        # Every member's status in one round trip, however large the workflow.
        members = [n for n in nodes if n.uuid is not None]
        records = await self.storage.records([n.uuid for n in members if n.uuid])
        for view, member in zip(members, records, strict=True):
            view.status = member.get("status") if member else "waiting"
        return WorkflowView(task=task, nodes=nodes)

    def workflow(self, uuid: str) -> WorkflowView | None:
        """Sync twin of :meth:`workflow_async`."""
        return self._portal.call(self.workflow_async(uuid))

    async def _run_workflow_eagerly(self, uuid: str) -> None:
        from .worker import Worker

        # Every member as it is queued, until the workflow has ended.
        for _ in range(MAX_MEMBERS):
            task = await self.get_async(uuid)
            if task is None or task.status != "process":
                return
            await Worker(self, concurrency=1).run(burst=True)

    # -- reading -----------------------------------------------------------------------

    async def get_async(self, uuid: str, *, _record: dict[str, str] | None = None) -> Task | None:
        """The task's current state, or ``None`` if no task has this id (or it expired)."""
        await self.start_async()
        task = await self.broker.get(uuid, _record)
        new = await fired(self.pm.hook.qtasks_get(qtasks=self, broker=self.broker, task=task))
        return task if new is None else new

    def get(self, uuid: str) -> Task | None:
        """Sync twin of :meth:`get_async`."""
        return self._portal.call(self.get_async(uuid))

    async def list_tasks_async(
        self,
        *,
        status: str | None = None,
        task_name: str | None = None,
        queue: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> TaskPage:
        """A page of tasks, read from indexes the backend keeps (never a key scan, so a
        page is as fast with a million finished records as with ten).

        :param status: a final status (``success``, ``error``, ``cancel``: newest first,
            by when they ended), ``None`` for every finished task, or a live one:
            ``new`` (the queue ``queue``, default ``default``, in queue order),
            ``process`` (by lease deadline) or ``retry`` (waiting, by due time).
        :param task_name: only tasks of this name.
        :param queue: only tasks of this queue.
        :param before: the ``next`` of the previous page.
        :param limit: tasks per page, 1 to 1000.

        A finished task is listed for as long as its record is kept (``result_ttl``).
        Filters the index does not hold (a name within a status, a queue) are checked
        over a bounded window of entries, so a page can hold fewer than ``limit`` tasks
        and still have a ``next``.
        """
        await self.start_async()
        tasks, cursor = await self.storage.list_tasks(
            status=status,
            task_name=task_name,
            queue=queue,
            before=before,
            limit=limit,
        )
        return TaskPage(tasks=tasks, next=cursor)

    def list_tasks(
        self,
        *,
        status: str | None = None,
        task_name: str | None = None,
        queue: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> TaskPage:
        """Sync twin of :meth:`list_tasks_async`."""
        return self._portal.call(
            self.list_tasks_async(
                status=status, task_name=task_name, queue=queue, before=before, limit=limit
            )
        )

    async def wait_async(self, uuid: str, timeout: float) -> Task:
        """Wait (blocking in the backend, no polling) for the task's final state.

        Raises :class:`TaskTimeoutError` (with ``uuid`` and the last seen ``task``)
        when ``timeout`` seconds pass first.
        """
        checked = check_timeout(timeout)
        if checked is None:
            raise TaskOptionError("timeout must be a number of seconds to wait, got None")
        timeout = checked
        await self.start_async()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            done = await self.storage.wait_done(uuid, max(0.0, deadline - loop.time()))
            task = await self.get_async(uuid, _record=done if isinstance(done, dict) else None)
            if task is not None and task.is_finished:
                return task
            # Not done yet (a long wait is made of bounded blocks) or a retry is pending.
            if loop.time() >= deadline:
                raise TaskTimeoutError(uuid, timeout, task)
            if done:
                # The token is there but the record is not final (e.g. requeued from
                # the dead letters): block on the record's next change instead.
                await asyncio.sleep(0.05)

    def wait(self, uuid: str, timeout: float) -> Task:
        """Sync twin of :meth:`wait_async`."""
        return self._portal.call(self.wait_async(uuid, timeout))

    async def cancel_async(self, uuid: str, reason: str = "") -> bool:
        """Cancel a task that is still queued or waiting for a retry; ``False`` if it
        is running, finished or unknown."""
        await self.start_async()
        return await self.broker.update(uuid=uuid, status="cancel", cancel_reason=reason)

    def cancel(self, uuid: str, reason: str = "") -> bool:
        """Sync twin of :meth:`cancel_async`."""
        return self._portal.call(self.cancel_async(uuid, reason))

    # -- operating ---------------------------------------------------------------------

    async def abort_async(self, uuid: str, reason: str = "aborted") -> AbortResult:
        """Stop the task ``uuid`` wherever it is; it ends ``cancel`` with ``reason``.

        A queued or delayed task (or one waiting for a retry) is cancelled at once and
        never runs: ``"cancelled"``. A running one, on any machine: ``"aborting"``; its
        worker learns it at its next heartbeat (every lease/6 seconds; nothing polls
        faster), an async task is cancelled at its next ``await`` and a sync one sees
        ``ctx.aborted`` (a thread cannot be killed: it should return). ``"ended"``: it
        had ended already; ``"unknown"``: no such task.
        """
        if not isinstance(uuid, str) or not uuid:
            raise TaskOptionError(f"uuid must be a task id (a non-empty string), not {uuid!r}")
        if not isinstance(reason, str):
            raise TaskOptionError(f"reason must be a string, not {type(reason).__name__}")
        await self.start_async()
        return await self.storage.abort(uuid, reason)

    def abort(self, uuid: str, reason: str = "aborted") -> AbortResult:
        """Sync twin of :meth:`abort_async`."""
        return self._portal.call(self.abort_async(uuid, reason))

    async def watch_async(self, uuid: str, timeout: float | None = None) -> AsyncIterator[Task]:
        """Yield the task ``uuid`` each time it reports progress (``ctx.set_progress``;
        the update is on ``.progress``) and once more when it ends, then stop. Blocks
        in the backend between updates (no polling), from any process.

        Raises :class:`TaskOptionError` for an unknown task and
        :class:`TaskTimeoutError` if ``timeout`` seconds pass before it ends.
        """
        timeout = check_timeout(timeout)
        await self.start_async()
        status = await self.storage.watch_start(uuid)
        if not status:
            raise TaskOptionError(f"no task {uuid!r} to watch (unknown, or its record expired)")
        deadline = None if timeout is None else time.monotonic() + timeout
        after = "0"
        while True:
            if status in FINAL_STATUSES:
                # It ended before the watch began (or its end was not streamed).
                task = await self.get_async(uuid)
                if task is not None:
                    yield task
                return
            left = 20.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TaskTimeoutError(uuid, timeout or 0.0, await self.get_async(uuid))
            events = await self.storage.watch_events(uuid, after, min(left, 20.0))
            for event_id, kind, data in events:
                after = event_id
                if kind == "final":
                    record = json.loads(data)
                    record.pop("claim", None)
                    task = await self.get_async(uuid, _record=record)
                    if task is not None:
                        yield task
                    return
                task = await self.get_async(uuid)
                if task is not None:
                    yield task.model_copy(update={"progress": json.loads(data)})

    def watch(self, uuid: str, timeout: float | None = None) -> Iterator[Task]:
        """Sync twin of :meth:`watch_async`."""
        updates = self.watch_async(uuid, timeout)

        async def step() -> Task | None:
            return await anext(updates, None)

        while (task := self._portal.call(step())) is not None:
            yield task

    async def events_async(
        self, after: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[StatusChange]:
        """Every task's status changes, as the processes of the app that write the event
        stream (``events=True``) make them: from now on, or after the stream id
        ``after`` (``"0"``: from the oldest kept; each change carries its ``id``, so a
        reader that stops can go on where it was). The reader itself needs no
        ``events=True``; the workers and producers whose changes it shows do.

        :param timeout: stop after this many seconds without a change (``None``: wait
            for ever).
        """
        await self.start_async()
        storage = self.storage
        cursor = after if after is not None else await storage.events_last()
        if not self.events_max and cursor == "0-0":
            log.warning(
                "the event stream of app %s is empty and this process writes none "
                "(events=False): changes show up once workers or producers run with "
                "events=True (or QTASKS_EVENTS=1)",
                self.name,
            )
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            wait = 20.0 if deadline is None else deadline - loop.time()
            if wait <= 0:
                return
            changes = await storage.events(cursor, wait)
            for change in changes:
                yield change
            if changes:
                cursor = changes[-1].id or cursor
                if timeout is not None:
                    deadline = loop.time() + timeout  # quiet time counts from the last

    def events(
        self, after: str | None = None, timeout: float | None = None
    ) -> Iterator[StatusChange]:
        """Sync twin of :meth:`events_async`."""
        changes = self.events_async(after, timeout)

        async def step() -> StatusChange | None:
            return await anext(changes, None)

        while (change := self._portal.call(step())) is not None:
            yield change

    async def retry_async(self, uuid: str) -> Task:
        """Send the task ``uuid`` again as a new task (same name, arguments, queue and
        priority); for a task that ended ``error`` or ``cancel``. Returns the new task.
        Raises :class:`TaskOptionError` for an unknown task or one that has not ended.
        """
        await self.start_async()
        # One read: the record tells a workflow or a step of one; the task is built from it.
        record = await self.storage.record(uuid)
        task = None if record is None else await self.get_async(uuid, _record=record)
        if record is None or task is None:
            raise TaskOptionError(f"no task {uuid!r} to retry (unknown, or its record expired)")
        if record.get("workflow"):
            raise TaskOptionError(
                f"task {uuid} is a workflow: start the workflow again (app.start_workflow)"
            )
        if record.get("wf"):
            raise TaskOptionError(
                f"task {uuid} is a step of workflow {record['wf']}, which does not resume "
                "when one step runs again: start the workflow again (app.start_workflow)"
            )
        if task.status not in ("error", "cancel"):
            raise TaskOptionError(
                f"task {uuid} is {task.status}: only a task that ended error or cancel is "
                "sent again (a queued or running one would run twice)"
            )
        return await self.send_task_async(
            task.task_name,
            task.args,
            task.kwargs,
            priority=task.priority,
            queue=task.queue,
        )

    def retry(self, uuid: str) -> Task:
        """Sync twin of :meth:`retry_async`."""
        return self._portal.call(self.retry_async(uuid))

    async def ping_async(self) -> bool:
        """Whether the backend answers."""
        await self.start_async()
        await fired(self.pm.hook.qtasks_ping(qtasks=self, global_config=self.global_config))
        return await self.broker.ping()

    def ping(self) -> bool:
        """Sync twin of :meth:`ping_async`."""
        return self._portal.call(self.ping_async())

    async def dead_letters_async(self) -> list[dict[str, str]]:
        """Every task set aside (unreadable messages, tasks that kept killing their
        workers), newest first: each a dict of ``uuid``, ``reason``, ``raw`` and ``at``.

        It reads every dead letter with its raw message, however many there are: for a
        list that may be long, read it a page at a time with :meth:`dead_letter_page_async`.
        """
        await self.start_async()
        return await self.broker.dead_letters()

    def dead_letters(self) -> list[dict[str, str]]:
        """Sync twin of :meth:`dead_letters_async`."""
        return self._portal.call(self.dead_letters_async())

    async def dead_letter_page_async(
        self, *, before: str | None = None, limit: int = 50
    ) -> DeadLetterPage:
        """A page of dead letters, newest first, and how many there are in all: one
        read of ``limit`` letters and one of the count, however many are stored.

        :param before: the ``next`` of the previous page (a page starts after its last
            letter even when that letter was requeued or deleted since).
        :param limit: letters per page, 1 to 1000.
        :raises TaskOptionError: for a limit out of range or a cursor not returned by
            this method.
        """
        await self.start_async()
        return await self.broker.dead_letter_page(before, limit)

    def dead_letter_page(self, *, before: str | None = None, limit: int = 50) -> DeadLetterPage:
        """Sync twin of :meth:`dead_letter_page_async`."""
        return self._portal.call(self.dead_letter_page_async(before=before, limit=limit))

    async def requeue_dead_async(self, uuid: str) -> RequeueResult:
        """Queue the dead letter ``uuid`` again, as a new task under the same id.

        Returns ``"requeued"``; ``"not-dead"`` when ``uuid`` is not a dead letter (a
        queued, running or finished task is never requeued: it would run twice); or
        ``"no-record"`` for a dead letter with no task record left to run.
        """
        await self.start_async()
        return await self.broker.requeue_dead(uuid)

    def requeue_dead(self, uuid: str) -> RequeueResult:
        """Sync twin of :meth:`requeue_dead_async`."""
        return self._portal.call(self.requeue_dead_async(uuid))

    async def delete_dead_async(self, uuid: str) -> bool:
        """Forget the dead letter ``uuid``; ``False`` if there was none."""
        await self.start_async()
        return await self.broker.delete_dead(uuid)

    def delete_dead(self, uuid: str) -> bool:
        """Sync twin of :meth:`delete_dead_async`."""
        return self._portal.call(self.delete_dead_async(uuid))

    async def purge_queue_async(self, queue: str) -> int:
        """Empty ``queue``: every task queued there ends ``cancel`` with the reason
        ``purged`` (waiters wake); running and delayed tasks are left alone. Returns
        how many."""
        queue = check_queue(queue)
        await self.start_async()
        return await self.broker.purge_queue(queue)

    def purge_queue(self, queue: str) -> int:
        """Sync twin of :meth:`purge_queue_async`."""
        return self._portal.call(self.purge_queue_async(queue))

    async def purge_async(self) -> int:
        """Delete the records of finished tasks (success, error, cancel) now, rather
        than when their TTL ends; dead letters are kept. Returns how many."""
        await self.start_async()
        return await self.storage.delete_finished_tasks()

    def purge(self) -> int:
        """Sync twin of :meth:`purge_async`."""
        return self._portal.call(self.purge_async())

    async def migrate_keys_async(self) -> tuple[int, list[str]]:
        """Move this app's keys from the names QTasks < 0.2 used (``qtasks:<app>:``) to
        today's (``qtasks:{<app>}:``): the app refuses to start while old ones hold
        tasks. Stop the old workers first. Returns how many keys moved, and those left
        because their new name was taken. Does not start the app."""
        await asyncio.to_thread(lambda: self.backend)  # may start the embedded server
        return await self._build()[0].migrate_keys()

    def migrate_keys(self) -> tuple[int, list[str]]:
        """Sync twin of :meth:`migrate_keys_async`."""
        return self._portal.call(self.migrate_keys_async())

    def start(self) -> None:
        """Sync twin of :meth:`start_async` (every operation also starts the app)."""
        self._portal.call(self.start_async())

    async def flush_all_async(self) -> None:
        """Delete every queued task, record and config value of this app."""
        await self.start_async()
        await fired(self.pm.hook.qtasks_flush_all(qtasks=self, broker=self.broker))
        await self.broker.flush_all()

    def flush_all(self) -> None:
        """Sync twin of :meth:`flush_all_async`."""
        self._portal.call(self.flush_all_async())

    async def stop_async(self, starter: Any = None) -> None:
        """Fire the stop triggers and close this loop's connections."""
        if not self._started:
            return
        await lifecycle(
            lambda: self.pm.hook.qtasks_stop(qtasks=self, starter=starter), "qtasks_stop"
        )
        broker, storage, config = self._build()
        await broker.stop()
        await storage.stop()
        await config.stop()
        await self.backend.close()
        with self._start_lock:
            self._started = False
            self._starting = None

    def stop(self) -> None:
        """Sync twin of :meth:`stop_async`; also stops workers started by
        :meth:`running_worker` and ends the app's event-loop thread."""
        for worker in list(self._portal_workers):
            self._stop_portal_worker(worker)
        if self._started:
            self._portal.call(self.stop_async())
        self._portal.close()

    # -- running workers ---------------------------------------------------------------

    def worker(self, **options: Any) -> Any:
        """A :class:`~qtasks_core.worker.Worker` for this app (not started)."""
        from .worker import Worker

        return Worker(self, **options)

    async def serve(self, *, burst: bool = False, **options: Any) -> None:
        """Run a worker in the current event loop until cancelled (for embedding).

        Cancelling it stops the worker the graceful way (running tasks get the grace
        period, the rest go back to the queue), then re-raises the cancellation.
        """
        worker = self.worker(**options)
        run = asyncio.ensure_future(worker.run(burst=burst))
        try:
            # Shielded: a cancellation must reach the worker as stop(), not land inside
            # a Redis call (where Python 3.11's wait_for can lose it).
            await asyncio.shield(run)
        except asyncio.CancelledError:
            worker.stop()
            await run
            raise

    @contextmanager
    def running_worker(self, **options: Any) -> Iterator[Any]:
        """Run a worker on the app's own event-loop thread for the ``with`` block."""
        worker = self.worker(**options)
        loop = self._portal.loop
        future = asyncio.run_coroutine_threadsafe(worker.run(), loop)
        self._portal_workers[worker] = future
        try:
            yield worker
        finally:
            self._stop_portal_worker(worker)

    def _stop_portal_worker(self, worker: Any) -> None:
        future = self._portal_workers.pop(worker, None)
        if future is None or future.done():
            return
        self._portal.loop.call_soon_threadsafe(worker.stop)
        future.result(timeout=worker.grace + 10)

    def run_forever(self, num_workers: int | None = None, **options: Any) -> None:
        """Run a worker in this process until SIGTERM/SIGINT (what ``qtasks worker`` does).

        ``num_workers`` (the original QTasks' name) is the worker's ``concurrency``:
        tasks run at once.
        """
        from .starter import Starter

        if num_workers is not None:
            if "concurrency" in options:
                raise TaskOptionError("give num_workers= or concurrency=, not both")
            options["concurrency"] = num_workers

        Starter(self, self.worker(**options)).start()
