"""The schedules' part of the backend contract (``SchedulerBackend``), on every kind:
a cursor moved atomically with its tick's enqueue, so however many schedulers race a
tick runs once; and the schedules added at run time, which wake every scheduler."""

from __future__ import annotations

import asyncio
import time

from qtasks_core.keys import SCHEDULES_NAMESPACE
from tests.backends.support import Subject, record, run, uuids

# -- ticks -----------------------------------------------------------------------------------


def test_a_due_tick_runs_once_however_many_schedulers_race_for_it(subject: Subject) -> None:
    b = subject.backend
    assert run(b.cursor("beat")) == {}  # never run
    ticked, at = run(b.tick("beat", None, 1_000, None, None))
    assert ticked == "moved" and abs(at - time.time() * 1000) < 5_000  # the backend's ms
    assert run(b.cursor("beat")) == {"next": "1000"}
    # Two schedulers read the cursor at 1000 and both fire that tick: one enqueues.
    task = ("periodic:beat:1000", record("beat"), 0)
    assert run(b.tick("beat", 1_000, 2_000, 1_000, task))[0] == "moved"
    assert run(b.tick("beat", 1_000, 2_000, 1_000, task))[0] == "lost"
    assert run(b.cursor("beat")) == {"next": "2000", "last": "1000"}
    assert uuids(subject.claim()) == ["periodic:beat:1000"]
    # A tick not yet due by the backend's clock fires nothing, whatever the caller's.
    future = int(time.time() * 1000) + 60_000
    later = ("periodic:beat:future", record("beat"), 0)
    assert run(b.tick("beat", 2_000, future + 1_000, future, later))[0] == "lost"
    assert run(b.get("periodic:beat:future")) is None
    # A skipped tick moves the cursor and enqueues nothing.
    assert run(b.tick("beat", 2_000, 3_000, None, None))[0] == "moved"
    assert run(b.cursor("beat")) == {"next": "3000", "last": "1000"}
    assert subject.claim().tasks == []
    assert run(b.cursor("other")) == {}  # one cursor per schedule


# -- schedules added at run time -------------------------------------------------------------


def test_definitions_saved_are_the_ones_the_schedulers_read(subject: Subject) -> None:
    b = subject.backend
    hourly, minutely = '{"every": 3600.0}', '{"every": 60.0}'
    assert run(b.config_get_all(SCHEDULES_NAMESPACE)) == {}
    assert run(b.save_schedule("beat", hourly)) is False
    assert run(b.save_schedule("report", minutely)) is False
    assert run(b.config_get_all(SCHEDULES_NAMESPACE)) == {"beat": hourly, "report": minutely}
    assert run(b.save_schedule("beat", None)) is True
    assert run(b.config_get_all(SCHEDULES_NAMESPACE)) == {"report": minutely}


def test_a_tick_of_a_removed_or_replaced_schedule_writes_nothing(subject: Subject) -> None:
    b = subject.backend
    hourly, minutely = '{"every": 3600.0}', '{"every": 60.0}'
    assert run(b.save_schedule("beat", hourly)) is False
    assert run(b.tick("beat", None, 1_000, None, None, hourly))[0] == "moved"
    assert run(b.save_schedule("beat", hourly)) is True  # the same again: nothing changes
    assert run(b.cursor("beat"))["next"] == "1000"
    # Replaced: a scheduler still holding the old definition fires nothing, and the new
    # one starts afresh (its next tick dropped, its last run kept).
    assert run(b.save_schedule("beat", minutely)) is True
    assert "next" not in run(b.cursor("beat"))
    task = ("periodic:beat:500", record(), 0)
    assert run(b.tick("beat", None, 1_000, 500, task, hourly))[0] == "stale"
    # Removed: not even the current definition ticks any more.
    assert run(b.save_schedule("beat", None)) is True
    assert run(b.tick("beat", None, 1_000, 500, task, minutely))[0] == "stale"
    assert run(b.get("periodic:beat:500")) is None
    assert run(b.save_schedule("beat", None)) is False
    # A schedule declared in code (no definition given) is not checked.
    assert run(b.tick("beat", None, 1_000, 500, task))[0] == "moved"
    assert run(b.get("periodic:beat:500")) is not None


def test_a_schedule_change_wakes_every_waiter_at_once(subject: Subject) -> None:
    b = subject.backend

    async def scenario() -> tuple[str, list[str], float, str]:
        before = await b.wait_schedules("0", 0.01)
        waiters = [asyncio.ensure_future(b.wait_schedules(before, 10)) for _ in range(3)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await b.save_schedule("beat", '{"every": 1.0}')
        woken = await asyncio.gather(*waiters)
        took = time.monotonic() - started
        # Nothing newer than the latest change: the wait times out with what it was given.
        return before, woken, took, await b.wait_schedules(woken[0], 0.05)

    before, woken, took, again = run(scenario())
    assert len(set(woken)) == 1 and woken[0] != before
    assert took < 2.0, took
    assert again == woken[0]
    # A change made while nobody waited is seen by the next wait, at once.
    run(b.save_schedule("beat", None))
    assert run(b.wait_schedules(woken[0], 10)) not in (before, woken[0])


def test_a_schedule_changes_key_of_the_wrong_type_is_replaced(redis_subject: Subject) -> None:
    subject = redis_subject
    subject.needs_redis().set(subject.keys.schedule_changes, "oops")
    b = subject.backend
    assert run(b.wait_schedules("0", 0.05)) == "0"
    subject.needs_redis().set(subject.keys.schedule_changes, "oops")
    assert run(b.save_schedule("beat", '{"every": 1.0}')) is False
    assert run(b.wait_schedules("0", 1)) != "0"
