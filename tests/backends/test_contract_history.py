"""The backend's part of a task's attempt history: a retry and a recovery from a dead
worker keep the attempt that ended in the record's ``history`` (a JSON array, see
``schemas.Attempt``), on every kind; a success adds nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from qtasks_core.backends import Claimed
from qtasks_core.schemas import ATTEMPT_HISTORY_MAX
from tests.backends.support import Subject, recovered, run


def _record(subject: Subject, uuid: str) -> dict[str, str]:
    got = run(subject.backend.get(uuid))
    assert got is not None
    return got


def _history(subject: Subject, uuid: str) -> list[Any]:
    """The record's ``history`` as stored: a JSON array."""
    raw = _record(subject, uuid).get("history")
    return [] if raw is None else json.loads(raw)


def _fail(subject: Subject, uuid: str, token: str, error: str, delay: float) -> None:
    """End the running attempt with ``error``, to run again ``delay`` seconds later."""
    fields = {"status": "retry", "traceback": f"Traceback ...\n{error}", "error": error}
    assert run(subject.backend.finish(uuid, token, fields, None, delay)) is True


def _claim_when_due(subject: Subject, worker: str) -> dict[str, str]:
    """The task again, once its retry fell due."""
    for _ in range(200):
        claimed = subject.claim(worker=worker)
        if claimed.tasks:
            return claimed.tasks[0]  # type: ignore[no-any-return]
        time.sleep(0.01)
    raise AssertionError("the retry never fell due")


def test_each_retry_keeps_the_attempt_that_ended_and_a_success_adds_none(
    subject: Subject,
) -> None:
    subject.add("a")
    first = subject.claim(worker="w1").tasks[0]
    started = float(_record(subject, "a")["started_at"])
    _fail(subject, "a", first["token"], "ConnectionError: refused", 0.05)
    [entry] = _history(subject, "a")
    ended = float(_record(subject, "a")["finished_at"])
    assert entry == {
        "attempt": 1,
        "worker": "w1",
        "started_at": pytest.approx(started, abs=0.001),
        "finished_at": pytest.approx(ended, abs=0.001),
        "error": "ConnectionError: refused",
        "reason": "ConnectionError",
        "delay": pytest.approx(0.05, abs=0.001),
    }
    second = _claim_when_due(subject, "w2")
    assert second["attempts"] == "2"
    _fail(subject, "a", second["token"], "TimeoutError: slow", 0.02)
    third = _claim_when_due(subject, "w3")
    assert subject.finish("a", third["token"], result=7)
    history = _history(subject, "a")
    assert [(e["attempt"], e["worker"], e["reason"]) for e in history] == [
        (1, "w1", "ConnectionError"),
        (2, "w2", "TimeoutError"),
    ]
    assert history[0]["finished_at"] <= history[1]["started_at"] <= history[1]["finished_at"]
    # The last attempt is the record's own: the success wrote no entry.
    record = _record(subject, "a")
    assert (record["status"], record["attempts"], record["worker"]) == ("success", "3", "w3")


def test_a_recovery_from_a_dead_worker_keeps_its_attempt(subject: Subject) -> None:
    subject.add("a")
    subject.claim(lease=0.3, worker="gone")
    started = float(_record(subject, "a")["started_at"])

    def claim() -> Awaitable[Claimed]:
        return subject.backend.claim(1, "w2", 30, 5, alone=True)

    again = recovered(subject, 0.3, claim)
    assert [t["uuid"] for t in again.tasks] == ["a"]
    [entry] = _history(subject, "a")
    assert entry.get("error") is None and entry.get("delay") is None
    assert (entry["attempt"], entry["worker"], entry["reason"]) == (1, "gone", "lease_expired")
    assert entry["started_at"] == pytest.approx(started, abs=0.001)
    assert entry["started_at"] < entry["finished_at"] <= time.time() + 5
    assert _record(subject, "a")["worker"] == "w2"


def test_the_history_keeps_the_last_attempts_only(subject: Subject) -> None:
    subject.add("a")
    token = subject.claim(worker="w").tasks[0]["token"]
    for attempt in range(1, ATTEMPT_HISTORY_MAX + 3):
        _fail(subject, "a", token, f"KeyError: {attempt}", 0.001)
        token = _claim_when_due(subject, "w")["token"]
    history = _history(subject, "a")
    assert len(history) == ATTEMPT_HISTORY_MAX
    assert [e["attempt"] for e in history] == list(range(3, ATTEMPT_HISTORY_MAX + 3))


@pytest.mark.parametrize(
    "garbage",
    ["not json", '{"attempt": 1}', "7", '"text"', "[1e999]", "[" * 2000],
)
def test_a_history_someone_overwrote_is_replaced_not_fatal(subject: Subject, garbage: str) -> None:
    subject.add("a")
    token = subject.claim(worker="w").tasks[0]["token"]
    assert run(subject.backend.update("a", {"history": garbage}))
    _fail(subject, "a", token, "ValueError: x", 0.01)
    assert [e["attempt"] for e in _history(subject, "a")] == [1]
    assert _record(subject, "a")["status"] == "retry"


def test_entries_that_are_not_attempts_stay_for_the_reader_to_skip(subject: Subject) -> None:
    # An array is kept as it is: what is in it is the reader's to judge.
    subject.add("a")
    token = subject.claim(worker="w").tasks[0]["token"]
    assert run(subject.backend.update("a", {"history": '[1, "x"]'}))
    _fail(subject, "a", token, "ValueError: x", 0.01)
    assert [e if isinstance(e, int | str) else e["attempt"] for e in _history(subject, "a")] == [
        1,
        "x",
        1,
    ]
