"""The broker's and the owning app's parts of the backend contract (``BrokerBackend``,
``LifecycleBackend``), on every kind: connecting and letting go, waking a stopping
worker, migrating keys, and a workflow started as one tree that the engine walks."""

from __future__ import annotations

import asyncio
import json
import time

from tests.backends.support import Subject, record, run, uuids


def test_a_backend_starts_answers_and_closes_losing_nothing(subject: Subject) -> None:
    b = subject.backend
    assert b.location  # a place to name in the logs, whatever the kind

    async def session() -> bool:
        await b.start()
        alive = await b.ping()
        await b.enqueue("kept", record(), 0)
        await b.close()
        return alive

    assert run(session()) is True
    # The next use (another loop, as a new process of the same app) finds it all.
    assert run(b.ping()) is True
    assert [t["uuid"] for t in subject.claim().tasks] == ["kept"]
    run(b.close())
    run(b.close())  # closing what is closed is no error


def test_a_stopping_worker_is_woken_from_its_idle_wait(subject: Subject) -> None:
    b = subject.backend

    async def scenario() -> float:
        waiting = asyncio.ensure_future(b.wait_for_work(5.0, "w1", ["emails"]))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await b.wake("w1")
        await waiting
        return time.monotonic() - started

    took = run(scenario())
    assert took < 2.0, took


def test_an_app_without_keys_of_an_older_version_has_nothing_to_migrate(
    subject: Subject,
) -> None:
    subject.add("a")
    assert run(subject.backend.migrate_keys()) == (0, [])
    assert uuids(subject.claim()) == ["a"]  # its own keys stay where they are


# -- workflows -----------------------------------------------------------------------------


def _step(name: str, **options: object) -> str:
    return json.dumps({"k": "t", "f": record(name), "p": 0, **options})


def _workflow(ttl: str = "60") -> dict[str, str]:
    now = f"{time.time():.6f}"
    return {
        **record("flow"),
        "status": "process",
        "created_at": now,
        "workflow": "1",
        "ttl": ttl,
    }


def test_a_workflow_is_stored_as_its_tree_and_walked_by_the_engine(subject: Subject) -> None:
    b = subject.backend
    # chain(group(a, b), c): c gets [a's result, b's result] as its first argument.
    nodes = {
        "r": json.dumps({"k": "c", "n": 2}),
        "r.0": json.dumps({"k": "g", "n": 2}),
        "r.0.0": _step("a"),
        "r.0.1": _step("b"),
        "r.1": _step("c"),
    }
    assert run(b.start_workflow("wf", _workflow(), nodes)) is True
    assert run(b.start_workflow("wf", _workflow(), nodes)) is False  # a retried start
    tree = run(b.workflow_nodes("wf"))
    # The nodes as given (plus the engine's own ``<path>#...`` bookkeeping).
    assert {p: json.loads(n) for p, n in tree.items() if "#" not in p} == {
        p: json.loads(n) for p, n in nodes.items()
    }
    got = run(b.get("wf"))
    assert got is not None and got["status"] == "process"
    assert [uuid for uuid, _, _ in run(b.index_page("workflows", None, 10))] == ["wf"]
    # Its first members are queued at once, under uuids of their place in the tree.
    first = subject.claim().tasks
    assert sorted(t["uuid"] for t in first) == ["wf:r.0.0", "wf:r.0.1"]
    results = {"wf:r.0.0": 1, "wf:r.0.1": 2}
    for task in first:
        assert subject.finish(task["uuid"], task["token"], result=results[task["uuid"]])
    [last] = subject.claim().tasks
    assert last["uuid"] == "wf:r.1" and json.loads(last["args"]) == [[1, 2]]
    assert subject.finish("wf:r.1", last["token"], result="done")
    assert run(b.wait_done("wf", 1)) is not False
    ended = run(b.get("wf"))
    assert ended is not None and (ended["status"], ended["returning"]) == ("success", '"done"')


def test_a_workflow_whose_member_fails_ends_with_it(subject: Subject) -> None:
    b = subject.backend
    nodes = {"r": json.dumps({"k": "c", "n": 2}), "r.0": _step("a"), "r.1": _step("b")}
    assert run(b.start_workflow("wf", _workflow(), nodes))
    [first] = subject.claim().tasks
    assert subject.finish(first["uuid"], first["token"], status="error")
    got = run(b.get("wf"))
    assert got is not None and got["status"] == "error"
    assert got["failed_member"] == "wf:r.0" and "wf:r.0" in got["traceback"]
    assert subject.claim().tasks == []  # the rest never runs


def test_a_workflow_unknown_or_gone_has_no_tree(subject: Subject) -> None:
    b = subject.backend
    assert run(b.workflow_nodes("nothing")) == {}
    nodes = {"r": _step("a")}
    assert run(b.start_workflow("wf", _workflow(ttl="1"), nodes))
    [task] = subject.claim().tasks
    assert run(b.workflow_nodes("wf")) != {}
    assert subject.finish(task["uuid"], task["token"], ttl=1)
    # An ended workflow's tree goes with its record, when the record's ttl ends.
    time.sleep(1.2 if subject.raw is not None else 1.05)  # Redis TTLs are whole seconds
    assert run(b.get("wf")) is None
    assert run(b.workflow_nodes("wf")) == {}
