"""The in-memory backend expires what Redis expires, on the same rules: records and
their done tokens (a result's ttl), a task's event stream (a day after its last
progress; with its record, or a day, after its end), a unique key let go at its
``unique_until``, rate-limit windows (two windows on), worker heartbeats, the trees of
ended workflows, and the task list's indexes trimmed now and then (one end in 32).

The backend reads ``time.time()`` through its module: a fake clock stands in for it,
so a day passes at once. What Redis would have deleted is looked for in the backend's
own dicts: in memory there is no ``redis-cli``.
"""

from __future__ import annotations

import json
import time
from typing import Any, TypeVar

import pytest

from qtasks_core.backends import MemoryBackend
from qtasks_core.backends import memory as memory_module
from tests.backends.support import record, run

T = TypeVar("T")

DAY = 86400.0


class Clock:
    """Stands in for the ``time`` module the backend reads ``time.time()`` from."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    # 1000000001 ms: not a multiple of 32, so no end trims the indexes unless a test
    # says so (see test_the_task_list_indexes_are_trimmed_now_and_then_past_the_ttl).
    fake = Clock(1_000_000.001)
    monkeypatch.setattr(memory_module, "time", fake)
    return fake


class Mem:
    def __init__(self) -> None:
        self.b = MemoryBackend()

    def add(self, uuid: str, name: str = "job", **extra: str) -> None:
        assert isinstance(run(self.b.enqueue(uuid, record(name, **extra), 0)), float)

    def claim(self, uuid: str, **kw: Any) -> str:
        claimed = run(self.b.claim(10, "w1", 30.0, 5, only=uuid, **kw))
        assert [t["uuid"] for t in claimed.tasks] == [uuid]
        return str(claimed.tasks[0]["token"])

    def finish(self, uuid: str, token: str, ttl: float | None = None) -> None:
        fields = {"status": "success", "returning": "null"}
        assert run(self.b.finish(uuid, token, fields, ttl, None))

    def events(self, uuid: str) -> list[str]:
        return [kind for _, kind, _ in run(self.b.events(uuid, "0", 0))]


# -- records ---------------------------------------------------------------------------------


def test_an_expired_record_frees_its_uuid_for_a_new_enqueue(clock: Clock) -> None:
    m = Mem()
    m.add("a")
    m.finish("a", m.claim("a"), ttl=1)
    assert run(m.b.enqueue("a", record(), 0)) is False  # still kept: a repeat adds nothing
    clock.advance(1.1)
    # As EXISTS after the TTL: the uuid is free, without a read in between.
    assert isinstance(run(m.b.enqueue("a", record(), 0)), float)
    assert run(m.b.get("a"))["status"] == "new"  # type: ignore[index]


def test_a_purge_without_a_ttl_keeps_each_record_its_own(clock: Clock) -> None:
    m = Mem()
    m.add("own", queue="q", ttl="10")
    m.add("kept", queue="q")
    assert run(m.b.purge_queue("q")) == 2
    clock.advance(9.9)
    assert run(m.b.get("own")) is not None
    clock.advance(0.2)
    # As lib.lua's cancel: no ttl given, the record's own applies.
    assert run(m.b.get("own")) is None
    assert run(m.b.get("kept"))["status"] == "cancel"  # type: ignore[index]


def test_a_dead_letter_is_kept_without_a_ttl_and_its_events_for_a_day(clock: Clock) -> None:
    m = Mem()
    m.add("d")
    token = m.claim("d")
    assert run(m.b.watch_start("d")) == "process"
    assert run(m.b.dead_letter("d", token, "unreadable", ""))
    assert m.events("d") == ["final"]
    clock.advance(DAY + 1)
    assert m.events("d") == []  # the stream: EXPIRE 86400, its record having no TTL
    assert "d" not in m.b._events
    assert run(m.b.get("d"))["status"] == "error"  # type: ignore[index]
    assert [letter["uuid"] for letter in run(m.b.dead_letters())] == ["d"]


# -- event streams (app.watch, progress) -----------------------------------------------------


def test_a_watched_tasks_events_expire_with_its_record(clock: Clock) -> None:
    m = Mem()
    m.add("a")
    token = m.claim("a")
    assert run(m.b.watch_start("a")) == "process"
    assert run(m.b.progress("a", '{"value": 0.5}', token))
    m.finish("a", token, ttl=10)
    assert m.events("a") == ["progress", "final"]
    clock.advance(9.9)
    assert m.events("a") == ["progress", "final"]
    clock.advance(0.2)
    assert m.events("a") == []
    assert "a" not in m.b._events and run(m.b.get("a")) is None
    assert "a" not in m.b._event_signals  # the reader that found nothing left no waiter


def test_a_watched_task_ended_without_a_ttl_keeps_its_events_a_day(clock: Clock) -> None:
    m = Mem()
    m.add("a")
    token = m.claim("a")
    assert run(m.b.watch_start("a")) == "process"
    m.finish("a", token)
    clock.advance(DAY - 1)
    assert m.events("a") == ["final"]
    clock.advance(2)
    assert m.events("a") == []
    assert "a" not in m.b._events
    assert run(m.b.get("a")) is not None  # the record has no TTL


def test_progress_keeps_the_stream_a_day_after_the_last_report(clock: Clock) -> None:
    m = Mem()
    m.add("a")
    token = m.claim("a")
    assert run(m.b.progress("a", '{"value": 0.1}', token))
    clock.advance(50_000)  # no claim runs meanwhile: its lease is not recovered
    assert run(m.b.progress("a", '{"value": 0.2}', token))  # EXPIRE 86400 again
    clock.advance(40_000)  # a day after the first report, not after the last
    assert m.events("a") == ["progress", "progress"]
    clock.advance(DAY - 40_000 + 1)
    assert m.events("a") == []
    assert "a" not in m.b._events
    assert run(m.b.get("a"))["status"] == "process"  # type: ignore[index]


def test_renewals_add_no_heap_entry(clock: Clock) -> None:
    m = Mem()
    m.add("a")
    token = m.claim("a")
    for i in range(500):
        assert run(m.b.progress("a", f'{{"value": {i}}}', token))
        run(m.b.set_status("w1", json.dumps({"id": "w1"}), 10))
        clock.advance(0.5)
    # One entry per key: a renewal only moves the key's time on (checked when due).
    assert len(m.b._deadlines) <= 2
    assert m.events("a") == ["progress"] * 100  # the last 100 kept (MAXLEN ~ 100)


# -- unique keys -----------------------------------------------------------------------------


def test_a_unique_key_is_let_go_at_its_unique_until_after_the_task_ends(clock: Clock) -> None:
    m = Mem()
    m.add("a", unique_key="k", unique_for="5000")
    token = m.claim("a")
    clock.advance(1)
    m.finish("a", token)  # no ttl: the record stays
    clock.advance(3.9)
    assert run(m.b.get("a")) is not None
    assert m.b._unique == {"k": "a"}
    assert run(m.b.enqueue("b", record(unique_key="k"), 0)) == "a"  # still held
    clock.advance(0.2)
    assert run(m.b.get("a")) is not None
    assert m.b._unique == {}  # PEXPIRE until unique_until: gone
    assert isinstance(run(m.b.enqueue("b", record(unique_key="k"), 0)), float)


def test_a_unique_key_without_unique_for_goes_when_its_task_ends(clock: Clock) -> None:
    m = Mem()
    m.add("a", unique_key="k")
    assert m.b._unique == {"k": "a"}
    m.finish("a", m.claim("a"))
    assert m.b._unique == {}  # DEL at the end


def test_a_unique_key_taken_again_loses_the_expiry_of_the_last_holder(clock: Clock) -> None:
    m = Mem()
    m.add("a", unique_key="k", unique_for="5000")
    m.finish("a", m.claim("a"), ttl=1)
    clock.advance(1.1)
    assert run(m.b.get("a")) is None  # its holder is gone: the key is free
    m.add("b", unique_key="k")
    clock.advance(5)
    assert run(m.b.get("b")) is not None
    assert m.b._unique == {"k": "b"}  # SET without an expiry: kept while b lives


# -- rate limits -----------------------------------------------------------------------------


def test_a_rate_window_expires_two_windows_after_it_started(clock: Clock) -> None:
    m = Mem()
    limits = json.dumps({"lim": {"r": 1, "p": 1000}})
    m.add("a", "lim")
    m.claim("a", limits=limits)
    window = ("lim", int(clock.now * 1000) // 1000)
    assert m.b._rates == {window: 1}
    clock.advance(1.5)
    run(m.b.claim(10, "w1", 30.0, 5, limits=limits))
    assert m.b._rates == {window: 1}
    clock.advance(0.6)
    run(m.b.claim(10, "w1", 30.0, 5, limits=limits))
    assert m.b._rates == {}  # PEXPIRE 2 * period


# -- worker heartbeats -----------------------------------------------------------------------


def test_a_worker_heartbeat_expires_with_its_ttl(clock: Clock) -> None:
    m = Mem()
    run(m.b.set_status("w1", json.dumps({"id": "w1"}), 10))
    clock.advance(5)
    run(m.b.set_status("w1", json.dumps({"id": "w1", "beat": 2}), 10))
    clock.advance(9.9)
    assert run(m.b.stats()).workers == [{"id": "w1", "beat": 2}]
    clock.advance(0.2)
    assert run(m.b.stats()).workers == []
    assert m.b._status == {}  # SET ... PX: the heartbeat is gone, not only hidden


# -- workflows -------------------------------------------------------------------------------


def start_workflow(m: Mem, wf: str, **extra: str) -> None:
    now = f"{time.time():.6f}"
    own = {**record("flow"), "status": "process", "updated_at": now, "workflow": "1", **extra}
    nodes = {"r": json.dumps({"k": "t", "f": record("step"), "p": 0})}
    assert run(m.b.start_workflow(wf, own, nodes))
    m.finish(f"{wf}:r", m.claim(f"{wf}:r"), ttl=10)
    assert run(m.b.get(wf))["status"] == "success"  # type: ignore[index]


def test_an_ended_workflows_tree_expires_with_its_record(clock: Clock) -> None:
    m = Mem()
    start_workflow(m, "wf", ttl="10")
    start_workflow(m, "kept")  # no ttl: its record and tree are kept
    listed = {uuid for uuid, _, _ in run(m.b.index_page("workflows", None, 10))}
    assert listed == {"wf", "kept"}
    clock.advance(9.9)
    assert "r" in run(m.b.workflow_nodes("wf"))
    clock.advance(0.2)
    assert run(m.b.workflow_nodes("wf")) == {}  # wf:<id> EXPIRE ttl
    assert "wf" not in m.b._workflows and run(m.b.get("wf")) is None
    assert [uuid for uuid, _, _ in run(m.b.index_page("workflows", None, 10))] == ["kept"]
    assert "r" in run(m.b.workflow_nodes("kept"))


# -- the task list's indexes -----------------------------------------------------------------


def test_the_task_list_indexes_are_trimmed_now_and_then_past_the_ttl(clock: Clock) -> None:
    m = Mem()

    def end(uuid: str, at: float) -> None:
        clock.now = at
        m.add(uuid)
        m.finish(uuid, m.claim(uuid), ttl=10)

    def indexed(index: str) -> list[str]:
        entries = [uuid for _, uuid in m.b._index[index]]
        assert sorted(entries) == sorted(m.b._index_at[index])
        return entries

    end("a", 1_000_000.001)
    page = run(m.b.index_page("final:success", None, 10))
    assert [uuid for uuid, _, _ in page] == ["a"]
    end("c", 1_000_005.001)
    end("d", 1_000_011.001)  # ends at ...001 ms: not one in 32, trims nothing
    assert run(m.b.get("a")) is None  # expired
    assert indexed("final:success") == ["a", "c", "d"]  # read as gone, or trimmed later
    end("b", 1_000_011.008)  # ends at a multiple of 32 ms: trims what ended 10 s before
    for index in ("final:success", "name:job"):
        assert indexed(index) == ["c", "d", "b"]
