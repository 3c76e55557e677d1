"""The audit log's part of the backend contract (``StorageBackend.audit_add`` and
``audit_read``), on every kind: the dashboard's actions, newest first, capped, and
never lost to a key someone wrote over by hand."""

from __future__ import annotations

import json

from tests.backends.support import Subject, run


def test_audit_entries_read_back_newest_first(subject: Subject) -> None:
    b = subject.backend
    assert run(b.audit_read(10)) == []
    for n in range(3):
        run(b.audit_add(json.dumps({"action": "retry", "n": n}), 100))
    # Text in, the same text out: the dashboard encodes the JSON, the backend keeps it.
    assert [json.loads(e)["n"] for e in run(b.audit_read(10))] == [2, 1, 0]
    assert [json.loads(e)["n"] for e in run(b.audit_read(2))] == [2, 1]


def test_the_audit_log_keeps_only_the_newest_entries(subject: Subject) -> None:
    b = subject.backend
    for n in range(12):
        run(b.audit_add(str(n), 5))
    assert run(b.audit_read(100)) == ["11", "10", "9", "8", "7"]
    # A smaller cap given later trims what is there as well.
    run(b.audit_add("12", 2))
    assert run(b.audit_read(100)) == ["12", "11"]


def test_a_key_written_over_by_hand_is_replaced_by_the_next_entry(redis_subject: Subject) -> None:
    b = redis_subject.backend
    redis_subject.needs_redis().set(redis_subject.keys.audit, "garbage")
    assert run(b.audit_read(10)) == []  # a read of garbage is none, not an error
    run(b.audit_add("after", 10))
    assert run(b.audit_read(10)) == ["after"]
