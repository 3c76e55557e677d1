"""The original QTasks' test cases: ``SyncTestCase``, ``AsyncTestCase``, ``TestConfig``.

::

    from qtasks_core.testcase import SyncTestCase, TestConfig

    case = SyncTestCase(app=app)
    case.settings(TestConfig.full())
    task = case.add_task("test", 5, timeout=50)

Thin, on what the pytest plugin (:mod:`qtasks_core.testing`) offers. A
:class:`TestConfig` chooses one of three setups:

=================================  =========================================================
``TestConfig``                     what the case does
=================================  =========================================================
``full()`` (every flag ``True``)   the real app; ``start_in_background()`` runs a real
                                   worker in this process (or a worker runs elsewhere)
``full_broker()``                  the real app, no worker in this process: tasks wait
(``worker=False``)                 in the queue (``start*`` is refused)
``only_worker(plugins=True)``      no server: the app moves to the in-memory backend and
(``broker``, ``storage``,          runs each task at once in ``add_task`` (eager mode),
``global_config`` ``False``)       which returns it finished
=================================  =========================================================

What cannot be honoured is refused by ``settings()`` at once, saying what to write:
``broker``/``storage``/``global_config`` that differ (here they are one backend, so
``only_broker()`` too), ``plugins=False`` (the original emptied every plugin dict,
built-in Depends, pydantic, State and retry among them), and no worker with no broker
(the original's case then did nothing). A case the test never calls ``settings()`` on
is ``full()``: the original's default, every flag ``False``, did nothing at all.

Each case mirrors its app's edge: ``SyncTestCase`` takes ``qtasks_core.QueueTasks``
(whose ``add_task(timeout=)`` raises ``TaskTimeoutError`` when the wait runs out),
``AsyncTestCase`` takes ``qtasks_core.asyncio.QueueTasks`` (which returns ``None``
then, as the original did).
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from .errors import TaskOptionError

if TYPE_CHECKING:
    from .app import BaseQueueTasks, QueueTasks
    from .asyncio import QueueTasks as AsyncQueueTasks
    from .config import QueueConfig
    from .schemas import Task

__all__ = ["AsyncTestCase", "SyncTestCase", "TestConfig"]

_Mode = Literal["real", "no-worker", "eager"]


@dataclass
class TestConfig:
    """Which of the app's parts a test case uses (the original's
    ``qtasks.schemas.test.TestConfig``); see the module docstring for what each setup
    does here."""

    # Its name starts with "Test": without this, pytest tries to collect it from every
    # test module that imports it.
    __test__ = False

    worker: bool = False
    broker: bool = False
    storage: bool = False
    global_config: bool = False
    plugins: bool = False

    @classmethod
    def full(cls) -> TestConfig:
        """Everything real: the app as it is."""
        return cls(worker=True, broker=True, storage=True, global_config=True, plugins=True)

    @classmethod
    def only_worker(cls, plugins: bool = False) -> TestConfig:
        """Tasks run in this process, no server (give ``plugins=True`` here)."""
        return cls(worker=True, plugins=plugins)

    @classmethod
    def only_broker(cls, plugins: bool = False) -> TestConfig:
        """The original's broker without storage: refused by ``settings()`` here."""
        return cls(broker=True, plugins=plugins)

    @classmethod
    def full_broker(cls) -> TestConfig:
        """The real app with no worker in this process."""
        return cls(broker=True, storage=True, global_config=True, plugins=True)


def _mode(config: TestConfig) -> _Mode:
    """The setup ``config`` asks for, or :class:`TaskOptionError` saying what to write."""
    if not isinstance(config, TestConfig):
        raise TaskOptionError(
            f"settings() takes a TestConfig, got {type(config).__name__}: write "
            "settings(TestConfig.full())"
        )
    backend = {config.broker, config.storage, config.global_config}
    if len(backend) > 1:
        raise TaskOptionError(
            f"{config}: the broker, storage and global config are one backend in QTasks, "
            "so give them one value: TestConfig.full_broker() enqueues on the app's "
            "backend with no worker, TestConfig.only_worker(plugins=True) runs tasks in "
            "memory with no server (the original's only_broker() has no counterpart)"
        )
    if not config.plugins:
        raise TaskOptionError(
            f"{config}: plugins=False would unregister every plugin of the app, its "
            "built-in Depends, pydantic, State and retry among them; QTasks keeps them. "
            "Write plugins=True (e.g. TestConfig.only_worker(plugins=True)); to test "
            "without third-party plugins, create the app with load_entry_points=False"
        )
    on_backend = config.broker
    if not on_backend and not config.worker:
        raise TaskOptionError(
            f"{config}: with neither the worker nor the broker nothing can run a task "
            "(the original's case returned None); write TestConfig.full() or "
            "TestConfig.only_worker(plugins=True)"
        )
    if not on_backend:
        return "eager"
    return "real" if config.worker else "no-worker"


class _TestCase:
    """What both cases share: the chosen setup, the background worker, the checks."""

    def __init__(self, app: BaseQueueTasks, name: str | None = None) -> None:
        self._check_app(app)
        self.app = app
        #: The original's project name for its stub components; kept for reading.
        self.name = name
        self.test_config = TestConfig.full()
        self._mode: _Mode = "real"
        self._eager_before: bool | None = None
        self._worker: ExitStack | None = None

    @staticmethod
    def _check_app(app: Any) -> None:
        raise NotImplementedError

    def settings(
        self, test_config: TestConfig | None = None, awaiting: bool | None = False
    ) -> None:
        """Choose the setup (see the module docstring); ``None`` keeps the current one.

        ``awaiting`` chose the original's stubs, sync or async; there are none here, so
        it changes nothing. Refused (:class:`TaskOptionError`, before anything changes):
        a setup QTasks cannot give, and one that needs the in-memory backend on an app
        that already runs on another.
        """
        config = self.test_config if test_config is None else test_config
        mode = _mode(config)
        if mode == "eager":
            _move_to_memory(self.app, config)
        if self._eager_before is None:
            self._eager_before = self.app.eager
        self.app.eager = mode == "eager"
        self.test_config, self._mode = config, mode

    def update_config(self, config: QueueConfig) -> None:
        """Apply every setting of ``config`` to ``app.config`` (at once, where each
        acts)."""
        from .config import QueueConfig

        if not isinstance(config, QueueConfig):
            raise TaskOptionError(
                f"update_config() takes a qtasks_core.QueueConfig, got {type(config).__name__}"
            )
        for name in type(config).model_fields:
            setattr(self.app.config, name, getattr(config, name))

    def start_in_background(
        self, starter: Any = None, num_workers: int = 4, reset_config: bool = True
    ) -> None:
        """Run a real worker (``num_workers`` tasks at once) in this process until
        :meth:`stop`. With ``only_worker`` it does nothing: ``add_task`` runs each task
        itself."""
        self._check_start(starter, reset_config)
        if self._mode == "eager":
            return
        if self._worker is not None:
            raise TaskOptionError("the case's worker already runs: call stop() first")
        worker = ExitStack()
        worker.enter_context(self.app.running_worker(concurrency=num_workers))
        self._worker = worker

    def start(self, starter: Any = None, num_workers: int = 4, reset_config: bool = True) -> None:
        """Run a worker in this process until SIGTERM/SIGINT (``app.run_forever``; it
        blocks). With ``only_worker`` it returns at once."""
        self._check_start(starter, reset_config)
        if self._mode == "eager":
            return
        self.app.run_forever(num_workers=num_workers)

    def _check_start(self, starter: Any, reset_config: bool) -> None:
        if starter is not None:
            raise TaskOptionError(
                "starter=: QTasks has one starter, chosen by the app; drop starter="
            )
        if reset_config is not True:
            raise TaskOptionError(
                "reset_config=False: app.config is shared by every component, never "
                "copied, so there is nothing to keep apart; drop reset_config="
            )
        if self._mode == "no-worker":
            raise TaskOptionError(
                f"{self.test_config}: worker=False runs no worker in this process; "
                "write settings(TestConfig.full()) to start one"
            )

    def _end(self) -> ExitStack | None:
        """Forget the case's setup; hand back the worker to stop, if one runs."""
        worker, self._worker = self._worker, None
        if self._eager_before is not None:
            self.app.eager, self._eager_before = self._eager_before, None
        return worker


class SyncTestCase(_TestCase):
    """A test case for the sync app (the original's ``qtasks.tests.SyncTestCase``).

    :param app: a ``qtasks_core.QueueTasks``.
    :param name: the original's name for its stub components (kept, unused).
    """

    app: QueueTasks

    @staticmethod
    def _check_app(app: Any) -> None:
        from .app import QueueTasks
        from .asyncio import QueueTasks as AsyncQueueTasks

        if isinstance(app, AsyncQueueTasks):
            raise TaskOptionError(
                "SyncTestCase on the async app (qtasks_core.asyncio.QueueTasks): write "
                "AsyncTestCase(app=app)"
            )
        if not isinstance(app, QueueTasks):
            raise TaskOptionError(
                f"SyncTestCase(app=...) takes a qtasks_core.QueueTasks, got {type(app).__name__}"
            )

    def add_task(
        self,
        task_name: str,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Task:
        """``app.add_task``: the task as written, or with ``timeout`` finished (a wait
        that runs out raises ``TaskTimeoutError``, which keeps the id). With
        ``only_worker`` the task has run when this returns."""
        return self.app.add_task(task_name, *args, priority=priority, timeout=timeout, **kwargs)

    def get(self, uuid: UUID | str) -> Task | None:
        """``app.get``: the task's current state, or ``None``."""
        return self.app.get(str(uuid))

    def stop(self) -> None:
        """Stop the worker the case started, undo its eager mode, stop the app."""
        worker = self._end()
        if worker is not None:
            worker.close()
        self.app.stop()


class AsyncTestCase(_TestCase):
    """A test case for the async app (the original's ``qtasks.tests.AsyncTestCase``):
    ``add_task``, ``get`` and ``stop`` are coroutines.

    :param app: a ``qtasks_core.asyncio.QueueTasks``.
    :param name: the original's name for its stub components (kept, unused).
    """

    app: AsyncQueueTasks

    @staticmethod
    def _check_app(app: Any) -> None:
        from .asyncio import QueueTasks as AsyncQueueTasks

        if not isinstance(app, AsyncQueueTasks):
            raise TaskOptionError(
                f"AsyncTestCase(app=...) takes a qtasks_core.asyncio.QueueTasks, got "
                f"{type(app).__module__}.{type(app).__name__}: create the app with "
                "`from qtasks_core.asyncio import QueueTasks`, or use SyncTestCase"
            )

    def start(  # type: ignore[override]
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        starter: Any = None,
        num_workers: int = 4,
        reset_config: bool = True,
    ) -> None:
        """As :meth:`SyncTestCase.start` (it blocks, as the original's did)."""
        if loop is not None:
            raise TaskOptionError("loop=: the worker runs on an event loop of its own; drop loop=")
        super().start(starter=starter, num_workers=num_workers, reset_config=reset_config)

    async def add_task(
        self,
        task_name: str,
        *args: Any,
        priority: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Task | None:
        """``await app.add_task``: the task as written, or with ``timeout`` finished,
        or ``None`` when the wait runs out (as the original)."""
        return await self.app.add_task(
            task_name, *args, priority=priority, timeout=timeout, **kwargs
        )

    async def get(self, uuid: UUID | str) -> Task | None:
        """``await app.get``: the task's current state, or ``None``."""
        return await self.app.get(str(uuid))

    async def stop(self) -> None:
        """Stop the worker the case started, undo its eager mode, stop the app."""
        worker = self._end()
        if worker is not None:
            # Stopping waits for the worker's running tasks: off this event loop.
            await asyncio.to_thread(worker.close)
        await self.app.stop()


def _move_to_memory(app: BaseQueueTasks, config: TestConfig) -> None:
    """Put ``app`` on the in-memory backend, as the original replaced its broker."""
    before = app.redis_url
    app.redis_url = "memory://"
    # Resolved now: an app already on another backend keeps it, whatever the URL says.
    location = app.backend.location
    if location != "memory":
        app.redis_url = before
        raise TaskOptionError(
            f"{config}: runs tasks in memory, but this app already runs on {location}; "
            "call settings() before the app's first use, or create the app with "
            "redis_url='memory://'"
        )
