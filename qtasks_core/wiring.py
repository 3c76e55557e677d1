"""The app's wiring: settings, plugins, the engine and the components, start and stop.

Every feature of the app (:mod:`.reading`, :mod:`.sending`, :mod:`.operating`,
:mod:`.workflows`, :mod:`.schedules`, :mod:`.worker`) builds on this class and reaches
the engine only through the components it holds: the Broker (enqueue and claim), the
Storage (records, reads, watch and events), the GlobalConfig (config) and the
ScheduleStore (cursors and ticks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, cast

from qtasks_hooks import PluginManager, get_plugin_manager, load_plugins

from . import _current
from ._portal import Portal
from ._util import lifecycle
from ._validate import check_app_name
from .backends import Backend, MemoryBackend, RedisBackend
from .broker import Broker
from .config import LOGGERS, QueueConfig, set_level
from .declare import SHARED, Registry, Router
from .errors import TaskOptionError
from .global_config import GlobalConfig
from .producer import Producer
from .schemas import TaskExecSchema
from .storage import Storage

if TYPE_CHECKING:
    from .app import BaseQueueTasks
    from .schedules import Schedule, ScheduleStore
    from .worker import Worker

ENV_REDIS_URL = "QTASKS_REDIS_URL"


class Wiring(Registry):
    """The app's settings, plugins, engine and components (see
    :class:`~qtasks_core.app.BaseQueueTasks` for the constructor's parameters)."""

    def __init__(
        self,
        name: str = "QueueTasks",
        redis_url: str | None = None,
        *,
        backend: Backend | None = None,
        result_ttl: float | Literal["config"] | None = "config",
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
        if config is not None and result_ttl != "config":
            raise TaskOptionError(
                "give the result TTL once: result_ttl= or QueueConfig(result_ttl=...), not both"
            )
        # ``...``: not given, so $QTASKS_RESULT_TTL (then the default) applies.
        given = {} if result_ttl == "config" else {"result_ttl": result_ttl}
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
        self.producer = Producer(self._whole)
        _current.set_current(self._whole)

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
    def current(cls) -> BaseQueueTasks | None:
        """The app created last in this process (what ``shared_task`` handles use)."""
        return _current.current()

    def include_router(self, router: Router) -> None:
        """Add a router's tasks to this app."""
        self.tasks.update(router.tasks)
        router.app = self._whole

    @property
    def _whole(self) -> BaseQueueTasks:
        """This object as the app it is part of: the feature classes (this one,
        :mod:`.reading`, :mod:`.sending` …) exist only as parts of
        :class:`~qtasks_core.app.BaseQueueTasks`, and the components take the app."""
        return cast("BaseQueueTasks", self)

    def _edge(self, operation: str) -> Callable[..., Any]:
        """This app's own form of ``operation``: a blocking method on
        ``qtasks_core.QueueTasks``, a coroutine function on the asyncio app's."""
        return getattr(self, operation)  # type: ignore[no-any-return]

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
        if self.eager:
            # Eager mode runs every task in this process, so no other process needs to
            # reach its records: a unit test must not start (or leave behind) a server.
            return MemoryBackend()
        from .embedded import ensure_server, home

        folder = home()
        self.embedded_home = str(folder)
        return RedisBackend(ensure_server(folder), self.name)

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
            self.tasks = {**SHARED.tasks, **self.tasks}
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
