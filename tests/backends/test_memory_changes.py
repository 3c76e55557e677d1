"""The in-memory backend's status changes: each transition told once, in order, as the
Redis backend tells it (the table in ``lib.lua``'s ``changed`` callers), to the sink of
the call that made it and onto the capped stream ``app.events()`` reads.

Garbage is written into the backend's own dicts: in memory there is no ``redis-cli``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, TypeVar

import pytest

from qtasks_core.backends import MemoryBackend
from qtasks_core.schemas import StatusChange
from tests.backends.support import record, run

T = TypeVar("T")
#: (previous, status, reason) of a change, ``None`` where it names none.
Step = tuple[str | None, str, str | None]


class Fed:
    """A memory backend whose sink keeps every call's changes."""

    def __init__(self, events_max: int = 100) -> None:
        self.backend = MemoryBackend()
        self.calls: list[list[StatusChange]] = []
        self.backend.set_feed(self.sink, events_max)

    async def sink(self, changes: list[StatusChange]) -> None:
        self.calls.append(changes)

    def take(self) -> list[StatusChange]:
        """The changes told since the last take, in order."""
        changes = [c for call in self.calls for c in call]
        self.calls.clear()
        return changes

    def steps(self) -> list[Step]:
        return [(c.previous, c.status, c.reason) for c in self.take()]

    def add(self, uuid: str, name: str = "job", **extra: str) -> None:
        assert isinstance(run(self.backend.enqueue(uuid, record(name, **extra), 0)), float)

    def claim(self, n: int = 10, lease: float = 30.0, **kw: Any) -> Any:
        kw.setdefault("alone", True)
        max_attempts = kw.pop("max_attempts", 5)
        return run(self.backend.claim(n, "w1", lease, max_attempts, **kw))

    def token(self, uuid: str) -> str:
        """Claim ``uuid`` (queued) and return its token; its changes are taken."""
        claimed = self.claim(only=uuid)
        assert [t["uuid"] for t in claimed.tasks] == [uuid]
        self.take()
        return str(claimed.tasks[0]["token"])

    def finish(
        self, uuid: str, token: str, status: str = "success", delay: float | None = None, **f: str
    ) -> bool:
        return run(self.backend.finish(uuid, token, {"status": status, **f}, None, delay))


@pytest.fixture
def fed() -> Fed:
    return Fed()


# -- written ------------------------------------------------------------------------------


def test_an_enqueue_tells_new_with_the_record_fields(fed: Fed) -> None:
    before = time.time()
    fed.add("a")
    fed.add("b", "other", queue="q1")
    a, b = fed.take()
    assert (a.uuid, a.task_name, a.queue, a.previous, a.status, a.reason) == (
        "a", "job", "default", None, "new", None
    )  # fmt: skip
    assert (a.attempt, a.worker, a.id) == (0, None, None)
    assert before - 0.001 <= a.at <= time.time() + 0.001
    assert (b.uuid, b.task_name, b.queue, b.status) == ("b", "other", "q1", "new")
    assert len(fed.calls) == 0


def test_an_enqueue_with_a_delay_tells_delayed(fed: Fed) -> None:
    fed.add("a", due_in="60000")
    assert fed.steps() == [(None, "delayed", None)]


def test_an_enqueue_that_writes_nothing_tells_nothing(fed: Fed) -> None:
    fed.add("a", unique_key="k")
    fed.take()
    assert run(fed.backend.enqueue("a", record(), 0)) is False
    assert run(fed.backend.enqueue("b", record(unique_key="k"), 0)) == "a"
    assert fed.calls == []


def test_enqueue_many_tells_each_new_task_in_one_call(fed: Fed) -> None:
    fed.add("a")
    fed.take()
    items = [("a", record(), 0), ("b", record(), 0), ("c", record(due_in="60000"), 0)]
    assert run(fed.backend.enqueue_many(items)) == 2
    assert len(fed.calls) == 1
    assert [(c.uuid, c.status) for c in fed.take()] == [("b", "new"), ("c", "delayed")]


def test_a_tick_tells_the_task_it_enqueues_and_a_lost_tick_nothing(fed: Fed) -> None:
    now_ms = int(time.time() * 1000)
    ticked = run(fed.backend.tick("s", None, now_ms + 1000, now_ms, ("t1", record(), 0)))
    assert ticked[0] == "moved"
    assert [(c.uuid, c.previous, c.status) for c in fed.take()] == [("t1", None, "new")]
    lost = run(fed.backend.tick("s", None, now_ms + 2000, now_ms, ("t2", record(), 0)))
    assert lost[0] == "lost"
    assert fed.calls == []


# -- claim --------------------------------------------------------------------------------


def test_a_claim_tells_process_with_the_attempt_and_worker(fed: Fed) -> None:
    fed.add("a")
    fed.take()
    fed.claim()
    (change,) = fed.take()
    assert (change.previous, change.status, change.reason) == ("new", "process", None)
    assert (change.attempt, change.worker) == (1, "w1")


def test_a_delayed_task_falling_due_tells_delayed_then_new(fed: Fed) -> None:
    fed.add("a", due_in="1")
    fed.take()
    time.sleep(0.01)
    fed.claim()
    assert fed.steps() == [("delayed", "new", None), ("new", "process", None)]


def test_a_retry_tells_its_exception_type_then_falls_due(fed: Fed) -> None:
    fed.add("a")
    fed.take()
    token = fed.token("a")
    assert fed.finish("a", token, "retry", delay=0.001, error="KeyError: 'x': missing")
    (retry,) = fed.take()
    assert (retry.previous, retry.status, retry.reason, retry.attempt) == (
        "process", "retry", "KeyError", 1
    )  # fmt: skip
    time.sleep(0.01)
    fed.claim()
    assert fed.steps() == [("retry", "new", None), ("new", "process", None)]


def test_a_task_expired_before_its_claim_tells_cancel_expired(fed: Fed) -> None:
    fed.add("a", expires_in="1")
    fed.take()
    time.sleep(0.01)
    assert fed.claim().tasks == []
    assert fed.steps() == [("new", "cancel", "expired")]


def test_an_aborted_task_handed_back_tells_cancel_aborted_at_its_claim(fed: Fed) -> None:
    fed.add("a")
    fed.take()
    token = fed.token("a")
    assert run(fed.backend.abort("a", "stop it", None)) == "aborting"
    assert fed.calls == []  # running: its end tells it
    assert run(fed.backend.release({"a": token})) == ["a"]
    released = fed.take()
    assert [(c.previous, c.status, c.reason, c.attempt) for c in released] == [
        ("process", "new", "released", 0)
    ]
    assert fed.claim().tasks == []
    assert fed.steps() == [("new", "cancel", "aborted")]
    stored = run(fed.backend.get("a"))
    assert stored is not None and stored["cancel_reason"] == "stop it"


def test_concurrency_limit_parks_then_a_finish_unparks_first(fed: Fed) -> None:
    limits = json.dumps({"job": {"c": 1}})
    fed.add("a")
    fed.add("b")
    fed.take()
    claimed = fed.claim(limits=limits, alone=False)
    assert [(c.uuid, c.previous, c.status, c.reason) for c in fed.take()] == [
        ("a", "new", "process", None),
        ("b", "new", "parked", "concurrency_limit"),
    ]
    assert fed.finish("a", claimed.tasks[0]["token"])
    # As finish.lua: the freed slot queues the parked task, then the finish is told.
    assert [(c.uuid, c.previous, c.status) for c in fed.take()] == [
        ("b", "parked", "new"),
        ("a", "process", "success"),
    ]


def test_rate_limit_tells_delayed(fed: Fed) -> None:
    limits = json.dumps({"job": {"r": 1, "p": 60000}})
    fed.add("a")
    fed.add("b")
    fed.take()
    fed.claim(limits=limits, alone=False)
    assert [(c.uuid, c.previous, c.status, c.reason) for c in fed.take()] == [
        ("a", "new", "process", None),
        ("b", "new", "delayed", "rate_limit"),
    ]


def test_a_lost_lease_tells_lease_expired_then_poison(fed: Fed) -> None:
    fed.add("a")
    fed.take()
    fed.claim(lease=0.001, max_attempts=1)
    fed.take()
    time.sleep(0.01)
    fed.claim(n=0, max_attempts=1)
    (recovered,) = fed.take()
    assert (recovered.previous, recovered.status, recovered.reason) == (
        "process", "new", "lease_expired"
    )  # fmt: skip
    assert (recovered.attempt, recovered.worker) == (1, "w1")
    # Claimed again alone (a suspect), its worker dies again: its own death, set aside.
    assert fed.claim(lease=0.001, max_attempts=1).tasks[0]["solo"] == "1"
    fed.take()
    time.sleep(0.01)
    fed.claim(n=0, max_attempts=1)
    assert fed.steps() == [("process", "dead", "poison")]


def test_a_malformed_task_met_in_a_claim_tells_dead_malformed(fed: Fed) -> None:
    fed.add("a")
    fed.add("b")
    fed.take()
    fed.backend._records["a"]["priority"] = "high"
    del fed.backend._records["b"]
    fed.claim()
    a, b = fed.take()
    assert (a.uuid, a.previous, a.status, a.reason, a.task_name) == (
        "a", "new", "dead", "malformed", "job"
    )  # fmt: skip
    assert (b.uuid, b.previous, b.status, b.reason, b.task_name) == (
        "b", None, "dead", "malformed", ""
    )  # fmt: skip


# -- finish -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "fields", "reason"),
    [
        ("success", {}, None),
        ("error", {"error": "ValueError: bad: worse"}, "ValueError"),
        ("error", {"error": "Boom"}, "Boom"),
        ("error", {}, None),
        ("cancel", {}, "cancelled"),
    ],
)
def test_a_finish_tells_its_status_and_reason(
    fed: Fed, status: str, fields: dict[str, str], reason: str | None
) -> None:
    fed.add("a")
    fed.take()
    token = fed.token("a")
    assert fed.finish("a", token, status, **fields)
    (change,) = fed.take()
    assert (change.previous, change.status, change.reason) == ("process", status, reason)
    assert (change.attempt, change.worker) == (1, "w1")


def test_a_finish_of_an_aborted_task_tells_aborted(fed: Fed) -> None:
    fed.add("a")
    fed.take()
    token = fed.token("a")
    run(fed.backend.abort("a", "stop", None))
    assert fed.finish("a", token, "cancel")
    assert fed.steps() == [("process", "cancel", "aborted")]


def test_a_repeated_or_refused_finish_tells_nothing(fed: Fed) -> None:
    fed.add("a")
    fed.take()
    token = fed.token("a")
    assert fed.finish("a", token)
    fed.take()
    assert fed.finish("a", token)  # already written
    assert not fed.finish("a", "not-the-token")
    assert fed.calls == []


# -- cancel, abort, purge -----------------------------------------------------------------


def _waiting(fed: Fed) -> dict[str, str]:
    """Tasks waiting each way: queued, delayed, retrying, parked; their changes taken."""
    fed.add("running", "limited")
    fed.add("parked", "limited")
    fed.claim(limits=json.dumps({"limited": {"c": 1}}), alone=False)
    fed.add("queued", "free")
    fed.add("delayed", "free", due_in="60000")
    fed.add("retry", "free")
    fed.finish("retry", fed.token("retry"), "retry", delay=60.0)
    fed.take()
    return {"queued": "new", "delayed": "delayed", "retry": "retry", "parked": "parked"}


def test_a_cancel_tells_where_the_task_waited(fed: Fed) -> None:
    for uuid, previous in _waiting(fed).items():
        assert run(fed.backend.update(uuid, {"status": "cancel"}))
        assert fed.steps() == [(previous, "cancel", "cancelled")]
    # Refused (running), or no status written: nothing.
    assert not run(fed.backend.update("running", {"status": "cancel"}))
    assert run(fed.backend.update("running", {"note": "x"}))
    assert fed.calls == []


def test_an_abort_tells_where_the_task_waited(fed: Fed) -> None:
    for uuid, previous in _waiting(fed).items():
        assert run(fed.backend.abort(uuid, "why", None)) == "cancelled"
        assert fed.steps() == [(previous, "cancel", "aborted")]
    assert run(fed.backend.abort("queued", "why", None)) == "ended"
    assert run(fed.backend.abort("nobody", "why", None)) == "unknown"
    assert fed.calls == []


def test_purge_queue_tells_each_queued_task_purged(fed: Fed) -> None:
    fed.add("a")
    fed.add("b")
    fed.add("later", due_in="60000")
    fed.take()
    assert run(fed.backend.purge_queue("default", "emptied")) == 2
    assert [(c.uuid, c.previous, c.status, c.reason) for c in fed.take()] == [
        ("a", "new", "cancel", "purged"),
        ("b", "new", "cancel", "purged"),
    ]


# -- dead letters -------------------------------------------------------------------------


def test_a_dead_letter_is_told_set_aside_requeued_and_deleted(fed: Fed) -> None:
    fed.add("a")
    fed.take()
    token = fed.token("a")
    assert run(fed.backend.dead_letter("a", token, "unreadable", "raw"))
    assert fed.steps() == [("process", "dead", "malformed")]
    assert run(fed.backend.requeue_dead("a")) == "requeued"
    (requeued,) = fed.take()
    assert (requeued.previous, requeued.status, requeued.reason) == ("dead", "new", "requeued")
    assert (requeued.attempt, requeued.worker) == (0, None)
    token = fed.token("a")
    assert run(fed.backend.dead_letter("a", token, "unreadable", "raw"))
    fed.take()
    assert run(fed.backend.delete_dead("a"))
    assert fed.steps() == [("dead", "deleted", None)]
    assert not run(fed.backend.delete_dead("a"))
    assert run(fed.backend.requeue_dead("a")) == "not-dead"
    assert fed.calls == []


# -- workflows ----------------------------------------------------------------------------


def _task(name: str) -> str:
    return json.dumps({"k": "t", "f": record(name), "p": 0})


def _workflow(fed: Fed, wf: str, shape: str, n: int, on_error: bool = False) -> None:
    nodes = {"r": json.dumps({"k": shape, "n": n})}
    nodes.update({f"r.{i}": _task(f"step{i}") for i in range(n)})
    if on_error:
        nodes["e"] = _task("cleanup")
    wf_record = {**record("flow"), "status": "process", "workflow": "1"}
    assert run(fed.backend.start_workflow(wf, wf_record, nodes))


def test_a_chain_tells_its_start_each_step_and_its_end(fed: Fed) -> None:
    _workflow(fed, "wf", "c", 2)
    assert [(c.uuid, c.previous, c.status) for c in fed.take()] == [
        ("wf", None, "process"),
        ("wf:r.0", None, "new"),
    ]
    assert fed.finish("wf:r.0", fed.token("wf:r.0"))
    assert [(c.uuid, c.previous, c.status) for c in fed.take()] == [
        ("wf:r.0", "process", "success"),
        ("wf:r.1", None, "new"),
    ]
    assert fed.finish("wf:r.1", fed.token("wf:r.1"))
    assert [(c.uuid, c.previous, c.status, c.reason) for c in fed.take()] == [
        ("wf:r.1", "process", "success", None),
        ("wf", "process", "success", None),
    ]


def test_an_empty_group_ends_as_it_starts(fed: Fed) -> None:
    _workflow(fed, "wf", "g", 0)
    assert fed.steps() == [(None, "process", None), ("process", "success", None)]


def test_a_failed_member_fails_its_workflow(fed: Fed) -> None:
    _workflow(fed, "wf", "g", 3, on_error=True)
    fed.take()
    token = fed.token("wf:r.0")
    run(fed.backend.abort("wf:r.1", "skip", None))  # cancelled: it fails the workflow
    assert [(c.uuid, c.previous, c.status, c.reason) for c in fed.take()] == [
        ("wf:r.1", "new", "cancel", "aborted"),
        ("wf", "process", "error", "member_failed"),
        ("wf:r.2", "new", "cancel", "workflow_failed"),
        ("wf:e", None, "new", None),
    ]
    assert fed.finish("wf:r.0", token)  # runs on, unheeded
    assert fed.steps() == [("process", "success", None)]


def test_an_aborted_workflow_cancels_its_waiting_members(fed: Fed) -> None:
    _workflow(fed, "wf", "g", 2)
    fed.take()
    fed.token("wf:r.0")
    assert run(fed.backend.abort("wf", "enough", None)) == "cancelled"
    assert [(c.uuid, c.previous, c.status, c.reason) for c in fed.take()] == [
        ("wf", "process", "cancel", "aborted"),
        ("wf:r.1", "new", "cancel", "aborted"),
    ]  # the running member is asked to stop: its finish tells it


# -- the stream ---------------------------------------------------------------------------


def test_the_stream_pages_after_an_id_and_blocks_for_the_next(fed: Fed) -> None:
    b = fed.backend
    assert run(b.status_events_last()) == "0-0"
    run(b.enqueue_many([(f"t{i}", record(), 0) for i in range(5)]))  # one ms, most likely
    every = run(b.status_events("0", 0))
    assert [c.uuid for c in every] == [f"t{i}" for i in range(5)]
    keys = [tuple(map(int, str(c.id).split("-"))) for c in every]
    assert keys == sorted(set(keys))  # strictly increasing
    assert run(b.status_events_last()) == every[-1].id
    assert all(c.id is None for c in fed.take())  # the sink's carry none
    first = run(b.status_events("0-0", 0, count=2))
    assert [c.uuid for c in first] == ["t0", "t1"]
    rest = run(b.status_events(str(first[-1].id), 0, count=10))
    assert [c.uuid for c in rest] == ["t2", "t3", "t4"]
    started = time.monotonic()
    assert run(b.status_events(str(every[-1].id), 0.05)) == []
    assert 0.04 <= time.monotonic() - started < 1

    async def wait_then_enqueue() -> list[StatusChange]:
        reader = asyncio.create_task(b.status_events(str(every[-1].id), 5))
        await asyncio.sleep(0.02)
        await b.enqueue("late", record(), 0)
        return await reader

    started = time.monotonic()
    assert [c.uuid for c in run(wait_then_enqueue())] == ["late"]
    assert time.monotonic() - started < 1


def test_the_stream_keeps_the_last_events_max() -> None:
    b = MemoryBackend()
    b.set_feed(None, 3)  # the stream alone
    for i in range(5):
        run(b.enqueue(f"t{i}", record(), 0))
    kept = run(b.status_events("0", 0))
    assert [c.uuid for c in kept] == ["t2", "t3", "t4"]
    assert run(b.status_events_last()) == kept[-1].id
    assert b._pending == []  # no sink: nothing held for one
    run(b.flush_all())
    assert run(b.status_events_last()) == "0-0"


def test_a_sink_alone_fills_no_stream() -> None:
    fed = Fed(events_max=0)
    fed.add("a")
    assert fed.steps() == [(None, "new", None)]
    assert run(fed.backend.status_events_last()) == "0-0"


def test_without_a_feed_nothing_is_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    b = MemoryBackend()
    b.set_feed(None, 0)

    def never(*args: Any) -> None:
        raise AssertionError("a change was collected")

    monkeypatch.setattr(b, "_note", never)
    run(b.enqueue("a", record(), 0))
    claimed = run(b.claim(1, "w1", 30.0, 5))
    run(b.finish("a", claimed.tasks[0]["token"], {"status": "success"}, None, None))
    run(b.enqueue("b", record(), 0))
    run(b.abort("b", "why", None))
    assert b._pending == []
    assert run(b.status_events("0", 0)) == []


def test_a_failing_sink_is_logged_and_the_change_stands(caplog: pytest.LogCaptureFixture) -> None:
    b = MemoryBackend()

    async def broken(changes: list[StatusChange]) -> None:
        raise RuntimeError("sink down")

    b.set_feed(broken, 10)
    with caplog.at_level(logging.ERROR, logger="qtasks.backend"):
        assert isinstance(run(b.enqueue("a", record(), 0)), float)
    assert "sink" in caplog.text
    assert run(b.get("a")) is not None
    assert [c.uuid for c in run(b.status_events("0", 0))] == ["a"]
