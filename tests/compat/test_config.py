"""``app.config`` as the original QTasks documents it: settings by attribute and by
``QTASKS_*`` environment variables; a setting that no longer exists says what replaced it."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from qtasks_core import QueueConfig, QueueTasks
from qtasks_core.backends import memory as memory_backend
from qtasks_core.config import FINISHED_TTL
from qtasks_core.errors import TaskOptionError
from qtasks_core.keys import Keys


@pytest.fixture(params=["redis", "memory"])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"


@pytest.fixture
def make_app(url: str) -> Iterator[Callable[[], QueueTasks]]:
    """Apps created the way the original's users create them, cleaned up afterwards."""
    made: list[QueueTasks] = []

    def make() -> QueueTasks:
        app = QueueTasks(f"compat-config-{os.getpid()}", redis_url=url, load_entry_points=False)
        made.append(app)
        return app

    yield make
    for app in made:
        app.flush_all()
        app.stop()


def test_settings_from_the_environment_and_at_run_time(
    make_app: Callable[[], QueueTasks], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QTASKS_TASK_DEFAULT_PRIORITY", "3")
    monkeypatch.setenv("QTASKS_RESULT_TTL", "none")
    app = make_app()
    assert app.config.task_default_priority == 3
    assert app.config.result_ttl is None

    @app.task
    def plain() -> str:
        return "done"

    @app.task(priority=1)
    def urgent() -> str:
        return "done"

    assert app.add_task("plain").priority == 3
    app.config.task_default_priority = 7  # applies to the next task
    assert app.add_task("plain").priority == 7
    assert app.add_task("urgent").priority == 1  # the task's own priority wins

    app.config.result_ttl = 1  # applies to the next record
    with app.running_worker():
        done = app.add_task("plain", timeout=10)
    assert done.returning == "done"
    time.sleep(2.2)
    assert app.get(done.uuid) is None  # expired after a second

    with pytest.raises(ValueError, match="task_default_priority"):
        app.config.task_default_priority = "high"  # type: ignore[assignment]


def test_a_setting_that_no_longer_exists_says_what_replaced_it(
    make_app: Callable[[], QueueTasks], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    with pytest.raises(TaskOptionError, match=r"running_older_tasks.*lease"):
        app.config.running_older_tasks = True
    with pytest.raises(AttributeError, match=r"max_tasks_process.*--concurrency"):
        _ = app.config.max_tasks_process
    with pytest.raises(TaskOptionError, match="did you mean 'task_default_priority'"):
        app.config.task_default_priorty = 1
    assert app.config.task_default_priority == 0

    monkeypatch.setenv("QTASKS_RESULT_TIME_INTERVAL", "0.5")
    with pytest.raises(TaskOptionError, match=r"QTASKS_RESULT_TIME_INTERVAL.*without polling"):
        make_app()
    monkeypatch.delenv("QTASKS_RESULT_TIME_INTERVAL")
    monkeypatch.setenv("QTASKS_TASK_DEFAULT_PRIORTY", "1")
    with pytest.raises(TaskOptionError, match="QTASKS_TASK_DEFAULT_PRIORITY"):
        make_app()


def test_log_levels_take_effect_at_once(make_app: Callable[[], QueueTasks]) -> None:
    worker_log, app_log = logging.getLogger("qtasks.worker"), logging.getLogger("qtasks.app")
    before = worker_log.level, app_log.level
    try:
        app = make_app()
        app.config.logs_default_level_server = "DEBUG"
        app.config.logs_default_level_client = logging.WARNING
        assert worker_log.level == logging.DEBUG
        assert app_log.level == logging.WARNING
        app.config.logs_default_level_server = None  # back to inheriting
        assert worker_log.level == logging.NOTSET
        with pytest.raises(ValueError, match="not a logging level"):
            app.config.logs_default_level_client = "loud"
    finally:
        worker_log.setLevel(before[0])
        app_log.setLevel(before[1])


class _Later:
    """The in-memory backend's clock, ``ahead`` seconds in the future (Redis cannot be
    moved forward: there the test reads the TTL Redis holds instead)."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def time(self) -> float:
        return time.time() + self.ahead


def test_delete_finished_tasks_keeps_no_finished_record(
    make_app: Callable[[], QueueTasks], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The original's own tests write exactly this.
    app = make_app()
    app.config.delete_finished_tasks = True

    @app.task
    def plain() -> str:
        return "done"

    clock = _Later()
    monkeypatch.setattr(memory_backend, "time", clock)
    with app.running_worker():
        done = app.add_task("plain", timeout=10)
    assert done.returning == "done"  # the waiter read it
    assert app.get(done.uuid) is not None  # and so can a get right after
    assert app.config.delete_finished_tasks is True

    def kept_after_a_minute(uuid: str) -> bool:
        if url == "memory://":
            clock.ahead += FINISHED_TTL + 1
            return app.get(uuid) is not None
        left = redis.Redis.from_url(url).ttl(Keys.for_app(app.name).task(uuid))
        assert left > 0
        return bool(left > FINISHED_TTL)

    assert not kept_after_a_minute(done.uuid)

    app.config.delete_finished_tasks = False  # records are kept again, as before
    assert app.config.result_ttl == 86400
    with app.running_worker():
        kept = app.add_task("plain", timeout=10)
    assert kept_after_a_minute(kept.uuid)


def test_delete_finished_tasks_from_the_constructor_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert QueueConfig(delete_finished_tasks=True).result_ttl == FINISHED_TTL
    # The switch never keeps records longer than a shorter TTL already does.
    assert QueueConfig(delete_finished_tasks=True, result_ttl=5).result_ttl == 5
    monkeypatch.setenv("QTASKS_DELETE_FINISHED_TASKS", "true")
    app = QueueTasks("compat-delete-finished", redis_url="memory://", load_entry_points=False)
    assert app.config.delete_finished_tasks is True
    assert app.result_ttl == FINISHED_TTL
    app.config.result_ttl = 600  # a TTL chosen afterwards wins, and the switch says so
    assert (app.config.delete_finished_tasks, app.result_ttl) == (False, 600)
