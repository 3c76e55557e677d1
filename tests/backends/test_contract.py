"""The backend contract: one behaviour for every backend and transport.

Each test runs on the in-memory backend, on a real Redis through the lean connection,
on the same Redis through redis-py only, and over TLS (redis-py), so the Lua functions
and the Python engine cannot drift apart. Garbage that a user (or a bug) leaves in
Redis is written with a plain redis-py client, as ``redis-cli`` would. The fixtures
are in ``conftest.py``, what the tests share in ``support.py``; each component's own
part of the protocol is in a ``test_contract_<component>.py`` of its own, and
``test_contract_coverage.py`` fails when a method of the protocol is left out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from qtasks_core.backends import Claimed
from qtasks_core.errors import BackendError
from tests.backends.support import Subject, beating, record, recovered, run, uuids

# -- enqueue -------------------------------------------------------------------------------


def test_an_enqueue_repeated_with_the_same_uuid_adds_nothing(subject: Subject) -> None:
    b = subject.backend
    before = time.time()
    written = run(b.enqueue("a", record(), 0))
    # When it was written, on the backend's clock: the record's created_at.
    assert isinstance(written, float) and before - 5 < written < time.time() + 5
    assert float(run(b.get("a"))["created_at"]) == written  # type: ignore[index]
    # The retry of an enqueue whose reply was lost: the task must not run twice.
    assert run(b.enqueue("a", record(name="other"), 0)) is False
    assert run(b.enqueue_many([("a", record(), 0), ("b", record(), 0)])) == 1
    claimed = subject.claim()
    assert sorted(t["uuid"] for t in claimed.tasks) == ["a", "b"]
    assert [t["task_name"] for t in claimed.tasks if t["uuid"] == "a"] == ["job"]
    assert subject.claim().tasks == []


def test_claims_follow_priority_then_fifo(subject: Subject) -> None:
    for uuid, priority in [("late", 5), ("first", -1), ("a", 0), ("b", 0), ("c", 0)]:
        subject.add(uuid, priority)
    order = [t["uuid"] for t in subject.claim(n=2).tasks]
    order += [t["uuid"] for t in subject.claim(n=10).tasks]
    assert order == ["first", "a", "b", "c", "late"]


def test_a_claim_marks_the_record_running_with_a_new_token_each_time(subject: Subject) -> None:
    subject.add("a")
    first = subject.claim(lease=0.3).tasks[0]
    got = run(subject.backend.get("a"))
    assert got is not None and got["status"] == "process" and got["attempts"] == "1"
    assert "claim" not in got  # the fence is the backend's, not the caller's
    beating(subject, 0.4, 0.3)
    again = subject.claim().tasks[0]
    assert again["uuid"] == "a" and again["attempts"] == "2"
    assert again["token"] != first["token"]


# -- fencing -------------------------------------------------------------------------------


def test_a_worker_whose_lease_was_taken_over_cannot_write(subject: Subject) -> None:
    b = subject.backend
    subject.add("a")
    zombie = subject.claim(lease=0.3, worker="zombie").tasks[0]
    beating(subject, 0.4, 0.3)  # the zombie is stopped: only the others heartbeat
    live = subject.claim(worker="live").tasks[0]
    # The zombie learns it lost the lease, and its late writes change nothing.
    assert run(b.extend({"a": zombie["token"]}, 30)).lost == ["a"]
    assert run(b.extend({"a": live["token"]}, 30)).lost == []
    assert subject.finish("a", live["token"], result="live") is True
    assert subject.finish("a", zombie["token"], result="zombie") is False
    assert subject.finish("a", zombie["token"], status="retry", delay=0.01) is False
    assert run(b.release({"a": zombie["token"]})) == []
    got = run(b.get("a"))
    assert got is not None and got["status"] == "success" and got["returning"] == '"live"'


def test_an_abort_cancels_a_queued_task_and_marks_a_running_one(subject: Subject) -> None:
    b = subject.backend
    subject.add("queued")
    subject.add("delayed", due_in="60000")
    assert run(b.abort("queued", "not needed", 60)) == "cancelled"
    assert run(b.abort("delayed", "not needed", 60)) == "cancelled"
    for uuid in ("queued", "delayed"):
        got = run(b.get(uuid))
        assert got is not None
        assert (got["status"], got["cancel_reason"]) == ("cancel", "not needed")
    assert run(b.wait_done("queued", 1)) is not False  # its waiters woke
    subject.add("running")
    token = subject.claim().tasks[0]["token"]
    assert run(b.extend({"running": token}, 30)).aborted == {}
    assert run(b.abort("running", "stop it", 60)) == "aborting"
    renewed = run(b.extend({"running": token}, 30))
    assert (renewed.lost, renewed.aborted) == ([], {"running": "stop it"})
    assert subject.finish("running", token, status="cancel") is True
    assert run(b.abort("running", "again", 60)) == "ended"
    assert run(b.abort("nothing", "x", 60)) == "unknown"
    assert subject.claim().tasks == []  # the cancelled ones never run


def test_a_finish_repeated_after_a_lost_reply_counts_once(subject: Subject) -> None:
    subject.add("a")
    token = subject.claim().tasks[0]["token"]
    assert subject.finish("a", token) is True
    assert subject.finish("a", token) is True
    assert run(subject.backend.stats()).counts.get("success") == 1
    # A heartbeat overlapping the finish is no lost lease.
    assert run(subject.backend.extend({"a": token}, 30)).lost == []


def test_progress_is_written_only_under_the_running_claim(subject: Subject) -> None:
    b = subject.backend
    subject.add("a")
    assert run(b.progress("a", '{"value": 0}')) is False  # queued, not running
    zombie = subject.claim(lease=0.3, worker="zombie").tasks[0]["token"]
    assert run(b.progress("a", '{"value": 0.1}', zombie)) is True
    beating(subject, 0.4, 0.3)  # the zombie stops renewing; its lease runs out
    live = subject.claim(worker="live").tasks[0]["token"]
    assert run(b.progress("a", '{"value": 0.5}', live)) is True
    # The worker that lost the task cannot write over the one that took it over.
    assert run(b.progress("a", '{"value": 0.9}', zombie)) is False
    got = run(b.get("a"))
    assert got is not None and got["progress"] == '{"value": 0.5}'


def test_finishes_sent_together_are_each_counted_and_listed(subject: Subject) -> None:
    # Concurrent finishes go to Redis in one call, which writes the task list's indexes
    # and the counts once per index: every task must still be in them.
    b = subject.backend
    for i in range(30):
        subject.add(f"t{i}")
    claimed = {t["uuid"]: t["token"] for t in subject.claim(n=30).tasks}
    assert len(claimed) == 30

    async def finish_all() -> list[bool]:
        return await asyncio.gather(
            *(
                b.finish(uuid, token, {"status": "error" if i % 3 == 0 else "success"}, 60, None)
                for i, (uuid, token) in enumerate(claimed.items())
            )
        )

    assert run(finish_all()) == [True] * 30
    assert run(b.stats()).counts == {"error": 10, "success": 20}

    def listed(index: str) -> set[str]:
        return {uuid for uuid, _, _ in run(b.index_page(index, None, 100))}

    assert listed("final:error") | listed("final:success") == set(claimed)
    assert len(listed("final:error")) == 10
    assert listed("name:job") == set(claimed)


def test_a_released_task_is_queued_again_without_counting_a_delivery(subject: Subject) -> None:
    subject.add("a")
    token = subject.claim().tasks[0]["token"]
    assert run(subject.backend.release({"a": token, "unknown": "1"})) == ["a"]
    again = subject.claim().tasks[0]
    assert again["uuid"] == "a" and again["attempts"] == "1"


def test_an_expired_lease_is_recovered_and_the_poison_limit_holds(subject: Subject) -> None:
    subject.add("a")

    def claim() -> Awaitable[Claimed]:
        return subject.backend.claim(1, "w", 0.3, 5, alone=True)

    claimed: Claimed | None = run(claim())
    # The first death is no one's (a worker runs several tasks); each one after it,
    # the task running alone, is its own: set aside after 5.
    for attempt in range(1, 7):
        assert claimed is not None
        assert [t["attempts"] for t in claimed.tasks] == [str(attempt)]
        assert [t["solo"] for t in claimed.tasks] == ["" if attempt == 1 else "1"]
        claimed = recovered(subject, 0.3, claim)
    assert claimed is not None and claimed.tasks == [] and claimed.dead == ["a"]
    got = run(subject.backend.get("a"))
    assert got is not None and got["status"] == "error"
    assert "died 5 times while it ran alone" in got["traceback"]
    assert [d["uuid"] for d in run(subject.backend.dead_letters())] == ["a"]


def test_the_tasks_of_a_dead_worker_run_alone_and_only_their_own_deaths_count(
    subject: Subject,
) -> None:
    for uuid in ("a", "b", "c"):
        subject.add(uuid)
    assert len(subject.claim(n=3, lease=0.3).tasks) == 3
    subject.add("d")

    def claim(alone: bool, n: int = 10) -> Awaitable[Claimed]:
        return subject.backend.claim(n, "w2", 30, 2, alone=alone)

    # Its worker died: a, b and c are suspects. A worker running something else
    # leaves them queued (and is told); d, never a suspect, is claimed.
    busy = beating(subject, 0.4, 0.3, then=lambda: claim(False))
    assert busy is not None and sorted(busy.recovered) == ["a", "b", "c"]
    assert [t["uuid"] for t in busy.tasks] == ["d"] and busy.suspects
    # A worker running nothing gets one suspect, alone, and nothing beside it.
    first = run(claim(True))
    assert [(t["uuid"], t["solo"]) for t in first.tasks] == [("a", "1")]
    assert run(claim(False)).tasks == []
    # It lived: no longer a suspect. A retry of it later runs with others.
    assert subject.finish("a", first.tasks[0]["token"], status="retry", delay=0.01)
    time.sleep(0.05)
    again = run(claim(True))
    assert [(t["uuid"], t["solo"]) for t in again.tasks] == [("b", "1")]
    assert subject.finish("b", again.tasks[0]["token"])
    rest = run(claim(True))
    assert [(t["uuid"], t["solo"]) for t in rest.tasks] == [("c", "1")]
    assert subject.finish("c", rest.tasks[0]["token"])
    last = run(claim(False))
    assert [(t["uuid"], t["solo"]) for t in last.tasks] == [("a", "")]
    assert run(subject.backend.dead_letters()) == []


# -- retries, waits, TTLs --------------------------------------------------------------------


def test_a_delayed_retry_waits_in_the_backend_then_runs_under_the_same_uuid(
    subject: Subject,
) -> None:
    subject.add("a")
    token = subject.claim().tasks[0]["token"]
    assert subject.finish("a", token, status="retry", delay=0.3) is True
    soon = subject.claim()
    assert soon.tasks == [] and soon.next_due is not None and 0 < soon.next_due <= 0.3
    stats = run(subject.backend.stats())
    assert stats.scheduled == 1 and stats.counts.get("retry") == 1
    time.sleep(soon.next_due + 0.02)
    again = subject.claim().tasks
    assert [t["uuid"] for t in again] == ["a"] and again[0]["attempts"] == "2"


def test_a_final_state_wakes_waiters_with_the_record_and_expires(subject: Subject) -> None:
    subject.add("a")
    token = subject.claim().tasks[0]["token"]

    async def wait_and_finish() -> Any:
        waiter = asyncio.ensure_future(subject.backend.wait_done("a", 5))
        await asyncio.sleep(0.05)
        fields = {"status": "success", "returning": "7"}
        assert await subject.backend.finish("a", token, fields, 1, None)
        return await waiter

    done = run(wait_and_finish())
    assert done is True or (isinstance(done, dict) and done["returning"] == "7")
    assert run(subject.backend.wait_done("a", 0.1))  # a later waiter returns at once
    time.sleep(2.1)
    assert run(subject.backend.get("a")) is None


def test_cancel_unqueues_a_queued_or_delayed_task_only(subject: Subject) -> None:
    b = subject.backend
    subject.add("queued")
    subject.add("delayed")
    subject.add("running")
    claimed = {t["uuid"]: t["token"] for t in subject.claim(n=3).tasks}
    subject.add("queued2")
    assert subject.finish("delayed", claimed["delayed"], status="retry", delay=60)
    assert run(b.update("queued2", {"status": "cancel", "cancel_reason": "no"})) is True
    assert run(b.update("delayed", {"status": "cancel"})) is True
    assert run(b.update("running", {"status": "cancel"})) is False
    assert run(b.update("nobody", {"status": "cancel"})) is False
    with pytest.raises(BackendError, match="cancel"):
        run(b.update("running", {"status": "success"}))
    assert subject.claim().tasks == []
    counts = run(b.stats()).counts
    assert counts.get("cancel") == 2 and counts.get("process") == 2
    del claimed["delayed"]


# -- dead letters --------------------------------------------------------------------------


def test_only_dead_letters_are_requeued(subject: Subject) -> None:
    b = subject.backend
    for uuid in ("running", "finished", "poison"):
        subject.add(uuid)
    tokens = {t["uuid"]: t["token"] for t in subject.claim().tasks}
    subject.add("queued")
    assert subject.finish("finished", tokens["finished"])
    assert run(b.dead_letter("poison", tokens["poison"], "unreadable", "raw bytes"))
    for uuid in ("running", "finished", "queued", "unknown"):
        assert run(b.requeue_dead(uuid)) == "not-dead", uuid
    [letter] = run(b.dead_letters())
    assert letter["uuid"] == "poison" and letter["reason"] == "unreadable"
    assert letter["raw"] == "raw bytes"
    assert run(b.requeue_dead("poison")) == "requeued"
    assert run(b.dead_letters()) == []
    assert sorted(t["uuid"] for t in subject.claim().tasks) == ["poison", "queued"]


def test_a_dead_letter_can_be_deleted_and_survives_a_purge(subject: Subject) -> None:
    b = subject.backend
    subject.add("poison")
    token = subject.claim().tasks[0]["token"]
    assert run(b.dead_letter("poison", token, "unreadable", ""))
    assert run(b.delete_finished()) == 0  # kept: it may still be requeued
    assert run(b.delete_dead("poison")) is True
    assert run(b.delete_dead("poison")) is False
    assert run(b.dead_letters()) == []


def test_stats_count_live_statuses_from_the_sets(subject: Subject) -> None:
    for uuid in "abcd":
        subject.add(uuid, priority=1 if uuid == "d" else 0)
    tokens = {t["uuid"]: t["token"] for t in subject.claim(n=2).tasks}
    subject.finish("a", tokens["a"])
    stats = run(subject.backend.stats())
    assert stats.queued == {0: 1, 1: 1}
    assert stats.running == 1
    assert stats.counts == {"new": 2, "process": 1, "success": 1}


# -- named queues, delays, expiry -------------------------------------------------------------


def test_a_claim_takes_only_the_queues_it_names(subject: Subject) -> None:
    subject.add("d")
    subject.add("e", queue="emails")
    subject.add("r", queue="reports")
    assert uuids(subject.claim(queues=["emails"])) == ["e"]
    assert uuids(subject.claim(queues=["emails"])) == []
    assert uuids(subject.claim()) == ["d"]  # the default queue alone
    assert uuids(subject.claim(queues=["default", "reports"])) == ["r"]


def test_queues_take_turns_and_priority_holds_within_each(subject: Subject) -> None:
    for i in range(4):
        subject.add(f"a{i}", queue="a")
    subject.add("b-low", priority=5, queue="b")
    subject.add("b-high", priority=-5, queue="b")
    # A full queue does not starve the next: one task from each in turn.
    assert uuids(subject.claim(n=3, queues=["a", "b"])) == ["a0", "b-high", "a1"]
    # The turn moves the starting queue.
    assert uuids(subject.claim(n=2, queues=["a", "b"], turn=1)) == ["b-low", "a2"]
    assert uuids(subject.claim(n=5, queues=["a", "b"])) == ["a3"]


def test_a_dead_letter_is_requeued_to_its_own_queue(subject: Subject) -> None:
    b = subject.backend
    subject.add("p", queue="emails")
    token = subject.claim(queues=["emails"]).tasks[0]["token"]
    assert run(b.dead_letter("p", token, "unreadable", ""))
    assert run(b.requeue_dead("p")) == "requeued"
    assert uuids(subject.claim()) == []
    assert uuids(subject.claim(queues=["emails"])) == ["p"]


def test_a_retry_returns_to_its_own_queue(subject: Subject) -> None:
    subject.add("r", queue="emails")
    token = subject.claim(queues=["emails"]).tasks[0]["token"]
    assert run(subject.backend.finish("r", token, {"status": "retry"}, None, 0.05))
    time.sleep(0.1)
    assert uuids(subject.claim()) == []
    assert uuids(subject.claim(queues=["emails"])) == ["r"]


def test_a_delayed_task_waits_in_the_backend_and_shows_its_due_time(subject: Subject) -> None:
    before = time.time()
    # A second: wide enough that a loaded machine claims before it is due.
    subject.add("later", due_in="1000")
    subject.add("now")
    got = run(subject.backend.get("later"))
    assert got is not None and got["status"] == "new" and "due_in" not in got
    assert before + 0.95 < float(got["eta"]) < time.time() + 1.05
    claimed = subject.claim(n=5)
    assert uuids(claimed) == ["now"]
    assert claimed.next_due is not None and 0 < claimed.next_due <= 1.0
    time.sleep(claimed.next_due + 0.05)
    claimed = subject.claim(n=5)
    assert uuids(claimed) == ["later"]
    assert float(claimed.tasks[0]["created_at"]) <= before + 1


def test_a_delayed_task_can_be_cancelled_before_it_is_due(subject: Subject) -> None:
    subject.add("later", due_in="200")
    assert run(subject.backend.update("later", {"status": "cancel", "cancel_reason": "no"}))
    time.sleep(0.25)
    assert uuids(subject.claim()) == []
    got = run(subject.backend.get("later"))
    assert got is not None and got["status"] == "cancel"


def test_a_task_not_started_before_it_expires_ends_cancelled_unrun(subject: Subject) -> None:
    subject.add("stale", expires_in="100")
    subject.add("fresh", expires_in="60000")
    time.sleep(0.15)
    assert uuids(subject.claim(n=5)) == ["fresh"]
    got = run(subject.backend.get("stale"))
    assert got is not None
    assert (got["status"], got["cancel_reason"]) == ("cancel", "expired")
    assert "expires_in" not in got and float(got["expires"]) < time.time()
    assert run(subject.backend.wait_done("stale", 1)) is not False


def test_purging_a_queue_cancels_its_tasks_only(subject: Subject) -> None:
    for i in range(3):
        subject.add(f"e{i}", queue="emails")
    subject.add("d")
    assert run(subject.backend.purge_queue("emails")) == 3
    assert uuids(subject.claim(queues=["emails", "default"])) == ["d"]
    got = run(subject.backend.get("e0"))
    assert got is not None and (got["status"], got["cancel_reason"]) == ("cancel", "purged")
    assert run(subject.backend.purge_queue("emails")) == 0


def test_stats_show_each_queue_by_priority(subject: Subject) -> None:
    subject.add("d")
    subject.add("e1", queue="emails")
    subject.add("e2", priority=3, queue="emails")
    stats = run(subject.backend.stats())
    assert stats.queues == {"default": {0: 1}, "emails": {0: 1, 3: 1}}
    assert stats.queued == {0: 2, 3: 1}


def test_an_idle_wait_wakes_for_its_own_queues_only(subject: Subject) -> None:
    b = subject.backend

    async def wait(queues: list[str]) -> float:
        started = time.monotonic()
        await b.wait_for_work(1.0, "w1", queues)
        return time.monotonic() - started

    async def scenario() -> tuple[float, float]:
        emails = asyncio.ensure_future(wait(["emails"]))
        reports = asyncio.ensure_future(wait(["reports"]))
        await asyncio.sleep(0.1)
        await b.enqueue("e", record(queue="emails"), 0)
        return await emails, await reports

    woken, idle = run(scenario())
    assert woken < 0.8
    assert idle >= 0.9


def test_a_requeued_dead_letter_runs_even_past_its_expiry(subject: Subject) -> None:
    b = subject.backend
    subject.add("p", expires_in="200")
    token = subject.claim().tasks[0]["token"]
    assert run(b.dead_letter("p", token, "unreadable", ""))
    time.sleep(0.25)
    assert run(b.requeue_dead("p")) == "requeued"
    assert uuids(subject.claim()) == ["p"]


def test_purged_records_expire_with_the_result_ttl(subject: Subject) -> None:
    subject.add("e", queue="emails")
    assert run(subject.backend.purge_queue("emails", ttl=0.2)) == 1
    assert run(subject.backend.get("e")) is not None
    time.sleep(1.2 if subject.raw is not None else 0.3)  # Redis TTLs are whole seconds
    assert run(subject.backend.get("e")) is None


# -- garbage in Redis ------------------------------------------------------------------------


def test_a_record_key_of_the_wrong_type_is_set_aside_alone(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    for i in range(16):
        subject.add(f"t{i:02}")
    raw.delete(subject.keys.task("t00"))
    raw.set(subject.keys.task("t00"), "x")
    claimed = subject.claim(n=16)
    assert claimed.dead == ["t00"]
    assert sorted(t["uuid"] for t in claimed.tasks) == [f"t{i:02}" for i in range(1, 16)]
    [letter] = run(subject.backend.dead_letters())
    assert "record is a string" in letter["reason"]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("status", None, "unknown status: (none)"),
        ("status", "zombie", "unknown status: zombie"),
        ("priority", "high", "bad priority: high"),
        ("task_name", "", "no task_name"),
    ],
)
def test_a_malformed_record_is_set_aside_with_its_reason(
    subject: Subject, field: str, value: str | None, reason: str
) -> None:
    subject.add("bad")
    subject.add("good")
    if subject.raw is not None:
        if value is None:
            subject.raw.hdel(subject.keys.task("bad"), field)
        else:
            subject.raw.hset(subject.keys.task("bad"), field, value)
    else:
        records = subject.backend._records  # type: ignore[attr-defined]
        if value is None:
            del records["bad"][field]
        else:
            records["bad"][field] = value
    claimed = subject.claim()
    assert [t["uuid"] for t in claimed.tasks] == ["good"] and claimed.dead == ["bad"]
    [letter] = run(subject.backend.dead_letters())
    assert reason in letter["reason"]
    got = run(subject.backend.get("bad"))
    assert got is not None and got["status"] == "error" and reason in got["traceback"]


def test_a_bad_priority_on_a_running_or_delayed_entry_is_set_aside(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    subject.add("running")
    subject.add("delayed")
    tokens = {t["uuid"]: t["token"] for t in subject.claim(lease=0.3).tasks}
    assert subject.finish("delayed", tokens["delayed"], status="retry", delay=0.01)
    for uuid in ("running", "delayed"):
        raw.hset(subject.keys.task(uuid), "priority", "nan")
    beating(subject, 0.4, 0.3)
    subject.add("fresh")
    claimed = subject.claim()
    assert sorted(claimed.dead) == ["delayed", "running"]
    assert [t["uuid"] for t in claimed.tasks] == ["fresh"]


def test_corrupt_counters_and_sequence_do_not_stop_the_queue(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    subject.add("a")
    raw.hset(subject.keys.counts, "success", "lots")
    raw.set(subject.keys.seq, "not a number")
    subject.add("b")
    tokens = {t["uuid"]: t["token"] for t in subject.claim().tasks}
    assert sorted(tokens) == ["a", "b"]
    assert subject.finish("a", tokens["a"])
    raw.delete(subject.keys.counts)
    raw.set(subject.keys.counts, "x")
    assert subject.finish("b", tokens["b"])
    assert run(subject.backend.stats()).counts == {}


def test_a_done_key_of_the_wrong_type_does_not_spread(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    for uuid in ("a", "b"):
        subject.add(uuid)
    raw.set(subject.keys.done("a"), "x")
    tokens = {t["uuid"]: t["token"] for t in subject.claim().tasks}

    async def finish_both() -> list[bool]:
        # Concurrent finishes travel in one script call: one bad key must not fail both.
        return list(
            await asyncio.gather(
                *(
                    subject.backend.finish(u, t, {"status": "success"}, None, None)
                    for u, t in tokens.items()
                )
            )
        )

    assert run(finish_both()) == [True, True]
    for uuid in ("a", "b"):
        got = run(subject.backend.get(uuid))
        assert got is not None and got["status"] == "success"
        assert run(subject.backend.wait_done(uuid, 1))


def test_an_app_key_of_the_wrong_type_is_refused_before_any_write(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    subject.add("a")
    raw.delete(subject.keys.running)
    raw.set(subject.keys.running, "x")
    with pytest.raises(BackendError, match="running"):
        subject.claim()
    raw.delete(subject.keys.running)
    assert [t["uuid"] for t in subject.claim().tasks] == ["a"]  # nothing was half done


def test_wrong_typed_wake_keys_and_odd_scores_are_survived(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    raw.set(subject.keys.wake, "x")
    raw.set(subject.keys.wake_worker("w1"), "x")
    run(subject.backend.wait_for_work(0.05, "w1"))
    run(subject.backend.wait_for_work(0.05, "w1"))
    raw.zadd(subject.keys.queue, {"minus-inf": float("-inf")})
    raw.hset(subject.keys.task("minus-inf"), mapping=record())
    assert sum(run(subject.backend.stats()).queued.values()) == 1


def test_a_uuid_that_is_not_utf8_is_listed_as_a_dead_letter(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    bad = b"\xff\xfe-task"
    raw.zadd(subject.keys.queue, {bad: 0})
    subject.add("good")
    claimed = subject.claim()
    assert [t["uuid"] for t in claimed.tasks] == ["good"]
    [letter] = run(subject.backend.dead_letters())
    assert letter["uuid"] == bad.decode(errors="replace")
    assert "no task record" in letter["reason"]


def test_a_named_queue_key_of_the_wrong_type_sets_its_tasks_aside(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    subject.add("later", due_in="50", queue="broken")
    raw.set(subject.keys.queue_of("broken"), "oops")
    time.sleep(0.1)
    # A worker of another queue moves the due task: it is set aside naming the key,
    # never lost between two indexes, and the claim goes on.
    claimed = subject.claim()
    assert claimed.dead == ["later"]
    [letter] = run(subject.backend.dead_letters())
    assert subject.keys.queue_of("broken") in letter["reason"]


def test_a_batch_with_a_broken_queue_key_writes_nothing(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    raw.set(subject.keys.queue_of("broken"), "oops")
    items = [("ok", record(), 0), ("bad", record(queue="broken"), 0)]
    with pytest.raises(BackendError, match="broken"):
        run(subject.backend.enqueue_many(items))
    assert run(subject.backend.get("ok")) is None


def test_limit_keys_of_the_wrong_type_lose_no_task(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    limits = json.dumps({"lim": {"c": 1, "r": 100, "p": 1000}})
    subject.add("a", task_name="lim")
    subject.add("b")  # a task without a limit, claimed in the same call
    subject.add("c", task_name="lim")
    prefix = subject.keys.prefix
    raw.set(prefix + "slots:lim", "x")
    raw.set(prefix + "parked:lim", "x")
    window = int(time.time() * 1000) // 1000
    for w in range(window - 1, window + 3):
        raw.set(prefix + f"rate:lim:{w}", "not a number")
    claimed = subject.claim(limits=limits)
    assert sorted(t["uuid"] for t in claimed.tasks) == ["a", "b"]
    # The bad parked key is set aside alone, naming itself; c waits for a's slot.
    [letter] = run(subject.backend.dead_letters())
    assert letter["uuid"] == "parked:lim" and prefix + "parked:lim" in letter["reason"]
    assert run(subject.backend.get("c"))["status"] == "new"  # type: ignore[index]
    token = {t["uuid"]: t["token"] for t in claimed.tasks}
    raw.set(prefix + "slots:lim", "y")  # broken again while a runs: rebuilt at its end
    assert subject.finish("a", token["a"])
    assert [t["uuid"] for t in subject.claim(limits=limits).tasks] == ["c"]
    assert raw.type(prefix + "slots:lim") == b"zset"


def test_dead_letters_are_read_a_page_at_a_time_newest_first(subject: Subject) -> None:
    b = subject.backend
    for i in range(30):
        subject.add(f"d{i:02}")
    for task in subject.claim(n=30).tasks:
        assert run(b.dead_letter(task["uuid"], task["token"], "poison", ""))
    if subject.raw is not None:
        # Twenty set aside in one millisecond, as one claim that buries many does.
        tied = {f"d{i:02}": 1_700_000_000_000 for i in range(5, 25)}
        subject.raw.zadd(subject.keys.dead, tied, xx=True)
    assert run(b.dead_count()) == 30
    every = run(b.dead_letters())
    order = [(float(d["at"]), d["uuid"]) for d in every]
    assert len(every) == 30 and order == sorted(order, reverse=True)
    # Pages of 4, each page's last letter deleted before the next page is read: the
    # next page starts right after it all the same.
    walked: list[str] = []
    after: tuple[float, str] | None = None
    while page := run(b.dead_letters(after, 4)):
        assert len(page) <= 4
        walked += [d["uuid"] for d in page]
        after = (float(page[-1]["at"]), page[-1]["uuid"])
        assert run(b.delete_dead(page[-1]["uuid"]))
    assert walked == [d["uuid"] for d in every]
    assert run(b.dead_count()) == 30 - 8


def _suspect(subject: Subject, uuid: str, **extra: str) -> None:
    """Make ``uuid`` a suspect: claimed, then its worker silent past the lease."""
    subject.add(uuid, **extra)
    assert [t["uuid"] for t in subject.claim(n=1, lease=0.3, alone=False).tasks] == [uuid]
    beating(subject, 0.4, 0.3)


def test_a_suspect_keeps_its_place_and_a_parked_one_does_not_end_the_claim(
    subject: Subject,
) -> None:
    limits = json.dumps({"lim": {"c": 1}})
    _suspect(subject, "sus")
    subject.add("y1")
    subject.add("y2")
    # A busy worker skips the suspect, which keeps its place ahead of later tasks.
    busy = subject.claim(n=5, alone=False)
    assert busy.recovered == ["sus"] and busy.suspects
    assert [t["uuid"] for t in busy.tasks] == ["y1", "y2"]
    subject.add("y3")
    assert [(t["uuid"], t["solo"]) for t in subject.claim(n=5).tasks] == [("sus", "1")]
    # A suspect of a limited name with its slot taken is parked: the claim goes on.
    subject.add("holder", task_name="lim")
    assert [t["uuid"] for t in subject.claim(n=5, limits=limits).tasks] == ["y3", "holder"]
    _suspect(subject, "lsus", task_name="lim")
    subject.add("y4")
    rest = subject.claim(n=5, limits=limits)
    assert [t["uuid"] for t in rest.tasks] == ["y4"] and rest.recovered == ["lsus"]


def test_a_renewal_survives_a_slots_key_of_the_wrong_type(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    limits = json.dumps({"lim": {"c": 2}})
    subject.add("a", task_name="lim")
    token = subject.claim(limits=limits).tasks[0]["token"]
    raw.set(subject.keys.prefix + "slots:lim", "x")
    assert run(subject.backend.extend({"a": token}, 30)).lost == []
    assert raw.zscore(subject.keys.prefix + "slots:lim", "a") is not None


def test_a_malformed_parked_task_is_set_aside_alone(redis_subject: Subject) -> None:
    subject = redis_subject
    raw = subject.needs_redis()
    limits = json.dumps({"lim": {"c": 1}})
    for uuid in ("a", "bad", "c"):
        subject.add(uuid, task_name="lim")
    claimed = subject.claim(limits=limits)
    assert [t["uuid"] for t in claimed.tasks] == ["a"]
    raw.hset(subject.keys.task("bad"), "priority", "high")
    assert subject.finish("a", claimed.tasks[0]["token"])
    assert [t["uuid"] for t in subject.claim(limits=limits).tasks] == ["c"]
    [letter] = run(subject.backend.dead_letters())
    assert letter["uuid"] == "bad" and "bad priority" in letter["reason"]


def test_the_record_keeps_when_an_attempt_was_queued_started_and_ended(subject: Subject) -> None:
    subject.add("a")
    queued = run(subject.backend.get("a"))
    assert queued is not None and float(queued["enqueued_at"]) > 0
    assert not queued.get("started_at")
    token = subject.claim().tasks[0]["token"]
    running = run(subject.backend.get("a"))
    assert running is not None and not running["finished_at"]
    assert float(running["started_at"]) >= float(queued["enqueued_at"])
    time.sleep(0.02)
    # A retry: it ends this attempt, and the next one is queued when it falls due.
    assert subject.finish("a", token, status="retry", delay=0.05)
    retried = run(subject.backend.get("a"))
    assert retried is not None
    assert float(retried["finished_at"]) >= float(running["started_at"]) + 0.015
    time.sleep(0.1)
    again = subject.claim().tasks[0]
    second = run(subject.backend.get("a"))
    assert second is not None and not second["finished_at"]
    assert float(second["enqueued_at"]) >= float(retried["finished_at"]) + 0.04
    # Queued as of when it fell due, not of the claim that moved it: it waited since.
    assert float(second["started_at"]) >= float(second["enqueued_at"]) + 0.03
    assert subject.finish("a", again["token"])
    done = run(subject.backend.get("a"))
    assert done is not None and float(done["finished_at"]) >= float(second["started_at"])
