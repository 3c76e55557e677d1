"""The history of finished tasks (``history_add`` / ``history_read``), on every kind:
figures add up per bucket whoever reports them, are read back from a moment on, are
kept for a day and a bit, and a history key someone overwrote is replaced without
losing the hours beside it."""

from __future__ import annotations

import pytest

from qtasks_core.backends import MemoryBackend
from qtasks_core.backends import memory as memory_module
from qtasks_core.keys import HISTORY_MINUTES_SPAN, HISTORY_SPAN, HISTORY_TTL
from tests.backends.support import Subject, run
from tests.backends.test_memory_expiry import Clock


def _bucket(subject: Subject) -> int:
    """The bucket the backend's clock is in now (a report of nothing says it)."""
    now = run(subject.backend.history_add({}))
    return int(now // 10) * 10


def test_figures_add_up_per_bucket_and_are_read_from_a_moment_on(subject: Subject) -> None:
    b = subject.backend
    now = _bucket(subject)
    earlier = now - 10
    # Two workers report the same bucket: their counts add up, bins too.
    b_now = run(b.history_add({now: {"success": 2, "run_n": 2, "run_us": 300, "run_3": 2}}))
    assert now <= b_now < now + 3600
    run(b.history_add({now: {"success": 1, "error": 1, "run_3": 1}, earlier: {"cancel": 1}}))
    assert run(b.history_read(earlier)) == {
        earlier: {"cancel": 1},
        now: {"success": 3, "error": 1, "run_n": 2, "run_us": 300, "run_3": 3},
    }
    assert run(b.history_read(now)) == {
        now: {"success": 3, "error": 1, "run_n": 2, "run_us": 300, "run_3": 3}
    }
    assert run(b.history_read(now + 10)) == {}


def test_a_read_spans_the_hours_asked_for(subject: Subject) -> None:
    b = subject.backend
    now = _bucket(subject)
    hours_ago = [now - 3600 * h for h in (0, 1, 2, 5)]
    run(b.history_add({at: {"success": 1} for at in hours_ago}))
    since = now - 3 * 3600
    read = run(b.history_read(since))
    assert sorted(read) == sorted(at for at in hours_ago if at >= since)
    assert sorted(run(b.history_read(now - 6 * 3600))) == sorted(hours_ago)


def test_a_read_per_minute_adds_the_minutes_buckets_up(subject: Subject) -> None:
    b = subject.backend
    now = _bucket(subject)
    minute = now - now % 60
    run(b.history_add({minute: {"success": 1, "run_4": 1}, minute + 50: {"success": 2}}))
    run(b.history_add({minute - 60: {"error": 1}, minute + 10: {"run_4": 2}}))
    assert run(b.history_read(minute - 60, 60)) == {
        minute - 60: {"error": 1},
        minute: {"success": 3, "run_4": 3},
    }
    assert run(b.history_read(minute, 60)) == {minute: {"success": 3, "run_4": 3}}


def test_nothing_is_written_for_a_report_of_nothing(subject: Subject) -> None:
    now = _bucket(subject)
    run(subject.backend.history_add({now: {"success": 0}}))
    assert run(subject.backend.history_read(now - 60)) == {}


def test_a_history_key_of_another_type_is_replaced_and_the_other_hours_kept(
    redis_subject: Subject,
) -> None:
    raw = redis_subject.needs_redis()
    b = redis_subject.backend
    now = _bucket(redis_subject)
    hour = now - now % HISTORY_SPAN
    before = now - HISTORY_SPAN
    minutes = redis_subject.keys.history_minutes(str(now - now % HISTORY_MINUTES_SPAN))
    raw.set(minutes, "not a hash either")
    run(b.history_add({before: {"success": 4}}))
    raw.set(redis_subject.keys.history(str(hour)), "not a hash")
    run(b.history_add({now: {"error": 1}, before: {"success": 1}}))
    assert run(b.history_read(before)) == {before: {"success": 5}, now: {"error": 1}}
    assert run(b.history_read(now - now % 60, 60)) == {now - now % 60: {"error": 1}}
    assert raw.type(minutes) == b"hash"
    # Bounded: each hash expires a day and a bit after its last write.
    ttl = raw.ttl(redis_subject.keys.history(str(hour)))
    assert HISTORY_TTL - 60 < ttl <= HISTORY_TTL
    # A field written by hand that holds no number starts again from the figure.
    raw.hset(redis_subject.keys.history(str(hour)), f"{now}:success", "garbage")
    run(b.history_add({now: {"success": 2}}))
    assert run(b.history_read(now))[now]["success"] == 2


def test_the_memory_history_forgets_what_redis_would_have_expired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(1_000_000.0)
    monkeypatch.setattr(memory_module, "time", clock)
    b = MemoryBackend()
    now = int(run(b.history_add({})) // 10) * 10
    run(b.history_add({now: {"success": 1}}))
    clock.advance(HISTORY_TTL - 60)
    assert run(b.history_read(now)) == {now: {"success": 1}}
    clock.advance(120)
    assert run(b.history_read(now)) == {}
    run(b.history_add({}))  # a write drops what expired, as Redis would have
    assert b._history == {}
