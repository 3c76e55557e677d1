"""QTasks' pytest plugin, used the way a project's own test suite would use it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qtasks_core import QueueTasks, embedded

pytest_plugins = ["pytester"]

USER_TESTS = """
from qtasks_core import QueueTasks

app = QueueTasks("user-app", redis_url="memory://", load_entry_points=False)

@app.task
def add(a, b):
    return a + b


def test_eager_runs_at_once(qtasks_eager):
    qtasks_eager(app)
    task = app.add_task("add", 2, 3)
    assert task.status == "success" and task.returning == 5


def test_memory_app_with_a_worker(qtasks_memory_app, qtasks_worker):
    @qtasks_memory_app.task
    def mul(a, b):
        return a * b

    qtasks_worker(qtasks_memory_app, concurrency=2)
    assert qtasks_memory_app.add_task("mul", 6, 7, timeout=10).returning == 42


def test_real_redis_worker(qtasks_redis_url, qtasks_worker):
    redis_app = QueueTasks("user-redis", redis_url=qtasks_redis_url, load_entry_points=False)

    @redis_app.task
    async def hello(name):
        return "hello " + name

    qtasks_worker(redis_app)
    assert redis_app.add_task("hello", "you", timeout=10).returning == "hello you"
    redis_app.stop()


def test_eager_mode_is_undone_after_a_test():
    assert app.eager is False
"""


def test_the_fixtures_work_in_a_users_test_suite(
    pytester: pytest.Pytester, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QTASKS_TEST_REDIS_URL", redis_url)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:valkey")
    result.assert_outcomes(passed=4)


EAGER_WITHOUT_URL = """
from qtasks_core import QueueTasks

app = QueueTasks("user-app")  # no Redis URL: outside tests, the embedded server


@app.task
def add(a, b):
    return a + b


def test_add(qtasks_eager):
    qtasks_eager(app)
    assert app.add_task("add", 2, 3).returning == 5
    assert app.get(app.add_task("add", 1, 1).uuid).returning == 2
    assert app.embedded_home is None
"""


def test_eager_tests_of_an_app_without_a_url_start_no_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = pytester.path / "user"
    for name in ("QTASKS_REDIS_URL", "QTASKS_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.setenv("XDG_STATE_HOME", str(user / "state"))
    pytester.makepyfile(test_user=EAGER_WITHOUT_URL)
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:valkey")
    finally:
        embedded.stop_server(user / "state" / "qtasks")  # had one started after all
    result.assert_outcomes(passed=1)
    # Neither the server's folder (where it would keep its data, pid and address) nor
    # the old default in the current directory: no server was started.
    assert not user.exists()
    assert not (pytester.path / ".qtasks").exists()


def test_eager_mode_runs_exactly_the_task_enqueued(
    qtasks_memory_app: QueueTasks, qtasks_eager: Callable[[QueueTasks], QueueTasks]
) -> None:
    app = qtasks_memory_app
    ran: list[str] = []
    attempts = {"flaky": 0}

    @app.task
    def note(tag: str) -> str:
        ran.append(tag)
        return tag

    @app.task(retry=2, retry_backoff=0.01)
    def flaky() -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] < 3:
            raise ValueError("not yet")
        return "third time"

    queued = app.add_task("note", "queued before eager mode")
    qtasks_eager(app)
    assert app.add_task("note", "eager").returning == "eager"
    assert ran == ["eager"]  # the task queued before is left for a worker
    assert app.get(queued.uuid).status == "new"  # type: ignore[union-attr]
    retried = app.add_task("flaky")
    assert (retried.status, retried.returning, retried.attempts) == ("success", "third time", 3)
    batch = app.add_tasks([("note", ("b1",)), ("note", ("b2",))])
    assert [t.status for t in batch] == ["success", "success"] and ran[-2:] == ["b1", "b2"]
