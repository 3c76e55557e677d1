"""The storage's part of the backend contract (``StorageBackend``), on every kind:
reading records one, many or a page at a time, a task's own events, the app's stream
of status changes, and clearing finished work away."""

from __future__ import annotations

import asyncio
import json
import time

from qtasks_core.schemas import StatusChange
from tests.backends.support import Subject, record, run


def test_many_records_are_read_in_the_order_asked_with_none_for_the_missing(
    subject: Subject,
) -> None:
    b = subject.backend
    subject.add("a")
    subject.add("b", priority=3)
    got = run(b.get_many(["b", "missing", "a", "b"]))
    assert [r and r["uuid"] for r in got] == ["b", None, "a", "b"]
    assert got[0] is not None and got[0]["priority"] == "3"
    assert got[2] == run(b.get("a"))
    assert run(b.get_many([])) == []
    assert [t["uuid"] for t in subject.claim(n=1).tasks] == ["a"]
    running, queued = run(b.get_many(["a", "b"]))
    assert running is not None and running["status"] == "process"
    assert queued is not None and queued["status"] == "new"
    assert "claim" not in running  # the claim's fence is the backend's: no reader sees it


def test_a_few_fields_of_many_records_are_read_as_asked(subject: Subject) -> None:
    # What a search reads of each record in its window: only the fields it looks at.
    b = subject.backend
    subject.add("a")
    subject.add("b", priority=3)
    got = run(b.get_many(["b", "missing", "a"], ["status", "priority", "queue", "claim"]))
    # A field the record lacks is left out (a record of the default queue has no
    # queue field), and the claim's fence is never read.
    assert got == [{"uuid": "b", "status": "new", "priority": "3"}, None,
                   {"uuid": "a", "status": "new", "priority": "0"}]  # fmt: skip
    # A record with none of the fields asked for counts as none.
    assert run(b.get_many(["a"], ["no_such_field"])) == [None]
    assert run(b.get_many(["a"], ["claim"])) == run(b.get_many(["a"], [])) == [None]
    # Claimed (the lower priority first), its claim is held and still not shown.
    assert [t["uuid"] for t in subject.claim(n=1).tasks] == ["a"]
    assert run(b.get_many(["a"], ["status", "claim"])) == [{"uuid": "a", "status": "process"}]
    page = run(b.index_page("queue:default", None, 10, ["status", "priority"]))
    assert [(u, r) for u, _, r in page] == [("b", {"uuid": "b", "status": "new", "priority": "3"})]


def test_all_records_are_read_up_to_a_limit(subject: Subject) -> None:
    b = subject.backend
    assert run(b.get_all(10)) == []
    for uuid in ("a", "b", "c"):
        subject.add(uuid)
    every = run(b.get_all(10))
    assert sorted(r["uuid"] for r in every) == ["a", "b", "c"]
    assert all(r["task_name"] == "job" for r in every)
    some = run(b.get_all(2))
    assert len(some) == 2 and {r["uuid"] for r in some} <= {"a", "b", "c"}


def _page_through(subject: Subject, index: str, limit: int) -> list[str]:
    """Every uuid of ``index``, read ``limit`` at a time as the task list reads it."""
    walked: list[str] = []
    after: tuple[float, str] | None = None
    while page := run(subject.backend.index_page(index, after, limit)):
        assert len(page) <= limit
        walked += [uuid for uuid, _, _ in page]
        uuid, score, _ = page[-1]
        after = (score, uuid)
    return walked


def test_a_queue_is_paged_in_claim_order(subject: Subject) -> None:
    for uuid, priority in [("late", 5), ("first", -1), ("a", 0), ("b", 0), ("c", 0)]:
        subject.add(uuid, priority)
    subject.add("elsewhere", queue="emails")
    assert _page_through(subject, "queue:default", 2) == ["first", "a", "b", "c", "late"]
    assert _page_through(subject, "queue:emails", 2) == ["elsewhere"]
    [(uuid, _, shown)] = run(subject.backend.index_page("queue:default", None, 1))
    assert uuid == "first" and shown is not None and shown["priority"] == "-1"
    assert [t["uuid"] for t in subject.claim(n=5).tasks] == ["first", "a", "b", "c", "late"]
    assert run(subject.backend.index_page("queue:default", None, 10)) == []


def test_running_and_delayed_tasks_are_paged_by_their_deadlines(subject: Subject) -> None:
    subject.add("long")
    subject.claim(n=1, lease=60)
    subject.add("short")
    subject.claim(n=1, lease=30)
    assert _page_through(subject, "running", 1) == ["short", "long"]
    rows = run(subject.backend.index_page("running", None, 10))
    # Scored by the lease's end, in ms.
    assert time.time() * 1000 + 25_000 < rows[0][1] < time.time() * 1000 + 35_000
    subject.add("later", due_in="60000")
    subject.add("sooner", due_in="30000")
    assert _page_through(subject, "scheduled", 1) == ["sooner", "later"]
    [(_, due, _), _] = run(subject.backend.index_page("scheduled", None, 10))
    assert abs(due - (time.time() * 1000 + 30_000)) < 5_000


def test_finished_tasks_are_paged_newest_first_and_a_gone_record_leaves(
    subject: Subject,
) -> None:
    b = subject.backend
    for uuid in ("t1", "t2", "t3", "t4"):
        subject.add(uuid)
        token = subject.claim(n=1).tasks[0]["token"]
        assert subject.finish(uuid, token)
        time.sleep(0.005)  # ends a few ms apart: the order is theirs
    assert _page_through(subject, "final:success", 3) == ["t4", "t3", "t2", "t1"]
    assert _page_through(subject, "name:job", 1) == ["t4", "t3", "t2", "t1"]
    # Deleted (or expired) records: their entries are shown once as gone, then dropped.
    assert run(b.delete_finished()) == 4
    page = run(b.index_page("final:success", None, 10))
    assert [(uuid, rec) for uuid, _, rec in page] == [(u, None) for u in ("t4", "t3", "t2", "t1")]
    assert run(b.index_page("final:success", None, 10)) == []


def test_deleting_finished_tasks_keeps_the_live_ones(subject: Subject) -> None:
    b = subject.backend
    for uuid in ("done", "failed", "running"):
        subject.add(uuid)
    tokens = {t["uuid"]: t["token"] for t in subject.claim().tasks}
    subject.add("queued")
    assert subject.finish("done", tokens["done"])
    assert subject.finish("failed", tokens["failed"], status="error")
    assert run(b.delete_finished()) == 2
    assert run(b.get_many(["done", "failed"])) == [None, None]
    assert [r and r["status"] for r in run(b.get_many(["running", "queued"]))] == [
        "process",
        "new",
    ]
    assert run(b.delete_finished()) == 0
    # What is left still runs and ends as before.
    assert subject.finish("running", tokens["running"])


def test_flushing_forgets_everything_of_the_app_and_it_starts_afresh(subject: Subject) -> None:
    b = subject.backend
    b.set_feed(None, 100)
    subject.add("queued")
    subject.add("delayed", due_in="60000")
    subject.add("poison")
    token = subject.claim(only="poison").tasks[0]["token"]
    assert run(b.dead_letter("poison", token, "unreadable", ""))
    run(b.config_set("app", "mode", "1"))
    assert run(b.tick("beat", None, 1_000, None, None))[0] == "moved"
    assert run(b.status_events_last()) != "0-0"
    run(b.flush_all())
    assert run(b.get_many(["queued", "delayed", "poison"])) == [None, None, None]
    stats = run(b.stats())
    assert (stats.queued, stats.scheduled, stats.running, stats.dead) == ({}, 0, 0, 0)
    assert run(b.dead_letters()) == [] and run(b.dead_count()) == 0
    assert run(b.config_get_all("app")) == {}
    assert run(b.cursor("beat")) == {}
    assert run(b.status_events_last()) == "0-0"
    assert subject.claim().tasks == []
    subject.add("queued")  # the same uuid is new again
    assert [t["uuid"] for t in subject.claim().tasks] == ["queued"]


# -- a task's own events -----------------------------------------------------------------


def test_a_watched_task_shows_its_progress_then_its_end(subject: Subject) -> None:
    b = subject.backend
    assert run(b.watch_start("nobody")) == ""
    subject.add("a")
    assert run(b.watch_start("a")) == "new"
    token = subject.claim().tasks[0]["token"]
    assert run(b.watch_start("a")) == "process"
    assert run(b.events("a", "0", 0.05)) == []
    assert run(b.progress("a", '{"value": 0.5}', token))
    [(first, kind, data)] = run(b.events("a", "0", 1))
    assert (kind, json.loads(data)) == ("progress", {"value": 0.5})
    assert subject.finish("a", token, result=7)
    # Only what came after the id given.
    [(last, kind, data)] = run(b.events("a", first, 1))
    assert kind == "final" and last != first
    final = json.loads(data)
    # The record's fields (the watcher knows whose): what app.watch yields at the end.
    assert (final["task_name"], final["status"], final["returning"]) == ("job", "success", "7")
    assert [e[1] for e in run(b.events("a", "0", 1))] == ["progress", "final"]
    assert run(b.events("a", last, 0.05)) == []
    assert run(b.watch_start("a")) == "success"  # it ended already


def test_an_unwatched_task_without_progress_has_no_events(subject: Subject) -> None:
    subject.add("a")
    token = subject.claim().tasks[0]["token"]
    assert subject.finish("a", token)
    assert run(subject.backend.events("a", "0", 0.05)) == []


def test_an_events_wait_wakes_when_the_task_moves_not_on_a_timer(subject: Subject) -> None:
    b = subject.backend
    subject.add("a")
    assert run(b.watch_start("a")) == "new"
    token = subject.claim().tasks[0]["token"]

    async def scenario() -> tuple[list[tuple[str, str, str]], float]:
        waiter = asyncio.ensure_future(b.events("a", "0", 5))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        assert await b.progress("a", '{"step": 1}', token)
        found = await waiter
        return found, time.monotonic() - started

    found, took = run(scenario())
    assert [(kind, data) for _, kind, data in found] == [("progress", '{"step": 1}')]
    assert took < 2.0, took


# -- the app's stream of status changes --------------------------------------------------


def _moves(changes: list[StatusChange]) -> list[tuple[str, str | None, str]]:
    return [(c.uuid, c.previous, c.status) for c in changes]


def test_the_event_stream_tells_each_change_once_after_an_id(subject: Subject) -> None:
    b = subject.backend
    assert run(b.status_events_last()) == "0-0"
    b.set_feed(None, 100)
    subject.add("a")
    token = subject.claim().tasks[0]["token"]
    assert subject.finish("a", token)
    every = run(b.status_events("0", 1))
    assert _moves(every) == [
        ("a", None, "new"),
        ("a", "new", "process"),
        ("a", "process", "success"),
    ]
    assert all(c.task_name == "job" and c.queue == "default" for c in every)
    assert every[-1].attempt == 1 and every[-1].worker == "w1"
    assert abs(every[-1].at - time.time()) < 5
    ids = [c.id for c in every]
    assert None not in ids and len(set(ids)) == 3
    assert run(b.status_events_last()) == ids[-1]
    # Read from an id: only what came after it, at most ``count``.
    assert _moves(run(b.status_events(ids[0], 1))) == _moves(every[1:])
    assert _moves(run(b.status_events("0", 1, count=1))) == _moves(every[:1])
    assert run(b.status_events(ids[-1], 0.05)) == []


def test_a_reader_from_now_on_wakes_with_the_next_change(subject: Subject) -> None:
    b = subject.backend
    b.set_feed(None, 100)
    subject.add("before")
    now = run(b.status_events_last())

    async def scenario() -> tuple[list[StatusChange], float]:
        reader = asyncio.ensure_future(b.status_events(now, 5))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await b.enqueue("after", record(), 0)
        return await reader, time.monotonic() - started

    found, took = run(scenario())
    assert _moves(found) == [("after", None, "new")]
    assert took < 2.0, took


def test_changes_go_to_the_sink_in_order_and_nowhere_without_a_feed(subject: Subject) -> None:
    b = subject.backend
    subject.add("unfed")
    told: list[list[StatusChange]] = []

    async def sink(changes: list[StatusChange]) -> None:
        told.append(changes)

    b.set_feed(sink, 0)
    subject.add("a")
    token = subject.claim(only="a").tasks[0]["token"]
    assert subject.finish("a", token, status="error")
    # One batch per call that changed something, each after its change was written.
    assert [_moves(batch) for batch in told] == [
        [("a", None, "new")],
        [("a", "new", "process")],
        [("a", "process", "error")],
    ]
    # A sink alone keeps no stream.
    assert run(b.status_events_last()) == "0-0"
    b.set_feed(None, 0)
    subject.add("after")
    assert len(told) == 3
    assert run(b.status_events_last()) == "0-0"
