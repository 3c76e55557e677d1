"""The original's test cases (``SyncTestCase``/``AsyncTestCase`` with ``TestConfig``),
written as its tests and docs use them, with the imports changed."""

from __future__ import annotations

import pytest

from qtasks_core import QueueTasks, TaskOptionError
from qtasks_core.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_core.testcase import AsyncTestCase, SyncTestCase, TestConfig


def sync_app(url: str) -> QueueTasks:
    app = QueueTasks(name="compat-testcase", redis_url=url, load_entry_points=False)

    @app.task(name="test")
    def sample_task(id: int) -> str:
        return f"Пользователь {id} записан"

    return app


def test_full_runs_tasks_on_a_worker_the_case_starts(redis_url: str) -> None:
    case = SyncTestCase(app=sync_app(redis_url))
    case.settings(TestConfig.full())
    case.start_in_background(num_workers=2)
    try:
        task = case.add_task("test", 5, timeout=10)
        assert task.returning == "Пользователь 5 записан"
        assert case.get(task.uuid).status == "success"
    finally:
        case.stop()


def test_only_worker_runs_each_task_in_add_task_without_a_server() -> None:
    app = sync_app("redis://127.0.0.1:1/0")  # never reached: the case moves it to memory
    case = SyncTestCase(app=app)
    case.settings(TestConfig.only_worker(plugins=True))
    case.start_in_background()  # the original needed it; here add_task runs the task
    try:
        assert case.add_task("test", 7).returning == "Пользователь 7 записан"
        assert app.backend.location == "memory"
    finally:
        case.stop()
    assert app.eager is False


def test_full_broker_enqueues_and_runs_nothing(redis_url: str) -> None:
    case = SyncTestCase(app=sync_app(redis_url))
    case.settings(TestConfig.full_broker())
    try:
        assert case.get(case.add_task("test", 1).uuid).status == "new"
        with pytest.raises(TaskOptionError, match=r"worker=False.*TestConfig\.full\(\)"):
            case.start_in_background()
    finally:
        case.app.flush_all()
        case.stop()


@pytest.mark.parametrize(
    ("config", "hint"),
    [
        (TestConfig.only_broker(plugins=True), r"one backend.*full_broker\(\)"),
        (TestConfig.only_worker(), r"plugins=False.*only_worker\(plugins=True\)"),
        (TestConfig(plugins=True), r"neither the worker nor the broker.*full\(\)"),
    ],
)
def test_what_cannot_be_honoured_is_refused_saying_what_to_write(
    config: TestConfig, hint: str
) -> None:
    case = SyncTestCase(app=QueueTasks(name="compat-refused", redis_url="memory://"))
    with pytest.raises(TaskOptionError, match=hint):
        case.settings(config)
    assert case.app.eager is False


def test_only_worker_on_an_app_already_on_redis_is_refused(redis_url: str) -> None:
    app = sync_app(redis_url)
    app.start()
    case = SyncTestCase(app=app)
    try:
        with pytest.raises(TaskOptionError, match=r"already runs on redis://.*memory://"):
            case.settings(TestConfig.only_worker(plugins=True))
    finally:
        app.stop()


def test_a_case_takes_the_app_of_its_kind() -> None:
    with pytest.raises(TaskOptionError, match=r"write AsyncTestCase\(app=app\)"):
        SyncTestCase(app=AsyncQueueTasks(name="compat-kind", redis_url="memory://"))
    with pytest.raises(TaskOptionError, match=r"from qtasks_core\.asyncio import QueueTasks"):
        AsyncTestCase(app=QueueTasks(name="compat-kind", redis_url="memory://"))


def test_starter_and_loop_options_are_refused() -> None:
    case = AsyncTestCase(app=AsyncQueueTasks(name="compat-opts", redis_url="memory://"))
    with pytest.raises(TaskOptionError, match="drop starter="):
        case.start_in_background(starter=object())
    with pytest.raises(TaskOptionError, match="drop loop="):
        case.start(loop=object())  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_async_case_returns_none_when_the_wait_runs_out(redis_url: str) -> None:
    import asyncio

    app = AsyncQueueTasks(name="compat-async-case", redis_url=redis_url, load_entry_points=False)

    @app.task(name="slow")
    async def slow() -> str:
        await asyncio.sleep(0.5)
        return "done"

    case = AsyncTestCase(app=app)
    case.settings(TestConfig.full())
    case.start_in_background()
    try:
        assert await case.add_task("slow", timeout=0.05) is None
        assert (await case.add_task("slow", timeout=10)).returning == "done"
    finally:
        await case.stop()
