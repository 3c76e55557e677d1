"""Named queues, delays and expiry as users meet them: worker processes with -Q, the
CLI's stats and purge, delayed tasks that outlive every worker."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qtasks_core import QueueTasks, Router, TaskOptionError
from qtasks_core.stats import Stats
from tests.integration.test_cli import cli, executions, producer, runner, start_worker
from tests.support import wait_for

# -- declaring and sending ---------------------------------------------------------------


def test_a_task_goes_to_its_own_queue_unless_the_call_names_another(app: QueueTasks) -> None:
    @app.task(queue="emails")
    def send(to: str) -> str:
        return to

    router = Router(queue="reports")

    @router.task
    def build() -> None: ...

    @router.task(queue="urgent")
    def page() -> None: ...

    app.include_router(router)
    assert app.add_task("send", "a").queue == "emails"
    assert app.send_task("send", ["b"], queue="bulk").queue == "bulk"
    assert app.get(app.add_task("build").uuid).queue == "reports"  # type: ignore[union-attr]
    assert app.add_task("page").queue == "urgent"
    assert app.send_task("unregistered").queue == "default"
    assert sorted(app.worker().queues) == ["default", "emails", "reports", "urgent"]
    with app.running_worker(queues=["emails"]) as worker:
        assert worker.queues == ("emails",)
        assert app.wait(app.add_task("send", "c").uuid, timeout=10).returning == "c"
    depth = Stats(app).inspect().queues
    assert depth["bulk"] == {0: 1} and depth["reports"] == {0: 1} and depth["emails"] == {}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"queue": ""}, "queue name '' is not valid"),
        ({"queue": "two words"}, "contains ' '"),
        ({"queue": "a:b"}, "contains ':'"),
        ({"queue": "x*"}, "contains '\\*'"),
        ({"delay": -1}, "delay must be a finite number of seconds >= 0"),
        ({"delay": 1, "eta": datetime.now(UTC)}, "delay= or eta=, not both"),
        ({"eta": datetime(2030, 1, 1)}, "naive datetime: give it a timezone"),
        ({"eta": "tomorrow"}, "eta must be a timezone-aware datetime"),
        ({"expires": float("nan")}, "expires must be a finite number"),
        ({"expires": datetime(2030, 1, 1)}, "naive datetime"),
    ],
)
def test_a_bad_queue_or_time_is_refused_before_anything_is_written(
    app: QueueTasks, call: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskOptionError, match=message):
        app.send_task("anything", **call)
    assert Stats(app).inspect().status_counts == {}


def test_a_bad_queue_name_is_refused_at_declaration(app: QueueTasks) -> None:
    with pytest.raises(TaskOptionError, match="contains ' '"):

        @app.task(queue="my queue")
        def f() -> None: ...

    with pytest.raises(TaskOptionError, match="contains '/'"):
        Router(queue="a/b")


def test_delay_and_eta_run_no_earlier_than_due(app: QueueTasks) -> None:
    @app.task
    def stamp() -> float:
        return time.time()

    app.start()
    sent = time.time()
    delayed = app.send_task("stamp", delay=0.5)
    at = app.send_task("stamp", eta=datetime.now(UTC) + timedelta(seconds=0.3))
    after = time.time()
    got = app.get(delayed.uuid)
    assert got is not None and got.status == "new" and got.eta is not None
    # Due by the server's clock (this machine's here): half a second after the send.
    assert sent + 0.45 < got.eta.timestamp() < after + 0.55
    with app.running_worker():
        ran = app.wait(delayed.uuid, timeout=10).returning
        assert ran >= sent + 0.5
        assert app.wait(at.uuid, timeout=10).returning >= sent + 0.3


def test_an_expired_task_ends_cancelled_and_never_runs(app: QueueTasks) -> None:
    runs: list[str] = []

    @app.task
    def work(tag: str) -> None:
        runs.append(tag)

    stale = app.send_task("work", ["stale"], expires=0.1)
    fresh = app.send_task("work", ["fresh"], expires=timedelta(minutes=5))
    time.sleep(0.2)
    with app.running_worker():
        assert app.wait(fresh.uuid, timeout=10).status == "success"
        ended = app.wait(stale.uuid, timeout=10)
    assert (ended.status, ended.cancel_reason) == ("cancel", "expired")
    assert runs == ["fresh"]


def test_cancel_works_on_a_delayed_task(app: QueueTasks) -> None:
    later = app.send_task("anything", delay=30)
    assert app.cancel(later.uuid, "not needed") is True
    got = app.get(later.uuid)
    assert got is not None and got.status == "cancel"


# -- worker processes ---------------------------------------------------------------------


def test_workers_run_only_the_queues_they_serve(sample_env: dict[str, str]) -> None:
    app = producer(sample_env)
    sent = {
        q: [app.send_task("noop", [f"{q}{i}"], queue=q).uuid for i in range(20)]
        for q in ("a", "b", "nobody")
    }
    workers = {q: start_worker(sample_env, "-Q", q, "-c", "4") for q in ("a", "b")}
    try:
        for q in ("a", "b"):
            for uuid in sent[q]:
                task = app.wait(uuid, timeout=60)
                assert task.status == "success"
                assert task.worker is not None
                assert task.worker.split(":")[1] == str(workers[q].pid)
        # A queue no worker serves keeps its tasks, shown by the stats.
        assert {app.get(u).status for u in sent["nobody"]} == {"new"}  # type: ignore[union-attr]
        shown = runner.invoke(cli, ["stats", "-A", "apps.sample:app"])
        assert "queue nobody: p0: 20 (no live worker serves it)" in shown.output, shown.output
    finally:
        for worker in workers.values():
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=30)
    assert not any(tag.startswith("nobody") for tag in executions(sample_env))
    app.stop()


def test_purge_queue_asks_then_cancels_that_queue_only(sample_env: dict[str, str]) -> None:
    app = producer(sample_env)
    emails = [app.send_task("noop", ["e"], queue="emails").uuid for _ in range(5)]
    kept = app.add_task("noop", "d").uuid
    refused = runner.invoke(
        cli, ["purge", "-A", "apps.sample:app", "--queue", "emails"], input="n\n"
    )
    assert refused.exit_code == 1
    assert app.get(emails[0]).status == "new"  # type: ignore[union-attr]
    done = runner.invoke(cli, ["purge", "-A", "apps.sample:app", "--queue", "emails", "--yes"])
    assert done.exit_code == 0 and "cancelled 5 task(s) queued on 'emails'" in done.output
    assert {app.get(u).cancel_reason for u in emails} == {"purged"}  # type: ignore[union-attr]
    assert app.get(kept).status == "new"  # type: ignore[union-attr]
    bad = runner.invoke(cli, ["purge", "-A", "apps.sample:app", "--queue", "a b", "--yes"])
    assert bad.exit_code != 0 and "contains ' '" in bad.output
    app.stop()


def test_a_delayed_task_outlives_every_worker_and_runs_on_a_fresh_one(
    sample_env: dict[str, str],
) -> None:
    app = producer(sample_env)
    workers = [start_worker(sample_env, "-c", "2") for _ in range(2)]
    wait_for(lambda: len(Stats(app).inspect().workers) == 2, timeout=60, what="two workers")
    delayed = app.send_task("noop", ["late"], delay=3).uuid
    time.sleep(0.5)
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert app.get(delayed).status == "new"  # type: ignore[union-attr]
    fresh = start_worker(sample_env, "-c", "2")
    try:
        task = app.wait(delayed, timeout=60)
        assert task.status == "success" and task.worker is not None
        assert task.worker.split(":")[1] == str(fresh.pid)
        assert task.updated_at.timestamp() >= task.created_at.timestamp() + 3
    finally:
        fresh.send_signal(signal.SIGTERM)
        fresh.communicate(timeout=30)
    assert executions(sample_env) == {"late": 1}
    app.stop()
