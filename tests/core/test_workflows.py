"""Workflows (chain, group, chord) on Redis and on the in-memory backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from qtasks_core import QueueTasks, chain, chord, group
from qtasks_core.errors import TaskOptionError, TaskSerializationError
from qtasks_core.keys import Keys
from qtasks_core.starter import Starter


def _register(app: QueueTasks) -> dict[str, Any]:
    ran: list[str] = []

    @app.task(name="add")
    def add(a: int, b: int = 0) -> int:
        ran.append(f"add{a},{b}")
        return a + b

    @app.task(name="total")
    def total(values: list[int]) -> int:
        ran.append("total")
        return sum(values)

    @app.task(name="boom")
    def boom(*_: Any) -> None:
        ran.append("boom")
        raise ValueError("boom")

    @app.task(name="pair")
    def pair(values: list[Any], label: str) -> dict[str, Any]:
        return {"label": label, "values": values}

    return {"add": add, "total": total, "boom": boom, "pair": pair, "ran": ran}


def _run(app: QueueTasks) -> None:
    Starter(app, app.worker(), burst=True).start()


def test_a_chain_passes_each_result_to_the_next_step(app: QueueTasks) -> None:
    t = _register(app)
    started = app.start_workflow(chain(t["add"].s(1, 2), t["add"].s(10), t["add"].s(100)))
    assert started.status == "process"
    _run(app)
    done = app.wait(started.uuid, timeout=10)
    assert (done.status, done.returning) == ("success", 113)
    assert t["ran"] == ["add1,2", "add3,10", "add13,100"]  # in order, once each


def test_a_task_says_whether_it_is_a_workflow_or_a_step_of_one(app: QueueTasks) -> None:
    t = _register(app)
    started = app.start_workflow(chain(t["add"].s(1, 2), t["add"].s(10)), on_error=t["add"].si(0))
    plain = app.add_task("add", 1, 1)
    _run(app)
    workflow = app.wait(started.uuid, timeout=10)
    assert (workflow.is_workflow, workflow.workflow) == (True, None)
    nodes = app.workflow(started.uuid).nodes
    steps = [app.get(n.uuid) for n in nodes if n.kind == "task" and n.uuid and n.path != "e"]
    assert steps and all(s is not None for s in steps)
    assert {(s.workflow, s.is_workflow) for s in steps if s} == {(started.uuid, False)}
    assert {s.workflow_path for s in steps if s} == {"r.0", "r.1"}
    task = app.get(plain.uuid)
    assert task is not None
    assert (task.is_workflow, task.workflow, task.workflow_path) == (False, None, None)


def test_a_chord_gets_its_groups_results_in_order(app: QueueTasks) -> None:
    t = _register(app)
    flow = chord([t["add"].s(i, i) for i in range(6)], t["pair"].s("sums"))
    started = app.start_workflow(flow)
    _run(app)
    done = app.wait(started.uuid, timeout=10)
    assert done.status == "success"
    assert done.returning == {"label": "sums", "values": [0, 2, 4, 6, 8, 10]}


def test_groups_and_chains_nest(app: QueueTasks) -> None:
    t = _register(app)
    add = t["add"]
    flow = add.s(1) | group(add.s(1), chain(add.s(2), add.s(3)), group(add.s(4), add.s(5)))
    flow = flow | t["pair"].s("nested")
    _run_and = app.start_workflow(flow)
    _run(app)
    done = app.wait(_run_and.uuid, timeout=10)
    # The group's members all get the chain's value (1); the inner chain passes 3 on.
    assert done.returning == {"label": "nested", "values": [2, 6, [5, 6]]}


def test_an_immutable_step_takes_no_result_and_an_empty_group_gives_a_list(
    app: QueueTasks,
) -> None:
    t = _register(app)
    done = app.start_workflow(chain(t["add"].s(1), t["add"].si(7, 7)), timeout=None)
    empty = app.start_workflow(chord(group(), t["total"].s()))
    _run(app)
    assert app.wait(done.uuid, timeout=10).returning == 14
    assert app.wait(empty.uuid, timeout=10).returning == 0


def test_a_failing_member_ends_the_workflow_and_cancels_the_queued_ones(
    app: QueueTasks,
) -> None:
    t = _register(app)
    flow = group(t["boom"].s(), t["add"].s(1), t["add"].s(2)) | t["total"].s()
    started = app.start_workflow(flow)
    worker = app.worker(concurrency=1)
    # One task only: the failing member first; the two others are still queued.
    app._portal.call(worker.run(only=f"{started.uuid}:r.0.0"))
    done = app.wait(started.uuid, timeout=10)
    assert done.status == "error"
    assert "workflow member r.0.0 (boom" in (done.traceback or "")
    assert "ValueError: boom" in (done.traceback or "")
    for path in ("r.0.1", "r.0.2"):
        member = app.get(f"{started.uuid}:{path}")
        assert member is not None and member.status == "cancel"
    _run(app)
    assert t["ran"] == ["boom"]  # the cancelled members and the body never ran
    assert app.get(f"{started.uuid}:r.1") is None


def test_a_member_that_ends_twice_advances_the_workflow_once(
    redis_app: QueueTasks, redis_url: str
) -> None:
    """A member ending a second time (a dead letter requeued, then run) finds its slot
    in the group taken: the body is not started twice."""
    app = redis_app
    t = _register(app)
    started = app.start_workflow(chord([t["add"].s(1), t["add"].s(2)], t["total"].s()))
    _run(app)
    assert app.wait(started.uuid, timeout=10).returning == 3
    runs_before = list(t["ran"])
    # The first member, queued again by hand as a requeued dead letter would be.
    uuid = f"{started.uuid}:r.0.0"
    keys = Keys.for_app(app.name)
    with redis.Redis.from_url(redis_url) as client:
        client.hset(keys.task(uuid), "status", "new")
        client.zadd(keys.queue, {uuid: 1})
    _run(app)
    assert t["ran"] == [*runs_before, "add1,0"]  # it ran again; the body did not
    assert app.get(started.uuid).returning == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda t: chain(), "a chain needs at least one step"),
        (lambda t: chain(t["add"].s(1), 5), "a step of a chain must be a signature"),
        (lambda t: group(t["add"].s(1), "x"), "a member of a group must be a signature"),
        (lambda t: t["add"].s(1).set(priority=99999), "priority"),
    ],
)
def test_a_bad_workflow_is_refused_naming_the_problem(
    app: QueueTasks, make: Any, names: str
) -> None:
    t = _register(app)
    with pytest.raises(TaskOptionError, match=names):
        app.start_workflow(make(t))


def test_an_argument_that_is_not_json_is_refused_before_anything_is_written(
    app: QueueTasks,
) -> None:
    t = _register(app)
    with pytest.raises(TaskSerializationError, match="JSON"):
        app.start_workflow(chain(t["add"].s(1), t["add"].s(object())))
    assert app.list_tasks(status="new").tasks == []


def test_a_settling_chord_gets_errors_in_place_of_results(app: QueueTasks) -> None:
    t = _register(app)
    flow = chord([t["add"].s(1), t["boom"].s(), chain(t["add"].s(2), t["boom"].s())],
                 t["pair"].s("settled"), settle=True)  # fmt: skip
    started = flow.add_task()
    _run(app)
    done = app.wait(started.uuid, timeout=10)
    assert done.status == "success"
    first, failed, failed_chain = done.returning["values"]
    assert first == 1
    assert failed["status"] == "error" and "ValueError: boom" in failed["error"]
    assert failed["uuid"] == f"{started.uuid}:r.0.1" and failed["task_name"] == "boom"
    assert failed_chain["uuid"] == f"{started.uuid}:r.0.2.1"


def test_on_error_runs_once_with_what_failed(app: QueueTasks) -> None:
    t = _register(app)
    seen: list[dict[str, Any]] = []

    @app.task(name="alert")
    def alert(info: dict[str, Any], channel: str) -> None:
        seen.append({**info, "channel": channel})

    flow = group(t["boom"].s(), t["boom"].s())
    started = flow.add_task(on_error=alert.s("ops"))
    _run(app)
    done = app.wait(started.uuid, timeout=10)
    assert done.status == "error"
    assert len(seen) == 1  # two members failed; the workflow failed once
    info = seen[0]
    assert info["workflow"] == started.uuid and info["channel"] == "ops"
    assert info["task_name"] == "boom" and info["status"] == "error"
    assert "ValueError: boom" in info["error"]
    assert info["member"] in {f"{started.uuid}:r.0", f"{started.uuid}:r.1"}
    assert info["member"] in (done.traceback or "")


def test_a_workflow_succeeding_never_runs_on_error(app: QueueTasks) -> None:
    t = _register(app)
    started = app.start_workflow(t["add"].s(1) | t["add"].s(2), on_error=t["boom"].s())
    _run(app)
    assert app.wait(started.uuid, timeout=10).returning == 3
    assert "boom" not in t["ran"]
    assert app.get(f"{started.uuid}:e") is None


def test_app_signature_takes_args_kwargs_queue_and_priority(app: QueueTasks) -> None:
    _register(app)
    sig = app.signature("add", [1], {"b": 5}, queue="other", priority=3)
    started = app.start_workflow(chain(sig))
    member = app.get(f"{started.uuid}:r.0")
    assert member is not None and (member.priority, member.status) == (3, "new")
    worker = app.worker(queues=["other"])
    Starter(app, worker, burst=True).start()
    assert app.wait(started.uuid, timeout=10).returning == 6


def test_a_workflow_from_async_code(app: QueueTasks) -> None:
    t = _register(app)

    async def main() -> Any:
        started = await (t["add"].s(2) | t["add"].s(3)).add_task_async()
        await app.worker().run(burst=True)
        return (await app.wait_async(started.uuid, timeout=10)).returning

    assert asyncio.run(main()) == 5


def test_an_aborted_workflow_ends_cancel_and_its_queued_members_never_run(
    app: QueueTasks,
) -> None:
    t = _register(app)
    started = app.start_workflow(chord([t["add"].s(i) for i in range(3)], t["total"].s()))
    assert app.abort(started.uuid, "changed my mind") == "cancelled"
    done = app.wait(started.uuid, timeout=5)
    assert (done.status, done.cancel_reason) == ("cancel", "changed my mind")
    for i in range(3):
        member = app.get(f"{started.uuid}:r.0.{i}")
        assert member is not None and member.status == "cancel"
    _run(app)
    assert t["ran"] == []
    assert app.abort(started.uuid) == "ended"


def test_a_settled_member_ending_again_starts_nothing_after_it(
    redis_app: QueueTasks, redis_url: str
) -> None:
    """A chain inside a settling group: its first step failed (its error is in the
    group's result), then the step is queued again and succeeds: the chain's next step
    must not start."""
    app = redis_app
    t = _register(app)
    attempts: list[int] = []

    @app.task(name="flaky")
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first time")
        return 1

    flow = chord([chain(app.signature("flaky"), t["add"].s(100)), t["add"].s(2)],
                 t["pair"].s("done"), settle=True)  # fmt: skip
    started = app.start_workflow(flow)
    _run(app)
    done = app.wait(started.uuid, timeout=10)
    assert done.status == "success" and done.returning["values"][0]["status"] == "error"
    uuid = f"{started.uuid}:r.0.0.0"
    keys = Keys.for_app(app.name)
    with redis.Redis.from_url(redis_url) as client:
        client.hset(keys.task(uuid), "status", "new")
        client.zadd(keys.queue, {uuid: 1})
    _run(app)
    assert len(attempts) == 2  # it ran again
    assert app.get(f"{started.uuid}:r.0.0.1") is None  # the step after it never started
    assert "add1,100" not in t["ran"]


def test_workflows_are_listed_and_shown_node_by_node(app: QueueTasks) -> None:
    t = _register(app)
    first = app.start_workflow(t["add"].s(1) | group(t["add"].s(2), t["add"].s(3)))
    second = app.start_workflow(chain(t["add"].s(5)), name="single")
    page = app.list_workflows(limit=1)
    assert [w.uuid for w in page.tasks] == [second.uuid] and page.next is not None
    assert [w.uuid for w in app.list_workflows(before=page.next).tasks] == [first.uuid]
    view = app.workflow(first.uuid)
    assert view is not None and view.task.status == "process"
    shape = [(n.path, n.kind, n.status) for n in view.nodes]
    assert shape == [
        ("r", "chain", None),
        ("r.0", "task", "new"),
        ("r.1", "group", None),
        ("r.1.0", "task", "waiting"),
        ("r.1.1", "task", "waiting"),
    ]
    _run(app)
    view = app.workflow(first.uuid)
    assert view is not None and view.task.status == "success"
    assert {n.status for n in view.nodes if n.kind == "task"} == {"success"}
    assert app.workflow("no-such-workflow") is None


def test_retry_refuses_a_workflow_and_its_steps_saying_what_to_do(app: QueueTasks) -> None:
    t = _register(app)
    started = app.start_workflow(chain(t["boom"].s(), t["add"].s(1)))
    _run(app)
    assert app.wait(started.uuid, timeout=10).status == "error"
    with pytest.raises(TaskOptionError, match="is a workflow: start the workflow again"):
        app.retry(started.uuid)
    with pytest.raises(TaskOptionError, match="is a step of workflow"):
        app.retry(f"{started.uuid}:r.0")


def test_a_result_too_large_for_the_next_step_fails_the_workflow_saying_so(
    app: QueueTasks,
) -> None:
    app.max_payload = 200  # read when the app starts its storage
    _register(app)

    @app.task(name="big")
    def big() -> str:
        return "x" * 500

    started = app.start_workflow(chain(app.signature("big"), app.signature("add", [1])))
    _run(app)
    done = app.wait(started.uuid, timeout=10)
    assert done.status == "error"
    assert "over max_payload=200" in (done.traceback or "")
    assert app.get(f"{started.uuid}:r.1") is None  # never written


@pytest.mark.parametrize("damage", ["evicted", "wrong type"])
def test_a_workflow_whose_tree_is_lost_ends_error_naming_it_and_runs_on_error_once(
    redis_app: QueueTasks, damage: str
) -> None:
    app = redis_app
    t = _register(app)
    alerts: list[dict[str, Any]] = []

    @app.task(name="alert")
    def alert(info: dict[str, Any]) -> None:
        alerts.append(info)

    flow = chain(group(*(t["add"].s(i) for i in range(10))), t["total"].s())
    started = app.start_workflow(flow, on_error=alert.s())
    plain = [app.add_task("add", i, 100) for i in range(30)]
    tree = Keys.for_app(app.name).workflow(started.uuid)
    raw = redis.Redis.from_url(app.redis_url)
    raw.delete(tree)
    if damage == "wrong type":
        raw.set(tree, "overwritten")
    _run(app)

    done = app.wait(started.uuid, timeout=10)
    assert done.status == "error"
    assert tree in (done.traceback or "")
    assert ("is gone" if damage == "evicted" else "is a string") in (done.traceback or "")
    assert len(alerts) == 1 and alerts[0]["workflow"] == started.uuid
    # The tasks finished beside the members: each ran once and kept its result.
    assert sorted(t["ran"]).count("total") == 0
    for task in plain:
        assert app.get(task.uuid).status == "success"  # type: ignore[union-attr]
    assert len([r for r in t["ran"] if r.endswith(",100")]) == 30
    members = [app.get(f"{started.uuid}:r.0.{i}") for i in range(10)]
    assert all(m is not None and m.status == "success" for m in members)


def test_a_refused_start_leaves_no_workflow_behind(redis_app: QueueTasks) -> None:
    app = redis_app
    t = _register(app)
    keys = Keys.for_app(app.name)
    raw = redis.Redis.from_url(app.redis_url)
    raw.set(keys.workflows, "overwritten")
    with pytest.raises(Exception, match="workflows"):
        app.start_workflow(chain(t["add"].s(1, 2), t["add"].s(10)))
    assert [k for k in raw.scan_iter(match=keys.prefix + "task:*")] == []
    assert [k for k in raw.scan_iter(match=keys.prefix + "wf:*")] == []
    raw.delete(keys.workflows)
    started = app.start_workflow(chain(t["add"].s(1, 2), t["add"].s(10)))
    _run(app)
    assert app.wait(started.uuid, timeout=10).returning == 13


def _assert_ended_once_without_on_error(app: QueueTasks, uuid: str) -> None:
    """The workflow ended error once, its record saying why its on_error is missing."""
    _run(app)
    app.wait(uuid, timeout=10)
    done = app.get(uuid)
    assert done is not None and done.status == "error"
    assert (done.traceback or "").count("ended error") == 1
    assert "on_error was not queued" in (done.traceback or "")
    assert app.get(f"{uuid}:e") is None
    counts = asyncio.run(app.backend.stats()).counts
    assert counts.get("error") == 2  # the member and the workflow, each once


def test_an_on_error_too_large_to_queue_is_said_and_the_workflow_ends_once(
    app: QueueTasks,
) -> None:
    app.max_payload = 300
    t = _register(app)

    @app.task(name="loud")
    def loud() -> None:
        raise ValueError("x" * 500)  # its traceback alone is over max_payload

    started = app.start_workflow(app.signature("loud"), on_error=t["add"].s())
    _assert_ended_once_without_on_error(app, started.uuid)


def test_an_on_error_whose_queue_key_is_broken_is_said_and_ends_the_workflow_once(
    redis_app: QueueTasks,
) -> None:
    app = redis_app
    t = _register(app)
    raw = redis.Redis.from_url(app.redis_url)
    started = app.start_workflow(t["boom"].s(), on_error=app.signature("add", [1], queue="alerts"))
    raw.set(Keys.for_app(app.name).queue_of("alerts"), "overwritten")
    _assert_ended_once_without_on_error(app, started.uuid)
