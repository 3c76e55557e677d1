"""Control of running work across processes: abort (and progress, watched from another
process), against a real worker process on a real Redis."""

from __future__ import annotations

import signal

import pytest

from qtasks_core import QueueTasks
from tests.chaos.test_chaos import env_for, start_worker
from tests.conftest import RedisServer
from tests.support import wait_for


@pytest.fixture
def worker_app(server: RedisServer, request: pytest.FixtureRequest) -> QueueTasks:
    name = f"control-{request.node.name}".replace("[", "-").replace("]", "")
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    worker = start_worker(env_for(server, name), "-c", "4", "--lease", "3")
    request.addfinalizer(lambda: (worker.send_signal(signal.SIGTERM), worker.wait(30)))
    request.addfinalizer(app.stop)
    return app


@pytest.mark.parametrize("task", ["wait_forever", "until_aborted"])
def test_an_abort_stops_a_task_running_on_another_worker(worker_app: QueueTasks, task: str) -> None:
    app = worker_app
    uuid = app.add_task(task, "t").uuid
    wait_for(lambda: app.get(uuid).status == "process", timeout=30, what="the task to start")  # type: ignore[union-attr]
    assert app.abort(uuid, "the user gave up") == "aborting"
    # Both tasks would run for 60 s: ending within 20 s is the abort's doing.
    done = app.wait(uuid, timeout=20)
    assert (done.status, done.cancel_reason) == ("cancel", "the user gave up")
    assert app.abort(uuid, "again") == "ended"


def test_an_abort_of_a_queued_task_cancels_it_before_it_runs(worker_app: QueueTasks) -> None:
    app = worker_app
    uuid = app.send_task("noop", ["never"], delay=30).uuid
    assert app.abort(uuid, "no longer wanted") == "cancelled"
    done = app.wait(uuid, timeout=5)
    assert (done.status, done.cancel_reason) == ("cancel", "no longer wanted")
    assert app.abort("no-such-task") == "unknown"


def test_progress_is_watched_from_another_process(worker_app: QueueTasks) -> None:
    app = worker_app
    uuid = app.add_task("reports", 4, 0.2).uuid
    seen = list(app.watch(uuid, timeout=30))
    *updates, final = seen
    assert [u.progress["value"] for u in updates if u.progress] == [0.25, 0.5, 0.75, 1.0]
    assert updates[-1].progress["meta"] == {"done": 4, "of": 4}  # type: ignore[index]
    assert (final.status, final.returning) == ("success", "reported")
    assert app.get(uuid).progress["value"] == 1.0  # type: ignore[union-attr,index]
    # A watch that begins after the end gives the final state at once.
    assert [t.status for t in app.watch(uuid, timeout=5)] == ["success"]
