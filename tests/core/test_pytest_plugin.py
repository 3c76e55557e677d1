"""QTasks' pytest plugin, used the way a project's own test suite would use it."""

from __future__ import annotations

import pytest

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
