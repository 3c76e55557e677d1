"""The original QTasks' names, written the way its README and docs write them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qtasks_core import AsyncRouter, QueueTasks, SyncRouter, TaskStatusEnum
from qtasks_core.errors import TaskOptionError
from tests.chaos.test_chaos import APPS, env_for
from tests.conftest import RedisServer


def test_broker_url_routers_and_the_status_enum(redis_url: str) -> None:
    app = QueueTasks(f"names-{os.getpid()}", broker_url=redis_url, load_entry_points=False)
    assert app.redis_url == redis_url
    router = AsyncRouter()

    @router.task
    async def hello(name: str) -> str:
        return f"Hello, {name}!"

    app.include_router(router)
    app.include_router(SyncRouter())
    with app.running_worker():
        task = app.add_task("hello", "World", timeout=10)
    assert task.status == TaskStatusEnum.SUCCESS and task.returning == "Hello, World!"
    app.flush_all()
    app.stop()
    with pytest.raises(TaskOptionError, match="once"):
        QueueTasks("x", redis_url="memory://", broker_url=redis_url)


def test_run_forever_with_num_workers(server: RedisServer, tmp_path: Path) -> None:
    script = tmp_path / "forever.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, signal, threading
        from qtasks_core import QueueTasks

        app = QueueTasks("names-forever", redis_url={server.url!r}, load_entry_points=False)

        @app.task
        async def one() -> int:
            return 1

        def produce():
            tasks = [app.add_task("one") for _ in range(5)]
            print([app.wait(t.uuid, 30).status for t in tasks], flush=True)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=produce).start()
        app.run_forever(num_workers=3)
        """)
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "['success', 'success', 'success', 'success', 'success']" in out.stdout
    app = QueueTasks("names-forever", redis_url="memory://", load_entry_points=False)
    with pytest.raises(TaskOptionError, match="not both"):
        app.run_forever(num_workers=2, concurrency=2)


@pytest.mark.parametrize(
    "form", [["-A", "apps.sample:app", "run"], ["run", "-A", "apps.sample:app"]]
)
def test_qtasks_app_run_starts_a_worker(server: RedisServer, form: list[str]) -> None:
    name = "names-run"
    env = env_for(server, name)
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    task = app.add_task("pid")
    out = subprocess.run(
        [sys.executable, "-m", "qtasks_core", *form, "--burst"],
        env=env, cwd=APPS, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    done = app.get(task.uuid)
    assert done is not None and done.status == "success"
    app.stop()


def test_task_wait_result_waits_on_the_current_app_and_gives_none_on_timeout(
    app: QueueTasks,
) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    task = app.add_task("add", 2, 3)
    assert task.wait_result(timeout=0.1) is None  # no worker yet: the original's None
    with app.running_worker():
        done = task.wait_result(timeout=10)
    assert done is not None and (done.status, done.returning) == ("success", 5)
