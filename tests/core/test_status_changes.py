"""Every status change is a trigger (``storage_status_changed``) and an entry of the
app's event stream: exactly once per transition, on Redis and on the in-memory backend.

Each test drives one path and asserts the whole list of transitions each task went
through, from the trigger, and that the event stream holds the same list. The last test
checks that every path is here: every Redis function that writes a status is named by
a test of this file.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest

from qtasks_core import QueueTasks, chain, group
from qtasks_core.schemas import StatusChange
from qtasks_core.starter import Starter
from qtasks_hooks import hookimpl

Step = tuple[str | None, str, str | None]


class Audit:
    """The audit-log plugin in its simplest form: every change, in order."""

    def __init__(self) -> None:
        self.changes: list[StatusChange] = []

    @hookimpl
    def storage_status_changed(self, storage: Any, change: StatusChange) -> None:
        self.changes.append(change)

    def of(self, uuid: str) -> list[Step]:
        return [(c.previous, c.status, c.reason) for c in self.changes if c.uuid == uuid]

    def by_uuid(self) -> dict[str, list[Step]]:
        out: dict[str, list[Step]] = defaultdict(list)
        for c in self.changes:
            out[c.uuid].append((c.previous, c.status, c.reason))
        return dict(out)


@pytest.fixture(params=["redis", "memory"])
def app(request: pytest.FixtureRequest) -> Iterator[QueueTasks]:
    """An app on a real Redis server, then on the in-memory backend, writing the event
    stream (off by default)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"
    application = QueueTasks(
        f"changes-{os.getpid()}-{next(_names)}", redis_url=url, load_entry_points=False,
        events=True,
    )  # fmt: skip
    yield application
    application.stop()


_names = itertools.count()


@pytest.fixture
def audit(app: QueueTasks) -> Audit:
    plugin = Audit()
    app.add_plugin(plugin)
    return plugin


def _drain(app: QueueTasks, **options: Any) -> None:
    Starter(app, app.worker(**options), burst=True).start()


def _stream_matches(app: QueueTasks, audit: Audit) -> None:
    """The event stream holds the very changes the trigger saw, in order."""
    streamed = list(app.events(after="0", timeout=0.3))
    key = lambda c: (c.uuid, c.previous, c.status, c.reason, c.attempt)  # noqa: E731
    assert [key(c) for c in streamed] == [key(c) for c in audit.changes]
    assert all(c.id for c in streamed)


RUN: list[Step] = [(None, "new", None), ("new", "process", None), ("process", "success", None)]


def test_enqueue_claim_finish(app: QueueTasks, audit: Audit) -> None:
    @app.task(name="ok")
    def ok(x: int) -> int:
        return x

    uuid = app.add_task("ok", 1).uuid
    _drain(app)
    assert audit.of(uuid) == RUN
    change = audit.changes[-1]
    assert (change.task_name, change.queue, change.attempt) == ("ok", "default", 1)
    assert change.worker and change.at == pytest.approx(time.time(), abs=30)
    _stream_matches(app, audit)


def test_an_error_and_a_retry_name_the_exception(app: QueueTasks, audit: Audit) -> None:
    @app.task(name="bad")
    def bad() -> None:
        raise ValueError("nope")

    @app.task(name="flaky", retry=1, retry_on_exc=[KeyError])
    def flaky() -> None:
        raise KeyError("k")

    failed = app.add_task("bad").uuid
    retried = app.add_task("flaky").uuid
    _drain(app)
    assert audit.of(failed)[-1] == ("process", "error", "ValueError")
    assert audit.of(retried) == [
        (None, "new", None),
        ("new", "process", None),
        ("process", "retry", "KeyError"),
        ("retry", "new", None),
        ("new", "process", None),
        ("process", "error", "KeyError"),
    ]
    _stream_matches(app, audit)


def test_a_delayed_task_and_a_batch(app: QueueTasks, audit: Audit) -> None:
    @app.task(name="ok")
    def ok(x: int) -> int:
        return x

    later = app.send_task("ok", (1,), delay=0.2).uuid
    batch = [t.uuid for t in app.add_tasks([("ok", (i,), {}) for i in range(3)])]
    time.sleep(0.3)
    _drain(app)
    assert audit.of(later) == [(None, "delayed", None), ("delayed", "new", None), *RUN[1:]]
    for uuid in batch:
        assert audit.of(uuid) == RUN
    _stream_matches(app, audit)


def test_cancel_abort_purge_and_expiry(app: QueueTasks, audit: Audit) -> None:
    @app.task(name="ok")
    def ok(x: int) -> int:
        return x

    cancelled = app.add_task("ok", 1).uuid
    assert app.cancel(cancelled, "not needed")
    assert not app.cancel(cancelled)  # refused: fires nothing
    delayed = app.send_task("ok", (2,), delay=60).uuid
    assert app.abort(delayed) == "cancelled"
    purged = app.send_task("ok", (3,), queue="spare").uuid
    assert app.purge_queue("spare") == 1
    expired = app.send_task("ok", (4,), expires=0.05).uuid
    time.sleep(0.1)
    _drain(app)
    assert audit.of(cancelled) == [(None, "new", None), ("new", "cancel", "cancelled")]
    assert audit.of(delayed) == [(None, "delayed", None), ("delayed", "cancel", "aborted")]
    assert audit.of(purged) == [(None, "new", None), ("new", "cancel", "purged")]
    assert audit.of(expired) == [(None, "new", None), ("new", "cancel", "expired")]
    _stream_matches(app, audit)


def test_a_running_task_aborted(app: QueueTasks, audit: Audit) -> None:
    @app.task(name="forever")
    async def forever() -> None:
        await asyncio.sleep(60)

    async def main() -> str:
        worker = app.worker(lease=0.6)
        run = asyncio.create_task(worker.run())
        uuid = (await app.add_task_async("forever")).uuid
        while (await app.get_async(uuid)).status != "process":  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        assert await app.abort_async(uuid, "stop") == "aborting"
        await app.wait_async(uuid, timeout=20)
        worker.stop()
        await run
        return uuid

    uuid = asyncio.run(main())
    assert audit.of(uuid) == [*RUN[:2], ("process", "cancel", "aborted")]


def test_lease_expiry_release_and_dead_letters(app: QueueTasks, audit: Audit) -> None:
    @app.task(name="ok")
    def ok(x: int) -> int:
        return x

    backend = app.backend
    lost, handed, buried, deleted = (app.add_task("ok", i).uuid for i in range(4))

    async def main() -> None:
        first = await backend.claim(4, "w1", 0.05, 0)
        tokens = {t["uuid"]: t["token"] for t in first.tasks}
        assert await backend.release({handed: tokens[handed]}) == [handed]
        assert await backend.dead_letter(buried, tokens[buried], "unreadable", "")
        assert await backend.dead_letter(deleted, tokens[deleted], "unreadable", "")
        await asyncio.sleep(0.1)
        await backend.claim(0, "w2", 5, 0)  # recovers the expired lease
        assert await backend.requeue_dead(buried) == "requeued"
        assert await backend.delete_dead(deleted)
        assert not await backend.delete_dead(deleted)  # refused: fires nothing

    app._portal.call(main())
    taken = [(None, "new", None), ("new", "process", None)]
    assert audit.of(lost) == [*taken, ("process", "new", "lease_expired")]
    assert audit.of(handed) == [*taken, ("process", "new", "released")]
    assert audit.of(buried) == [
        *taken,
        ("process", "dead", "malformed"),
        ("dead", "new", "requeued"),
    ]
    assert audit.of(deleted) == [
        *taken,
        ("process", "dead", "malformed"),
        ("dead", "deleted", None),
    ]
    _stream_matches(app, audit)


def test_limits_park_and_delay(app: QueueTasks, audit: Audit) -> None:
    @app.task(name="one", concurrency_limit=1)
    async def one(i: int) -> int:
        await asyncio.sleep(0.05)
        return i

    @app.task(name="paced", rate_limit="1/s")
    async def paced(i: int) -> int:
        return i

    ones = [app.add_task("one", i).uuid for i in range(2)]
    paced_ids = [app.add_task("paced", i).uuid for i in range(2)]
    _drain(app, concurrency=4)
    steps = [audit.of(u) for u in ones]
    assert RUN in steps
    assert [
        (None, "new", None),
        ("new", "parked", "concurrency_limit"),
        ("parked", "new", None),
        *RUN[1:],
    ] in steps
    paced_steps = [audit.of(u) for u in paced_ids]
    assert RUN in paced_steps
    assert [
        (None, "new", None),
        ("new", "delayed", "rate_limit"),
        ("delayed", "new", None),
        *RUN[1:],
    ] in paced_steps
    _stream_matches(app, audit)


def _flow_tasks(app: QueueTasks) -> dict[str, Any]:
    @app.task(name="add")
    def add(a: int, b: int = 0) -> int:
        return a + b

    @app.task(name="boom")
    def boom(*_: Any) -> None:
        raise ValueError("boom")

    @app.task(name="slow")
    async def slow(*_: Any) -> None:
        await asyncio.sleep(0.2)

    return {"add": add, "boom": boom, "slow": slow}


def test_a_workflow_and_its_steps(app: QueueTasks, audit: Audit) -> None:
    t = _flow_tasks(app)
    started = app.start_workflow(chain(t["add"].s(1, 2), t["add"].s(10)))
    _drain(app)
    wf = started.uuid
    assert audit.of(wf) == [(None, "process", None), ("process", "success", None)]
    # Each step is written when its turn comes: by the finish of the step before.
    for member in (f"{wf}:r.0", f"{wf}:r.1"):
        assert audit.of(member) == RUN
    order = [(c.uuid, c.status) for c in audit.changes]
    assert order.index((f"{wf}:r.0", "success")) < order.index((f"{wf}:r.1", "new"))
    _stream_matches(app, audit)


def test_the_after_enqueue_triggers_fire_for_each_step_once_written(app: QueueTasks) -> None:
    t = _flow_tasks(app)
    seen: list[tuple[str, str]] = []

    class Producer:
        @hookimpl
        def broker_add_after(self, model: Any) -> None:
            seen.append(("broker_add_after", model.task_name))

        @hookimpl
        def qtasks_add_task_after_broker(self, task: Any) -> None:
            seen.append(("after_broker", task.uuid))

    app.add_plugin(Producer())
    started = app.start_workflow(chain(t["add"].s(1, 2), t["add"].s(10)))
    wf = started.uuid
    # The first step is written by start_workflow: told before it returns.
    assert seen == [("broker_add_after", "add"), ("after_broker", f"{wf}:r.0")]
    _drain(app)
    assert seen[2:] == [("broker_add_after", "add"), ("after_broker", f"{wf}:r.1")]


def test_a_failed_workflow_cancels_its_queued_steps(app: QueueTasks, audit: Audit) -> None:
    t = _flow_tasks(app)
    started = app.start_workflow(group(t["boom"].s(), t["slow"].s()) | t["add"].s())
    # One task at a time: the failure ends the workflow while "slow" is still queued.
    _drain(app, concurrency=1)
    wf = started.uuid
    assert audit.of(wf) == [(None, "process", None), ("process", "error", "member_failed")]
    steps = audit.by_uuid()
    boom, slow = f"{wf}:r.0.0", f"{wf}:r.0.1"
    assert steps[boom][-1] == ("process", "error", "ValueError")
    assert steps[slow] in (
        [(None, "new", None), ("new", "cancel", "workflow_failed")],
        RUN,  # claimed before the failure: it ran to its end
    )
    _stream_matches(app, audit)


def test_an_aborted_workflow(app: QueueTasks, audit: Audit) -> None:
    t = _flow_tasks(app)
    started = app.start_workflow(chain(t["add"].s(1), t["add"].s(2)))
    assert app.abort(started.uuid) == "cancelled"
    wf = started.uuid
    assert audit.of(wf) == [(None, "process", None), ("process", "cancel", "aborted")]
    assert audit.of(f"{wf}:r.0") == [(None, "new", None), ("new", "cancel", "aborted")]
    _stream_matches(app, audit)


def test_a_periodic_tick(app: QueueTasks, audit: Audit) -> None:
    @app.task(name="ok")
    def ok() -> None:
        return None

    async def main() -> tuple[str, str]:
        await app.start_async()
        uuid, record = "periodic:every:1", {"task_name": "ok", "args": "[]", "kwargs": "{}"}
        ticked, _ = await app.backend.tick("every", None, 2, 1, (uuid, record, 0))
        return ticked, uuid

    ticked, uuid = app._portal.call(main())
    assert ticked == "moved"
    assert audit.of(uuid) == [(None, "new", None)]


def test_without_a_stream_the_trigger_still_fires(app: QueueTasks) -> None:
    quiet = QueueTasks(f"{app.name}-quiet", redis_url=app.redis_url, events=False,
                       load_entry_points=False)  # fmt: skip

    @quiet.task(name="ok")
    def ok() -> None:
        return None

    before = quiet.add_task("ok").uuid
    audit = Audit()
    quiet.add_plugin(audit)  # registered late: heard from then on
    after = quiet.add_task("ok").uuid
    _drain(quiet)
    assert audit.of(before) == RUN[1:]
    assert audit.of(after) == RUN
    assert list(quiet.events(after="0", timeout=0.2)) == []  # nothing written
    # Turned on at run time: written from then on.
    quiet.config.events = True
    later = quiet.add_task("ok").uuid
    assert [(c.uuid, c.status) for c in quiet.events(after="0", timeout=0.2)] == [(later, "new")]
    quiet.stop()


#: Every Redis function that writes a status, and the test above that drives it.
PATHS = {
    "enqueue": test_enqueue_claim_finish,
    "claim": test_limits_park_and_delay,
    "finish": test_an_error_and_a_retry_name_the_exception,
    "release": test_lease_expiry_release_and_dead_letters,
    "update": test_cancel_abort_purge_and_expiry,
    "abort": test_an_aborted_workflow,
    "purge": test_cancel_abort_purge_and_expiry,
    "dead": test_lease_expiry_release_and_dead_letters,
    "requeue_dead": test_lease_expiry_release_and_dead_letters,
    "delete_dead": test_lease_expiry_release_and_dead_letters,
    "tick": test_a_periodic_tick,
    "workflow": test_a_workflow_and_its_steps,
}


def test_every_function_that_writes_a_status_is_driven_here() -> None:
    folder = files("qtasks_core.backends").joinpath("lua")
    # The helpers of lib.lua that write a status (each reports its change).
    writers = r"\b(changed|bury|requeue|cancel|write_task|wf_end|wf_abort|unpark|free_slot|" \
              r"signal_done|start_node|recover)\("  # fmt: skip
    writing = {
        entry.name.removesuffix(".lua")
        for entry in folder.iterdir()
        if entry.name.endswith(".lua")
        and entry.name != "lib.lua"
        and re.search(writers, entry.read_text())
    }
    assert writing == set(PATHS)
