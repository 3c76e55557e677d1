"""The global config's part of the backend contract (``ConfigBackend``), on every kind:
namespaces of text values, and the heartbeats that show a worker alive."""

from __future__ import annotations

import json
import time

from tests.backends.support import Subject, run


def test_config_values_round_trip_by_namespace_and_key(subject: Subject) -> None:
    b = subject.backend
    assert run(b.config_get("app", "mode")) is None
    assert run(b.config_get_all("app")) == {}
    run(b.config_set("app", "mode", '"fast"'))
    run(b.config_set("app", "limit", "10"))
    run(b.config_set("other", "mode", '"slow"'))
    # Text in, the same text out: the config encodes JSON, the backend keeps it as is.
    assert run(b.config_get("app", "mode")) == '"fast"'
    run(b.config_set("app", "mode", '"safe"'))
    assert run(b.config_get_all("app")) == {"mode": '"safe"', "limit": "10"}
    assert run(b.config_get_all("other")) == {"mode": '"slow"'}
    assert run(b.config_get("other", "limit")) is None


def test_a_config_key_is_deleted_once_and_the_rest_stay(subject: Subject) -> None:
    b = subject.backend
    run(b.config_set("app", "a", "1"))
    run(b.config_set("app", "b", "2"))
    assert run(b.config_delete("app", "a")) is True
    assert run(b.config_delete("app", "a")) is False
    assert run(b.config_delete("nowhere", "a")) is False
    assert run(b.config_get("app", "a")) is None
    assert run(b.config_get_all("app")) == {"b": "2"}


def test_config_keys_are_matched_by_a_glob_within_one_namespace(subject: Subject) -> None:
    b = subject.backend
    for key in ("worker:1", "worker:2", "workers", "queue:emails"):
        run(b.config_set("app", key, key.upper()))
    run(b.config_set("other", "worker:3", "X"))
    assert run(b.config_get_match("app", "worker:*")) == {
        "worker:1": "WORKER:1",
        "worker:2": "WORKER:2",
    }
    assert run(b.config_get_match("app", "work?rs")) == {"workers": "WORKERS"}
    assert run(b.config_get_match("app", "nothing*")) == {}
    assert run(b.config_get_match("empty", "*")) == {}


def test_a_worker_is_shown_while_its_status_beats_and_gone_when_cleared(
    subject: Subject,
) -> None:
    b = subject.backend
    alive = {"id": "w1", "state": "running", "tasks": 2}
    run(b.set_status("w1", json.dumps(alive), 30))
    run(b.set_status("w2", json.dumps({"id": "w2"}), 30))
    assert sorted(w["id"] for w in run(b.stats()).workers) == ["w1", "w2"]
    [shown] = [w for w in run(b.stats()).workers if w["id"] == "w1"]
    assert shown == alive
    # A worker that stops says so: gone at once, not when its heartbeat runs out.
    run(b.clear_status("w1"))
    assert [w["id"] for w in run(b.stats()).workers] == ["w2"]
    run(b.clear_status("w1"))  # twice (a stop retried) is no error
    # A worker that stops beating (it died) is gone when its heartbeat's ttl ends.
    run(b.set_status("w2", json.dumps({"id": "w2"}), 0.2))
    time.sleep(0.3)
    assert run(b.stats()).workers == []
