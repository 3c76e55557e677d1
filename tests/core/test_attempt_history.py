"""Every attempt of a task stays readable: ``Task.history`` lists the attempts before
the current one (a retry, a recovery from a dead worker), and a task sent again with
``app.retry`` links to where it came from. On Redis and on the in-memory backend."""

from __future__ import annotations

import asyncio

import pytest

from qtasks_core import Attempt, QueueTasks
from qtasks_core.errors import RetriedAlready
from qtasks_core.starter import Starter


def _drain(app: QueueTasks) -> None:
    Starter(app, app.worker(), burst=True).start()


def test_a_task_that_failed_twice_then_succeeded_shows_both_attempts(app: QueueTasks) -> None:
    calls: list[int] = []

    @app.task(name="flaky", retry=2, retry_backoff=0.05, retry_jitter=False)
    def flaky() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise ConnectionError(f"down {len(calls)}")
        return "up"

    uuid = app.add_task("flaky").uuid
    _drain(app)
    task = app.get(uuid)
    assert task is not None
    assert (task.status, task.returning, task.attempts) == ("success", "up", 3)
    first, second = task.history
    assert all(isinstance(a, Attempt) for a in task.history)
    assert (first.attempt, first.error, first.reason) == (
        1,
        "ConnectionError: down 1",
        "ConnectionError",
    )
    assert (second.attempt, second.error, second.reason) == (
        2,
        "ConnectionError: down 2",
        "ConnectionError",
    )
    # The backoff doubles: 0.05 s, then 0.1 s.
    assert first.delay == pytest.approx(0.05, abs=0.001)
    assert second.delay == pytest.approx(0.1, abs=0.001)
    assert first.worker == second.worker == task.worker is not None
    times = [first.started_at, first.finished_at, second.started_at, second.finished_at]
    assert None not in times and times == sorted(times)  # type: ignore[type-var]
    assert second.finished_at is not None and task.started_at is not None
    assert second.finished_at <= task.started_at
    # Each waited its delay before the next attempt started (one clock: the server's).
    assert first.finished_at is not None and second.started_at is not None
    assert (second.started_at - first.finished_at).total_seconds() >= 0.05 - 0.002


def test_a_task_whose_worker_died_shows_the_attempt_it_left(app: QueueTasks) -> None:
    @app.task(name="ok")
    def ok(x: int) -> int:
        return x

    uuid = app.add_task("ok", 5).uuid
    backend = app.backend

    async def a_worker_dies_then_another_recovers() -> None:
        await backend.claim(1, "dead-worker", 0.05, 0)
        for _ in range(100):
            await asyncio.sleep(0.1)
            # A claim that takes nothing still recovers the lease that ran out.
            if uuid in (await backend.claim(0, "other", 5, 0)).recovered:
                return
        raise AssertionError("the lease was never recovered")

    app._portal.call(a_worker_dies_then_another_recovers())
    _drain(app)
    task = app.get(uuid)
    assert task is not None and (task.status, task.returning, task.attempts) == ("success", 5, 2)
    [lost] = task.history
    assert (lost.attempt, lost.worker, lost.reason) == (1, "dead-worker", "lease_expired")
    assert lost.error is None and lost.delay is None
    assert lost.started_at is not None and lost.finished_at is not None
    assert task.started_at is not None
    assert lost.started_at < lost.finished_at <= task.started_at
    assert task.worker != "dead-worker"


@pytest.mark.parametrize("garbage", ["{not json", '{"attempt": 1}', '[1, {"attempt": "x"}]'])
def test_a_history_someone_overwrote_reads_empty_and_is_replaced(
    app: QueueTasks, garbage: str
) -> None:
    calls: list[int] = []

    @app.task(name="flaky", retry=1, retry_backoff=0.01)
    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("first")

    uuid = app.add_task("flaky").uuid
    assert app._portal.call(app.backend.update(uuid, {"history": garbage}))
    task = app.get(uuid)
    assert task is not None and task.history == ()
    _drain(app)
    task = app.get(uuid)
    assert task is not None and task.status == "success"
    assert [(a.attempt, a.reason) for a in task.history] == [(1, "KeyError")]


def test_a_history_that_is_not_json_is_named_malformed(app: QueueTasks) -> None:
    uuid = app.add_task("never_runs").uuid
    assert app._portal.call(app.backend.update(uuid, {"history": "{not json"}))
    task = app.get(uuid)
    assert task is not None and task.history == ()
    assert task.extra["malformed"] == ["history"]


def test_retry_links_the_new_task_and_the_old_one_both_ways(app: QueueTasks) -> None:
    old = _failed(app)
    before = app.get(old)
    assert before is not None and before.status == "error"
    assert before.retried_as is None and before.retried_from is None
    new = app.retry(old)
    assert new.retried_from == old and new.uuid != old
    stored = app.get(new.uuid)
    assert stored is not None and stored.retried_from == old and stored.retried_as is None
    after = app.get(old)
    assert after is not None and after.retried_as == new.uuid
    # The link is no change of the old task: it still reads as it ended.
    assert (after.status, after.updated_at) == ("error", before.updated_at)
    # Sent again once more (allowed): the old task names the newest.
    newer = app.retry(old)
    assert newer.uuid not in (old, new.uuid) and newer.retried_from == old
    after = app.get(old)
    assert after is not None and after.retried_as == newer.uuid


def _failed(app: QueueTasks) -> str:
    """A task that ended error (a new one each call); its uuid."""
    if "bad" not in app.tasks:

        @app.task(name="bad")
        def bad() -> None:
            raise ValueError("nope")

    uuid = app.add_task("bad").uuid
    _drain(app)
    return uuid


def _sent_from(app: QueueTasks, old: str) -> list[str]:
    return [t.uuid for t in app.list_tasks(status="new", limit=100).tasks if t.retried_from == old]


def test_retry_once_sends_a_failed_task_once_however_many_callers_ask(app: QueueTasks) -> None:
    old = _failed(app)
    first = app.retry(old, once=True)
    with pytest.raises(RetriedAlready, match=f"task {old} was sent again already, as {first.uuid}"):
        app.retry(old, once=True)
    assert _sent_from(app, old) == [first.uuid]

    # Two callers at once (two `qtasks retry --failed`, the dashboard beside one): one
    # task between them, and the other caller is told which.
    other = _failed(app)

    async def both() -> list[object]:
        return await asyncio.gather(
            app.retry_async(other, once=True),
            app.retry_async(other, once=True),
            return_exceptions=True,
        )

    outcomes = app._portal.call(both())
    told = [o for o in outcomes if isinstance(o, RetriedAlready)]
    sent = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(told) == 1 and len(sent) == 1, outcomes
    assert told[0].retried_as == sent[0].uuid  # type: ignore[attr-defined]
    assert _sent_from(app, other) == [sent[0].uuid]  # type: ignore[attr-defined]
    linked = app.get(other)
    assert linked is not None and linked.retried_as == sent[0].uuid  # type: ignore[attr-defined]


def test_retry_once_run_again_after_a_stop_between_send_and_link_only_links(
    app: QueueTasks,
) -> None:
    old = _failed(app)
    first = app.retry(old, once=True)
    # As if the caller had stopped after the send, before the link was written.
    assert app._portal.call(app.backend.update(old, {"retried_as": ""}))
    assert app.get(old).retried_as is None  # type: ignore[union-attr]
    with pytest.raises(RetriedAlready) as told:
        app.retry(old, once=True)
    assert told.value.retried_as == first.uuid
    assert _sent_from(app, old) == [first.uuid]
    assert app.get(old).retried_as == first.uuid  # type: ignore[union-attr]
    # Without once, a task is sent again each time it is asked (as before).
    assert app.retry(old).uuid not in (first.uuid, old)
    assert len(_sent_from(app, old)) == 2
