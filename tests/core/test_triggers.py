"""Every trigger, fired by the real core: its arguments, and what its replacement does.

One test per trigger, named ``test_<trigger>`` (the meta-tests at the end hold every
trigger to that): a probe plugin records what the trigger receives, the test drives the
public API until the trigger fires, and for a trigger with a return the probe replaces a
value and the test checks the replacement where a user would see it (``app.get``, a
task's ``returning``, what ``get_all`` returns …). The docstrings of
``qtasks_hooks/specs/`` are the reference each test holds the core to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import qtasks_core
from qtasks_core import (
    QueueTasks,
    Starter,
    Stats,
    Task,
    TaskContext,
    TaskExecutor,
    TaskPluginTriggerError,
    hookimpl,
)
from qtasks_core.errors import TaskOptionError
from qtasks_core.schemas import (
    ArgMeta,
    TaskPrioritySchema,
    TaskStatusCancelSchema,
    TaskStatusErrorSchema,
    TaskStatusNewSchema,
    TaskStatusProcessSchema,
    TaskStatusSuccessSchema,
)
from qtasks_hooks import get_plugin_manager

#: Lease of the simulated dead worker: short, so its task is recovered at once.
DEAD_LEASE = 0.2
#: A timestamp no clock produces now, for replacements that must show in a record.
MARKED_TIME = 1_000_000_000.0


# -------------------------------------------------------------------------
# Helpers
# -------------------------------------------------------------------------


def eventually(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition was not met in time"
        time.sleep(0.005)


def call(app: QueueTasks, coro: Any) -> Any:
    """Run an async component method on the app's own loop (the sync edge)."""
    return app._portal.call(coro)


def abandon(app: QueueTasks, task_name: str, *args: Any) -> Task:
    """Enqueue a task, claim it as a worker that then dies, and let its lease expire.

    The dead worker never renews its lease nor finishes the task: the next live worker
    that claims recovers it.
    """
    task = app.add_task(task_name, *args)
    dead = app.worker(lease=DEAD_LEASE, name="dead-worker")
    try:
        claimed, _ = call(app, app.broker.claim(dead, 1))
    finally:
        dead.threads.shutdown()
    assert [m.claim.uuid for m in claimed] == [task.uuid]
    time.sleep(DEAD_LEASE + 0.05)  # exactly what it takes for the lease to expire
    return task


def trigger_names() -> list[str]:
    pm = get_plugin_manager()
    return sorted(
        name for name, caller in vars(pm.hook).items() if getattr(caller, "spec", None) is not None
    )


@pytest.fixture
def worker_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="qtasks.broker"):
        yield caplog


# -------------------------------------------------------------------------
# QueueTasks (qtasks_*)
# -------------------------------------------------------------------------


def test_qtasks_add_task_before_broker(app: QueueTasks) -> None:
    seen: list[dict[str, Any]] = []

    class Probe:
        @hookimpl
        def qtasks_add_task_before_broker(
            self,
            qtasks: Any,
            broker: Any,
            task_name: str,
            priority: int,
            args: Any,
            kw: Any,
            extra: Any,
        ) -> Any:
            seen.append(
                {
                    "qtasks": qtasks,
                    "broker": broker,
                    "task_name": task_name,
                    "priority": priority,
                    "args": args,
                    "kw": dict(kw),
                    "extra": dict(extra),
                }
            )
            return {"priority": 7, "kw": {"y": 10}, "extra": {"tenant": "acme"}}

    @app.task(priority=2)
    def add(x: int, y: int = 0) -> int:
        return x + y

    app.add_plugin(Probe(), name="probe")
    added = app.add_task("add", 1, y=1)
    assert seen == [
        {
            "qtasks": app,
            "broker": app.broker,
            "task_name": "add",
            "priority": 2,  # resolved from the task's default
            "args": (1,),
            "kw": {"y": 1},
            "extra": {},
        }
    ]
    for task in (added, app.get(added.uuid)):
        assert task is not None
        assert task.priority == 7
        assert task.args == (1,)  # a key the plugin did not return is kept
        assert task.kwargs == {"y": 10}
        assert task.extra == {"tenant": "acme"}
    with app.running_worker():
        assert app.wait(added.uuid, timeout=10).returning == 11


def test_qtasks_add_task_before_broker_reads_the_calls_options(app: QueueTasks) -> None:
    seen: list[tuple[Any, ...]] = []

    class Admission:
        @hookimpl
        def qtasks_add_task_before_broker(
            self, task_name: str, queue: str, delay: Any, expires: Any, unique_key: Any
        ) -> None:
            seen.append((task_name, queue, delay, expires, unique_key))
            if queue == "closed":
                raise PermissionError("the closed queue takes no tasks")

    @app.task(queue="mail")
    def send() -> None: ...

    app.add_plugin(Admission(), name="admission")
    app.add_task("send")
    app.send_task("send", queue="bulk", delay=30, expires=60, unique_key="order-1")
    with pytest.raises(PermissionError, match="closed queue"):
        app.send_task("send", queue="closed")
    assert seen == [
        ("send", "mail", None, None, None),
        ("send", "bulk", 30, 60, "order-1"),
        ("send", "closed", None, None, None),
    ]
    assert app.list_tasks(status="new", queue="closed", limit=10).tasks == []  # refused
    assert len(app.list_tasks(status="new", queue="mail", limit=10).tasks) == 1


def test_broker_add_failed(app: QueueTasks) -> None:
    """It says why a task that passed its before-triggers was not added."""
    seen: list[tuple[str, str, Any]] = []

    class Admission:
        @hookimpl
        def broker_add_failed(self, model: Any, reason: str, error: Any, holder: Any) -> None:
            seen.append((model.task_name, reason, holder))

    class Veto:
        @hookimpl
        def broker_add_before(self, model: Any) -> None:
            if model.kwargs.get("veto"):
                raise PermissionError("vetoed")

    @app.task
    def job(data: str = "", veto: bool = False) -> None: ...

    app.add_plugin(Admission(), name="admission")
    app.add_plugin(Veto(), name="veto")
    first = app.send_task("job", unique_key="once")
    again = app.send_task("job", unique_key="once")
    assert again.uuid == first.uuid  # the holder is the answer, no error
    app.max_payload = app.storage.max_payload = 100
    with pytest.raises(TaskOptionError, match="max_payload"):
        app.add_task("job", "x" * 200)
    with pytest.raises(PermissionError):
        app.add_task("job", veto=True)
    with pytest.raises(TaskOptionError, match="206 bytes"):  # the batch: all or nothing
        app.add_tasks([("job", (), {}), ("job", ("y" * 200,), {})])
    assert seen == [
        ("job", "unique_key held", first.uuid),
        ("job", "payload too large", None),
        ("job", "plugin", None),
        ("job", "payload too large", None),
        ("job", "payload too large", None),
    ]


def test_storage_status_changed(app: QueueTasks) -> None:
    """Once per transition, in order, with the storage; a plugin that raises is
    logged and neither stops the others nor the change (every path, on both backends:
    tests/core/test_status_changes.py)."""
    seen: list[tuple[Any, ...]] = []

    class Broken:
        @hookimpl(tryfirst=True)
        def storage_status_changed(self, change: Any) -> None:
            raise RuntimeError("a broken audit plugin")

    class Audit:
        @hookimpl
        async def storage_status_changed(self, storage: Any, change: Any) -> None:
            seen.append((storage is app.storage, change.previous, change.status))

    @app.task
    def job() -> str:
        return "ok"

    app.add_plugin(Broken())
    app.add_plugin(Audit())
    with app.running_worker():
        done = app.add_task("job", timeout=10)
    assert done.returning == "ok"
    assert seen == [
        (True, None, "new"),
        (True, "new", "process"),
        (True, "process", "success"),
    ]


def test_qtasks_add_task_after_broker(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, Task]] = []

    class Probe:
        @hookimpl
        def qtasks_add_task_after_broker(self, qtasks: Any, broker: Any, task: Task) -> None:
            seen.append((qtasks, broker, task))

    app.add_plugin(Probe(), name="probe")
    added = app.add_task("anything", 1, "two", priority=4, three=3)
    assert len(seen) == 1
    qtasks, broker, task = seen[0]
    assert qtasks is app and broker is app.broker
    assert isinstance(task, Task)
    assert task == added
    assert task.status == "new"
    assert (task.task_name, task.priority, task.args, task.kwargs) == (
        "anything",
        4,
        (1, "two"),
        {"three": 3},
    )
    stored = app.get(task.uuid)
    assert stored is not None and stored.created_at == task.created_at


def test_qtasks_get(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, Task | None]] = []

    class Probe:
        @hookimpl
        def qtasks_get(self, qtasks: Any, broker: Any, task: Task | None) -> Task | None:
            seen.append((qtasks, broker, task))
            if task is None:
                return None
            return task.model_copy(update={"returning": "patched by plugin"})

    added = app.add_task("anything", 5)
    app.add_plugin(Probe(), name="probe")
    got = app.get(added.uuid)
    assert got is not None and got.returning == "patched by plugin"
    assert got.uuid == added.uuid and got.args == (5,)
    qtasks, broker, task = seen[0]
    assert qtasks is app and broker is app.broker
    assert isinstance(task, Task) and task.uuid == added.uuid and task.returning is None
    # An unknown uuid reaches plugins as None, and None stays None.
    assert app.get("00000000-0000-0000-0000-000000000000") is None
    assert seen[-1] == (app, app.broker, None)


def test_qtasks_stop(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any]] = []

    class Probe:
        @hookimpl
        def qtasks_stop(self, qtasks: Any, starter: Any) -> None:
            seen.append((qtasks, starter))

    app.add_plugin(Probe(), name="probe")
    assert app.ping() is True
    assert seen == []
    app.stop()
    # A producer stops the app without a Starter.
    assert seen == [(app, None)]


def test_qtasks_ping(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any]] = []

    class Probe:
        @hookimpl
        def qtasks_ping(self, qtasks: Any, global_config: Any) -> None:
            seen.append((qtasks, global_config))

    app.add_plugin(Probe(), name="probe")
    assert app.ping() is True
    assert seen == [(app, app.global_config)]


def test_qtasks_flush_all(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any]] = []

    class Probe:
        @hookimpl
        def qtasks_flush_all(self, qtasks: Any, broker: Any) -> None:
            seen.append((qtasks, broker))

    added = app.add_task("anything")
    app.add_plugin(Probe(), name="probe")
    app.flush_all()
    assert seen == [(app, app.broker)]
    assert app.get(added.uuid) is None


# -------------------------------------------------------------------------
# Broker (broker_*)
# -------------------------------------------------------------------------


def test_broker_listen_start(app: QueueTasks) -> None:
    events: list[tuple[str, Any, Any]] = []

    class Probe:
        @hookimpl
        def broker_listen_start(self, broker: Any, worker: Any) -> None:
            events.append(("broker_listen_start", broker, worker))

        @hookimpl
        def broker_add_worker(self, broker: Any, worker: Any) -> None:
            events.append(("broker_add_worker", broker, worker))

    @app.task
    def noop() -> None:
        return None

    queued = app.add_task("noop")
    app.add_plugin(Probe(), name="probe")
    with app.running_worker() as worker:
        assert app.wait(queued.uuid, timeout=10).status == "success"
    # Before its first claim: the task queued beforehand is handed over after.
    assert events == [
        ("broker_listen_start", app.broker, worker),
        ("broker_add_worker", app.broker, worker),
    ]


def test_broker_add_worker(app: QueueTasks) -> None:
    seen: list[dict[str, Any]] = []

    class Probe:
        @hookimpl
        def broker_add_worker(
            self,
            broker: Any,
            worker: Any,
            task_name: str,
            uuid: str,
            priority: int,
            args: Any,
            kw: Any,
            created_at: float,
        ) -> Any:
            seen.append(
                {
                    "broker": broker,
                    "worker": worker,
                    "task_name": task_name,
                    "uuid": uuid,
                    "priority": priority,
                    "args": args,
                    "kw": dict(kw),
                    "created_at": created_at,
                }
            )
            return {"args": (40,)}

    @app.task
    def plus(x: int, y: int = 0) -> int:
        return x + y

    app.add_plugin(Probe(), name="probe")
    queued = app.add_task("plus", 1, y=2, priority=3)
    with app.running_worker() as worker:
        done = app.wait(queued.uuid, timeout=10)
    assert done.returning == 42  # the task ran with the replaced args, its kw kept
    assert len(seen) == 1
    call_ = seen[0]
    assert call_["broker"] is app.broker and call_["worker"] is worker
    assert (call_["task_name"], call_["uuid"], call_["priority"]) == ("plus", queued.uuid, 3)
    assert call_["args"] == (1,) and call_["kw"] == {"y": 2}
    assert isinstance(call_["created_at"], float)
    assert call_["created_at"] == pytest.approx(queued.created_at.timestamp(), abs=1e-3)


def test_broker_add_before(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, TaskStatusNewSchema]] = []

    class Probe:
        @hookimpl
        def broker_add_before(self, broker: Any, storage: Any, model: Any) -> Any:
            seen.append((broker, storage, model))
            return model.model_copy(update={"priority": 9})

    app.add_plugin(Probe(), name="probe")
    added = app.add_task("anything", 1, priority=1, k="v")
    assert len(seen) == 1
    broker, storage, model = seen[0]
    assert broker is app.broker and storage is app.storage
    assert isinstance(model, TaskStatusNewSchema)
    assert (model.status, model.task_name, model.priority) == ("new", "anything", 1)
    assert model.args == (1,) and model.kwargs == {"k": "v"}
    assert added.priority == 9
    got = app.get(added.uuid)
    assert got is not None and got.priority == 9
    assert Stats(app).inspect().queued == {9: 1}


def test_broker_add_after(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, TaskStatusNewSchema]] = []

    class Probe:
        @hookimpl
        def broker_add_after(self, broker: Any, storage: Any, model: Any) -> None:
            seen.append((broker, storage, model))

    app.add_plugin(Probe(), name="probe")
    added = app.add_task("anything", "a", priority=6, b=2)
    assert len(seen) == 1
    broker, storage, model = seen[0]
    assert broker is app.broker and storage is app.storage
    assert isinstance(model, TaskStatusNewSchema)
    assert (model.status, model.task_name, model.priority) == ("new", "anything", 6)
    assert model.args == ("a",) and model.kwargs == {"b": 2}
    assert model.created_at == pytest.approx(added.created_at.timestamp(), abs=1e-3)
    # "were written": the record is readable when the trigger fires.
    got = app.get(added.uuid)
    assert got is not None and got.status == "new"


def test_broker_get(app: QueueTasks) -> None:
    seen: list[tuple[Any, Task | None]] = []

    class Probe:
        @hookimpl
        def broker_get(self, broker: Any, task: Task | None) -> Task | None:
            seen.append((broker, task))
            if task is None:
                return None
            return task.model_copy(update={"extra": {"seen_by": "broker_get"}})

    added = app.add_task("anything", 3)
    app.add_plugin(Probe(), name="probe")
    got = app.get(added.uuid)
    assert got is not None and got.extra == {"seen_by": "broker_get"}
    assert got.uuid == added.uuid and got.args == (3,)
    broker, task = seen[0]
    assert broker is app.broker
    assert isinstance(task, Task) and task.uuid == added.uuid and task.extra == {}
    assert app.get("00000000-0000-0000-0000-000000000000") is None
    assert seen[-1] == (app.broker, None)


def test_broker_update(app: QueueTasks) -> None:
    seen: list[tuple[Any, dict[str, Any]]] = []

    class Probe:
        @hookimpl
        def broker_update(self, broker: Any, kw: dict[str, Any]) -> Any:
            seen.append((broker, dict(kw)))
            return {**kw, "cancel_reason": "rewritten by plugin"}

    queued = app.add_task("anything")
    app.add_plugin(Probe(), name="probe")
    assert app.cancel(queued.uuid, "changed my mind") is True
    assert seen == [
        (app.broker, {"uuid": queued.uuid, "status": "cancel", "cancel_reason": "changed my mind"})
    ]
    got = app.get(queued.uuid)
    assert got is not None
    assert got.status == "cancel" and got.cancel_reason == "rewritten by plugin"


def test_broker_start(app: QueueTasks) -> None:
    """In the worker process: the worker starts the broker, and plugins see it."""
    seen: list[tuple[Any, Any]] = []

    class Probe:
        @hookimpl
        def broker_start(self, broker: Any, worker: Any) -> None:
            seen.append((broker, worker))

    app.add_plugin(Probe(), name="probe")
    worker = app.worker()
    Starter(app, worker, burst=True).start()  # what `qtasks worker` runs, until idle
    assert seen == [(app.broker, worker)]


def test_broker_start_fires_in_a_producer_too(app: QueueTasks) -> None:
    """The spec: "Fired in every process that starts the broker: the worker process, and
    a producer process on its first use of the broker" (with ``worker=None``)."""
    seen: list[tuple[Any, Any]] = []

    class Probe:
        @hookimpl
        def broker_start(self, broker: Any, worker: Any) -> None:
            seen.append((broker, worker))

    app.add_plugin(Probe(), name="probe")
    app.add_task("anything")
    app.add_task("anything")
    assert seen == [(app.broker, None)]


def test_broker_stop(app: QueueTasks) -> None:
    """In the worker process: a Starter runs the worker, then stops it and the app."""
    events: list[tuple[str, Any]] = []

    class Probe:
        @hookimpl
        def broker_stop(self, broker: Any) -> None:
            events.append(("broker_stop", broker))

    app.add_plugin(Probe(), name="probe")
    _run_a_burst_starter(app, events)
    names = [name for name, _ in events]
    assert [event for event in events if event[0] == "broker_stop"] == [("broker_stop", app.broker)]
    assert names.index("broker_stop") > names.index("worker_stop")


def test_broker_stop_fires_in_a_producer_too(app: QueueTasks) -> None:
    """The spec: "Fired in every process that stops the broker (the worker process or a
    producer)"; a producer stops its broker when it stops the app."""
    seen: list[Any] = []

    class Probe:
        @hookimpl
        def broker_stop(self, broker: Any) -> None:
            seen.append(broker)

    app.add_plugin(Probe(), name="probe")
    app.add_task("anything")
    assert seen == []
    app.stop()
    assert seen == [app.broker]


def test_broker_remove_finished_task(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, Any]] = []

    class Probe:
        @hookimpl
        def broker_remove_finished_task(self, broker: Any, storage: Any, model: Any) -> Any:
            seen.append((broker, storage, model))
            return model.model_copy(update={"returning": "rewritten by plugin"})

    @app.task
    def answer() -> int:
        return 42

    app.add_plugin(Probe(), name="probe")
    with app.running_worker():
        done = app.add_task("answer", timeout=10)
    assert done.status == "success" and done.returning == "rewritten by plugin"
    broker, storage, model = seen[0]
    assert broker is app.broker and storage is app.storage
    assert isinstance(model, TaskStatusSuccessSchema)
    assert model.uuid == done.uuid and model.returning == 42


def test_broker_running_older_tasks(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, list[str]]] = []

    class Probe:
        @hookimpl
        def broker_running_older_tasks(self, broker: Any, worker: Any, uuids: list[str]) -> None:
            seen.append((broker, worker, list(uuids)))

    @app.task
    def survive() -> str:
        return "ran again"

    app.add_plugin(Probe(), name="probe")
    lost = abandon(app, "survive")
    assert seen == []
    with app.running_worker() as worker:
        done = app.wait(lost.uuid, timeout=10)
    assert seen == [(app.broker, worker, [lost.uuid])]
    assert done.status == "success" and done.returning == "ran again"
    assert done.attempts == 2


def test_broker_flush_all(app: QueueTasks) -> None:
    events: list[tuple[str, Any]] = []

    class Probe:
        @hookimpl
        def qtasks_flush_all(self, qtasks: Any) -> None:
            events.append(("qtasks_flush_all", qtasks))

        @hookimpl
        def broker_flush_all(self, broker: Any) -> None:
            events.append(("broker_flush_all", broker))

    added = app.add_task("anything")
    app.add_plugin(Probe(), name="probe")
    app.flush_all()
    assert events == [("qtasks_flush_all", app), ("broker_flush_all", app.broker)]
    assert app.get(added.uuid) is None
    assert Stats(app).inspect().queued == {}


# -------------------------------------------------------------------------
# GlobalConfig (global_config_*)
# -------------------------------------------------------------------------


def test_global_config_set(app: QueueTasks) -> None:
    seen: list[tuple[Any, str, str, Any]] = []

    class Probe:
        @hookimpl
        def global_config_set(self, global_config: Any, name: str, key: str, value: Any) -> Any:
            seen.append((global_config, name, key, value))
            return {"key": "renamed", "value": {"n": 2}}

    app.add_plugin(Probe(), name="probe")
    config = app.global_config
    call(app, config.set("main", "original", {"n": 1}))
    assert seen == [(config, "main", "original", {"n": 1})]
    assert call(app, config.get("main", "renamed")) == {"n": 2}
    assert call(app, config.get("main", "original")) is None


def test_global_config_get(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any]] = []

    class Probe:
        @hookimpl
        def global_config_get(self, global_config: Any, get: Any) -> Any:
            seen.append((global_config, get))
            return "bonjour" if get == "hello" else None

    config = app.global_config
    call(app, config.set("main", "greeting", "hello"))
    app.add_plugin(Probe(), name="probe")
    assert call(app, config.get("main", "greeting")) == "bonjour"
    assert seen == [(config, "hello")]
    # A missing key reaches plugins as None.
    assert call(app, config.get("main", "missing")) is None
    assert seen[-1] == (config, None)


def test_global_config_get_all(app: QueueTasks) -> None:
    seen: list[tuple[Any, dict[str, Any]]] = []

    class Probe:
        @hookimpl
        def global_config_get_all(self, global_config: Any, get: dict[str, Any]) -> Any:
            seen.append((global_config, dict(get)))
            return {"only": "this"}

    config = app.global_config
    call(app, config.set("settings", "a", 1))
    call(app, config.set("settings", "b", [2, 3]))
    app.add_plugin(Probe(), name="probe")
    assert call(app, config.get_all("settings")) == {"only": "this"}
    assert seen == [(config, {"a": 1, "b": [2, 3]})]


def test_global_config_get_match(app: QueueTasks) -> None:
    seen: list[tuple[Any, dict[str, Any]]] = []

    class Probe:
        @hookimpl
        def global_config_get_match(self, global_config: Any, get: dict[str, Any]) -> Any:
            seen.append((global_config, dict(get)))
            return {key: value * 100 for key, value in get.items() if key != "alpha2"}

    config = app.global_config
    for key, value in (("alpha1", 1), ("alpha2", 2), ("beta", 3)):
        call(app, config.set("main", key, value))
    app.add_plugin(Probe(), name="probe")
    assert call(app, config.get_match("main", "alpha*")) == {"alpha1": 100}
    assert seen == [(config, {"alpha1": 1, "alpha2": 2})]


def test_global_config_start(app: QueueTasks) -> None:
    seen: list[Any] = []

    class Probe:
        @hookimpl
        def global_config_start(self, global_config: Any) -> None:
            seen.append(global_config)

    app.add_plugin(Probe(), name="probe")
    assert seen == []
    app.ping()
    app.add_task("anything")
    assert seen == [app.global_config]


def test_global_config_stop(app: QueueTasks) -> None:
    seen: list[Any] = []

    class Probe:
        @hookimpl
        def global_config_stop(self, global_config: Any) -> None:
            seen.append(global_config)

    app.add_plugin(Probe(), name="probe")
    app.ping()
    assert seen == []
    app.stop()
    assert seen == [app.global_config]


def test_global_config_set_status(app: QueueTasks) -> None:
    seen: list[tuple[Any, str, dict[str, Any]]] = []

    class Probe:
        @hookimpl
        def global_config_set_status(
            self, global_config: Any, name: str, status: dict[str, Any]
        ) -> None:
            seen.append((global_config, name, dict(status)))

    app.add_plugin(Probe(), name="probe")
    with app.running_worker(concurrency=3) as worker:
        eventually(lambda: seen)
        global_config, name, status = seen[0]
        assert global_config is app.global_config
        assert name == worker.id
        assert status["id"] == worker.id and status["concurrency"] == 3
        assert {"host", "pid", "started_at", "running", "tasks_done"} <= set(status)
        # The record written is the one plugins saw: stats lists this worker.
        eventually(lambda: Stats(app).inspect().workers)
        assert [w.id for w in Stats(app).inspect().workers] == [worker.id]


# -------------------------------------------------------------------------
# TaskExecutor (task_executor_*)
# -------------------------------------------------------------------------


def test_task_executor_args_replace(app: QueueTasks) -> None:
    seen: list[tuple[Any, list[Any], dict[str, Any], list[ArgMeta]]] = []

    class Probe:
        @hookimpl
        def task_executor_args_replace(
            self, task_executor: Any, args: list[Any], kw: dict[str, Any], args_info: Any
        ) -> Any:
            seen.append((task_executor, list(args), dict(kw), list(args_info)))
            return (None, {"b": 20})  # a None part keeps the args

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    app.add_plugin(Probe(), name="probe")
    with app.running_worker():
        done = app.add_task("add", 1, b=2, timeout=10)
    assert done.returning == 21
    executor, args, kw, info = seen[0]
    assert isinstance(executor, TaskExecutor)
    assert executor.task_func is app.tasks["add"] and executor.task_broker.uuid == done.uuid
    assert args == [1] and kw == {"b": 2}
    assert all(isinstance(meta, ArgMeta) for meta in info)
    assert [(m.name, m.value, m.position, m.is_kwarg) for m in info] == [
        ("a", 1, 0, False),
        ("b", 2, None, True),
    ]
    assert [m.annotation for m in info] in (["int", "int"], [int, int])


def test_task_executor_args_replace_gives_args_info_for_the_replaced_arguments(
    app: QueueTasks,
) -> None:
    seen: list[list[tuple[str, Any]]] = []

    class Doubler:
        @hookimpl(tryfirst=True)
        def task_executor_args_replace(self, args: list[Any]) -> Any:
            return ([a * 2 for a in args], None)

    class Reader:
        @hookimpl
        def task_executor_args_replace(self, args_info: Any) -> None:
            seen.append([(m.name, m.value) for m in args_info])

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    app.add_plugin(Doubler(), name="doubler")
    app.add_plugin(Reader(), name="reader")
    with app.running_worker():
        done = app.add_task("add", 1, 5, timeout=10)
    assert done.returning == 12
    assert seen == [[("a", 2), ("b", 10)]]  # what the function gets, not what was sent


def test_task_executor_middlewares_execute(app: QueueTasks) -> None:
    order: list[str] = []
    seen: list[Any] = []

    class Probe:
        @hookimpl
        def task_executor_middlewares_execute(self, task_executor: Any) -> None:
            seen.append(task_executor)
            order.append("trigger")

    def middleware(task_executor: Any) -> None:
        order.append("middleware")

    @app.task(middlewares_before=[middleware])
    def work() -> str:
        order.append("task")
        return "done"

    app.add_plugin(Probe(), name="probe")
    with app.running_worker():
        done = app.add_task("work", timeout=10)
    assert done.returning == "done"
    assert order == ["trigger", "middleware", "task"]
    (executor,) = seen
    assert isinstance(executor, TaskExecutor)
    assert executor.task_func is app.tasks["work"]
    assert executor.task_broker.uuid == done.uuid and executor.app is app


def test_task_executor_run_task(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any]] = []

    class Probe:
        @hookimpl
        def task_executor_run_task(self, task_executor: Any, result: Any) -> Any:
            seen.append((task_executor, result))
            return result + 1

    @app.task
    def answer() -> int:
        return 41

    @app.task
    async def answer_async() -> int:
        return 99

    app.add_plugin(Probe(), name="probe")
    with app.running_worker():
        done = app.add_task("answer", timeout=10)
        done_async = app.add_task("answer_async", timeout=10)
    assert done.status == "success" and done.returning == 42
    assert done_async.returning == 100
    (executor, result), (executor_async, result_async) = seen
    assert isinstance(executor, TaskExecutor) and executor.task_broker.uuid == done.uuid
    assert result == 41
    assert executor_async.task_broker.uuid == done_async.uuid and result_async == 99


def test_task_executor_run_task_gen(app: QueueTasks) -> None:
    seen: list[tuple[Any, list[Any]]] = []
    plain: list[Any] = []

    class Probe:
        @hookimpl
        def task_executor_run_task_gen(self, task_executor: Any, results: list[Any]) -> Any:
            seen.append((task_executor, list(results)))
            return [value * 2 for value in reversed(results)]

        @hookimpl
        def task_executor_run_task(self, result: Any) -> None:
            plain.append(result)

    @app.task
    def count(n: int) -> Any:
        yield from range(1, n + 1)

    @app.task
    async def count_async(n: int) -> Any:
        for i in range(n):
            yield i

    app.add_plugin(Probe(), name="probe")
    with app.running_worker():
        done = app.add_task("count", 3, timeout=10)
        done_async = app.add_task("count_async", 2, timeout=10)
    assert done.returning == [6, 4, 2]
    assert done_async.returning == [2, 0]
    (executor, results), (executor_async, results_async) = seen
    assert isinstance(executor, TaskExecutor) and executor.task_broker.uuid == done.uuid
    assert results == [1, 2, 3]
    assert executor_async.task_broker.uuid == done_async.uuid and results_async == [0, 1]
    assert plain == []  # a generator task's results go through the _gen trigger only


def test_task_executor_run_task_trigger_error(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, Any, Any]] = []

    class Probe:
        @hookimpl
        def task_executor_run_task_trigger_error(
            self, task_executor: Any, task_func: Any, task_broker: Any, e: Any
        ) -> Any:
            seen.append((task_executor, task_func, task_broker, e))
            return {"handled": e.extra["code"]}

    @app.task(echo=True)
    def needs_plugin(ctx: TaskContext, code: int) -> None:
        ctx.plugin_error("handle me", code=code)

    app.add_plugin(Probe(), name="probe")
    with app.running_worker():
        done = app.add_task("needs_plugin", 7, timeout=10)
    assert done.status == "success" and done.returning == {"handled": 7}
    executor, task_func, task_broker, e = seen[0]
    assert isinstance(executor, TaskExecutor)
    assert task_func is app.tasks["needs_plugin"]
    assert isinstance(task_broker, TaskPrioritySchema)
    assert task_broker.uuid == done.uuid and task_broker.args == (7,)
    assert isinstance(e, TaskPluginTriggerError)
    assert str(e) == "handle me" and e.extra == {"code": 7}


def test_task_executor_decode(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any]] = []

    class Probe:
        @hookimpl
        def task_executor_decode(self, task_executor: Any, result: Any) -> Any:
            seen.append((task_executor, result))
            return {**result, "patched": True}

    @app.task(decode=json.loads)
    def encoded() -> str:
        return '{"a": 1}'

    app.add_plugin(Probe(), name="probe")
    with app.running_worker():
        done = app.add_task("encoded", timeout=10)
    assert done.returning == {"a": 1, "patched": True}
    executor, result = seen[0]
    assert isinstance(executor, TaskExecutor) and executor.task_broker.uuid == done.uuid
    assert result == {"a": 1}  # already decoded


# -------------------------------------------------------------------------
# Starter (starter_*)
# -------------------------------------------------------------------------


def _run_a_burst_starter(app: QueueTasks, events: list[tuple[str, Any]]) -> tuple[Starter, Task]:
    class Order:
        @hookimpl
        def worker_start(self, worker: Any) -> None:
            events.append(("worker_start", worker))

        @hookimpl
        def worker_stop(self, worker: Any) -> None:
            events.append(("worker_stop", worker))

        @hookimpl
        def qtasks_stop(self, qtasks: Any, starter: Any) -> None:
            events.append(("qtasks_stop", starter))

    @app.task
    def job() -> str:
        return "burst"

    queued = app.add_task("job")
    app.add_plugin(Order(), name="order")
    starter = Starter(app, app.worker(), burst=True)
    starter.start()  # burst: returns once the queue is empty
    done = app.get(queued.uuid)
    assert done is not None and done.status == "success" and done.returning == "burst"
    return starter, done


def test_starter_start(app: QueueTasks) -> None:
    events: list[tuple[str, Any]] = []

    class Probe:
        @hookimpl
        def starter_start(self, starter: Any) -> None:
            events.append(("starter_start", starter))

    app.add_plugin(Probe(), name="probe")
    starter, _ = _run_a_burst_starter(app, events)
    assert events[:2] == [("starter_start", starter), ("worker_start", starter.worker)]
    assert [name for name, _ in events].count("starter_start") == 1


def test_starter_stop(app: QueueTasks) -> None:
    events: list[tuple[str, Any]] = []

    class Probe:
        @hookimpl
        def starter_stop(self, starter: Any) -> None:
            events.append(("starter_stop", starter))

    app.add_plugin(Probe(), name="probe")
    starter, _ = _run_a_burst_starter(app, events)
    assert events == [
        ("worker_start", starter.worker),
        ("worker_stop", starter.worker),
        ("starter_stop", starter),
        ("qtasks_stop", starter),  # the app stops with its Starter
    ]


# -------------------------------------------------------------------------
# Storage (storage_*)
# -------------------------------------------------------------------------


def test_storage_add(app: QueueTasks) -> None:
    seen: list[tuple[Any, str, TaskStatusNewSchema]] = []

    class Probe:
        @hookimpl
        def storage_add(self, storage: Any, uuid: str, task_status: Any) -> Any:
            seen.append((storage, uuid, task_status))
            return {
                "uuid": f"chosen-{uuid}",
                "task_status": task_status.model_copy(update={"kwargs": {"y": 5}}),
            }

    @app.task
    def add(x: int, y: int = 0) -> int:
        return x + y

    app.add_plugin(Probe(), name="probe")
    added = app.add_task("add", 1, y=1, priority=2)
    storage, uuid, task_status = seen[0]
    assert storage is app.storage
    assert isinstance(uuid, str) and len(uuid) == 36
    assert isinstance(task_status, TaskStatusNewSchema)
    assert (task_status.task_name, task_status.priority) == ("add", 2)
    assert task_status.args == (1,) and task_status.kwargs == {"y": 1}
    assert added.uuid == f"chosen-{uuid}" and added.kwargs == {"y": 5}
    assert app.get(uuid) is None
    got = app.get(added.uuid)
    assert got is not None and got.kwargs == {"y": 5}
    with app.running_worker():
        assert app.wait(added.uuid, timeout=10).returning == 6


def test_storage_get(app: QueueTasks) -> None:
    seen: list[tuple[Any, Task | None]] = []

    class Probe:
        @hookimpl
        def storage_get(self, storage: Any, result: Task | None) -> Task | None:
            seen.append((storage, result))
            if result is None:
                return None
            return result.model_copy(update={"returning": "from storage_get"})

    added = app.add_task("anything", 1)
    app.add_plugin(Probe(), name="probe")
    got = app.get(added.uuid)
    assert got is not None and got.returning == "from storage_get" and got.uuid == added.uuid
    storage, result = seen[0]
    assert storage is app.storage
    assert isinstance(result, Task) and result.uuid == added.uuid and result.args == (1,)
    assert app.get("00000000-0000-0000-0000-000000000000") is None
    assert seen[-1] == (app.storage, None)


def test_storage_get_all(app: QueueTasks) -> None:
    seen: list[tuple[Any, list[Task]]] = []

    class Probe:
        @hookimpl
        def storage_get_all(self, storage: Any, results: list[Task]) -> Any:
            seen.append((storage, list(results)))
            return [task for task in results if task.args == (2,)]

    added = [app.add_task("anything", i) for i in range(3)]
    app.add_plugin(Probe(), name="probe")
    everything = call(app, app.storage.get_all())
    assert [task.uuid for task in everything] == [added[2].uuid]
    storage, results = seen[0]
    assert storage is app.storage
    assert all(isinstance(task, Task) for task in results)
    assert {task.uuid for task in results} == {task.uuid for task in added}


def test_storage_update(app: QueueTasks) -> None:
    seen: list[tuple[Any, dict[str, Any]]] = []

    class Probe:
        @hookimpl
        def storage_update(self, storage: Any, kw: dict[str, Any]) -> Any:
            seen.append((storage, dict(kw)))
            return {**kw, "cancel_reason": "rewritten by storage plugin"}

    queued = app.add_task("anything")
    app.add_plugin(Probe(), name="probe")
    assert app.cancel(queued.uuid, "why") is True
    assert seen == [
        (app.storage, {"uuid": queued.uuid, "status": "cancel", "cancel_reason": "why"})
    ]
    got = app.get(queued.uuid)
    assert got is not None
    assert got.status == "cancel" and got.cancel_reason == "rewritten by storage plugin"


def test_storage_remove_finished_task(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, Any]] = []

    class Probe:
        @hookimpl
        def storage_remove_finished_task(self, storage: Any, task_broker: Any, model: Any) -> None:
            seen.append((storage, task_broker, model))

    @app.task
    def answer(x: int) -> int:
        return x * 2

    @app.task
    def fail() -> None:
        raise ValueError("nope")

    app.add_plugin(Probe(), name="probe")
    with app.running_worker():
        done = app.add_task("answer", 21, timeout=10)
        failed = app.add_task("fail", timeout=10)
    assert done.returning == 42 and failed.status == "error"
    (storage, task_broker, model), (_, failed_broker, failed_model) = seen
    assert storage is app.storage
    assert isinstance(task_broker, TaskPrioritySchema)
    assert (task_broker.uuid, task_broker.task_name, task_broker.args) == (
        done.uuid,
        "answer",
        (21,),
    )
    assert isinstance(model, TaskStatusSuccessSchema)
    assert model.uuid == done.uuid and model.returning == 42
    assert failed_broker.uuid == failed.uuid
    assert isinstance(failed_model, TaskStatusErrorSchema) and failed_model.status == "error"
    assert "ValueError: nope" in failed_model.traceback


def test_storage_start(app: QueueTasks) -> None:
    seen: list[Any] = []

    class Probe:
        @hookimpl
        def storage_start(self, storage: Any) -> None:
            seen.append(storage)

    app.add_plugin(Probe(), name="probe")
    assert seen == []
    app.add_task("anything")
    app.ping()
    assert seen == [app.storage]


def test_storage_stop(app: QueueTasks) -> None:
    seen: list[Any] = []

    class Probe:
        @hookimpl
        def storage_stop(self, storage: Any) -> None:
            seen.append(storage)

    app.add_plugin(Probe(), name="probe")
    app.add_task("anything")
    assert seen == []
    app.stop()
    assert seen == [app.storage]


def test_storage_add_process(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, int]] = []

    class Probe:
        @hookimpl
        def storage_add_process(self, storage: Any, task_data: Any, priority: int) -> Any:
            seen.append((storage, task_data, priority))
            return {
                "task_data": task_data.model_copy(update={"updated_at": MARKED_TIME}),
                "priority": 8,
            }

    @app.task(echo=True)
    async def look(ctx: TaskContext) -> list[Any]:
        stored = await ctx.get_task(ctx.task_uuid)
        return [ctx.task_broker.priority, stored.status, stored.updated_at.timestamp()]

    app.add_plugin(Probe(), name="probe")
    with app.running_worker() as worker:
        done = app.add_task("look", priority=1, timeout=10)
    storage, task_data, priority = seen[0]
    assert storage is app.storage
    assert isinstance(task_data, TaskStatusProcessSchema)
    assert (task_data.uuid, task_data.task_name, task_data.status) == (done.uuid, "look", "process")
    assert task_data.worker == worker.id and task_data.priority == 1
    assert priority == 1
    seen_priority, stored_status, stored_updated_at = done.returning
    # The replaced priority is the one the task runs with ...
    assert seen_priority == 8
    # ... and the replaced record is the one the task has while it runs.
    assert stored_status == "process"
    assert stored_updated_at == MARKED_TIME


def test_storage_running_older_tasks(app: QueueTasks, worker_log: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[Any, Any, list[str]]] = []

    class Probe:
        @hookimpl
        def storage_running_older_tasks(
            self, storage: Any, worker: Any, task_data: list[str]
        ) -> Any:
            seen.append((storage, worker, list(task_data)))
            return {"task_data": [f"reported-{uuid}" for uuid in task_data]}

    @app.task
    def survive() -> str:
        return "ran again"

    app.add_plugin(Probe(), name="probe")
    lost = abandon(app, "survive")
    with app.running_worker() as worker:
        done = app.wait(lost.uuid, timeout=10)
    assert seen == [(app.storage, worker, [lost.uuid])]
    assert done.status == "success"  # the tasks were already back in the queue
    recovered = [r.getMessage() for r in worker_log.records if "recovered" in r.getMessage()]
    assert len(recovered) == 1
    # The worker logs and reports the replaced list.
    assert f"reported-{lost.uuid}" in recovered[0]


def test_storage_delete_finished_tasks(app: QueueTasks) -> None:
    seen: list[Any] = []

    class Probe:
        @hookimpl
        def storage_delete_finished_tasks(self, storage: Any) -> None:
            seen.append(storage)

    @app.task
    def noop() -> None:
        return None

    with app.running_worker():
        finished = app.add_task("noop", timeout=10)
    queued = app.add_task("noop")
    app.add_plugin(Probe(), name="probe")
    assert call(app, app.storage.delete_finished_tasks()) >= 1
    assert seen == [app.storage]
    assert app.get(finished.uuid) is None
    assert app.get(queued.uuid) is not None


def test_storage_flush_all(app: QueueTasks) -> None:
    events: list[tuple[str, Any]] = []

    class Probe:
        @hookimpl
        def broker_flush_all(self, broker: Any) -> None:
            events.append(("broker_flush_all", broker))

        @hookimpl
        def storage_flush_all(self, storage: Any) -> None:
            events.append(("storage_flush_all", storage))

    added = app.add_task("anything")
    app.add_plugin(Probe(), name="probe")
    app.flush_all()
    assert events == [("broker_flush_all", app.broker), ("storage_flush_all", app.storage)]
    assert app.get(added.uuid) is None


# -------------------------------------------------------------------------
# Worker (worker_*)
# -------------------------------------------------------------------------


def test_worker_execute_before(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, Any, Any]] = []
    executor_models: list[Any] = []

    class Probe:
        @hookimpl
        def worker_execute_before(
            self, worker: Any, task_broker: Any, task_func: Any, model: Any
        ) -> Any:
            seen.append((worker, task_broker, task_func, model))
            return model.model_copy(update={"priority": 6, "updated_at": MARKED_TIME})

        @hookimpl
        def task_executor_middlewares_execute(self, task_executor: Any) -> None:
            executor_models.append(task_executor.model)

    @app.task(echo=True)
    async def look(ctx: TaskContext) -> Any:
        stored = await ctx.get_task(ctx.task_uuid)
        return [stored.status, stored.priority, stored.updated_at.timestamp()]

    app.add_plugin(Probe(), name="probe")
    with app.running_worker() as worker:
        done = app.add_task("look", priority=4, timeout=10)
    worker_, task_broker, task_func, model = seen[0]
    assert worker_ is worker and task_func is app.tasks["look"]
    assert isinstance(task_broker, TaskPrioritySchema) and task_broker.uuid == done.uuid
    assert isinstance(model, TaskStatusProcessSchema)
    assert (model.uuid, model.task_name, model.priority) == (done.uuid, "look", 4)
    assert (model.status, model.worker) == ("process", worker.id)
    # The executor runs with the replaced state ...
    assert [(m.priority, m.updated_at) for m in executor_models] == [(6, MARKED_TIME)]
    # ... and, "replaces the state stored", the task's record while it runs is it.
    assert done.returning == ["process", 6, MARKED_TIME]


def test_worker_execute_after(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, Any, Any]] = []

    class Probe:
        @hookimpl
        def worker_execute_after(
            self, worker: Any, task_func: Any, task_broker: Any, model: Any
        ) -> None:
            seen.append((worker, task_func, task_broker, model))

    @app.task(echo=True)
    def outcome(ctx: TaskContext, kind: str) -> str:
        if kind == "cancel":
            ctx.cancel("asked to")
        return kind

    app.add_plugin(Probe(), name="probe")
    with app.running_worker() as worker:
        done = app.add_task("outcome", "ok", timeout=10)
        cancelled = app.add_task("outcome", "cancel", timeout=10)
        unknown = app.add_task("not_registered", timeout=10)
    assert (done.status, cancelled.status, unknown.status) == ("success", "cancel", "error")
    (w, task_func, task_broker, model), second, third = seen
    assert w is worker and task_func is app.tasks["outcome"]
    assert isinstance(task_broker, TaskPrioritySchema) and task_broker.uuid == done.uuid
    assert isinstance(model, TaskStatusSuccessSchema) and model.returning == "ok"
    assert isinstance(second[3], TaskStatusCancelSchema)
    assert second[3].uuid == cancelled.uuid and second[3].cancel_reason == "asked to"
    # A task unknown to this worker: task_func is None, the state an error.
    assert third[1] is None and third[2].uuid == unknown.uuid
    assert isinstance(third[3], TaskStatusErrorSchema) and third[3].status == "error"


def test_worker_add(app: QueueTasks) -> None:
    """Also the proof that an ``async def`` impl with a return works in the worker."""
    seen: list[dict[str, Any]] = []

    class AsyncProbe:
        @hookimpl
        async def worker_add(
            self,
            worker: Any,
            task_name: str,
            uuid: str,
            priority: int,
            args: Any,
            kw: Any,
            created_at: float,
        ) -> Any:
            await asyncio.sleep(0)  # a real await on the worker's loop
            seen.append(
                {
                    "worker": worker,
                    "task_name": task_name,
                    "uuid": uuid,
                    "priority": priority,
                    "args": args,
                    "kw": dict(kw),
                    "created_at": created_at,
                }
            )
            return {"kw": {"y": 100}}

    @app.task
    def plus(x: int, y: int = 0) -> int:
        return x + y

    app.add_plugin(AsyncProbe(), name="async-probe")
    queued = app.add_task("plus", 1, y=2, priority=5)
    with app.running_worker() as worker:
        done = app.wait(queued.uuid, timeout=10)
    assert done.returning == 101
    assert len(seen) == 1
    call_ = seen[0]
    assert call_["worker"] is worker
    assert (call_["task_name"], call_["uuid"], call_["priority"]) == ("plus", queued.uuid, 5)
    assert call_["args"] == (1,) and call_["kw"] == {"y": 2}
    assert call_["created_at"] == pytest.approx(queued.created_at.timestamp(), abs=1e-3)


def test_worker_start(app: QueueTasks) -> None:
    seen: list[Any] = []

    class Probe:
        @hookimpl
        async def worker_start(self, worker: Any) -> None:
            await asyncio.sleep(0)
            seen.append(worker)

    app.add_plugin(Probe(), name="probe")
    worker = app.worker()
    Starter(app, worker, burst=True).start()
    assert seen == [worker]


def test_worker_stop(app: QueueTasks) -> None:
    seen: list[tuple[Any, list[str]]] = []

    class Probe:
        @hookimpl
        def worker_stop(self, worker: Any) -> None:
            seen.append((worker, worker.running))

    @app.task
    def noop() -> None:
        return None

    app.add_plugin(Probe(), name="probe")
    with app.running_worker() as worker:
        app.add_task("noop", timeout=10)
        assert seen == []
    assert seen == [(worker, [])]


def test_worker_run_task_before(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, Any]] = []

    class Probe:
        @hookimpl
        def worker_run_task_before(self, worker: Any, task_func: Any, task_broker: Any) -> Any:
            seen.append((worker, task_func, task_broker))
            return {"task_broker": task_broker.model_copy(update={"args": (20,)})}

    @app.task
    def double(x: int) -> int:
        return x * 2

    app.add_plugin(Probe(), name="probe")
    with app.running_worker() as worker:
        done = app.add_task("double", 1, timeout=10)
    assert done.returning == 40
    worker_, task_func, task_broker = seen[0]
    assert worker_ is worker and task_func is app.tasks["double"]
    assert isinstance(task_broker, TaskPrioritySchema)
    assert (task_broker.uuid, task_broker.task_name, task_broker.args) == (
        done.uuid,
        "double",
        (1,),
    )
    assert task_broker.attempts == 1


def test_worker_task_error_retry(app: QueueTasks) -> None:
    seen: list[dict[str, Any]] = []
    runs: list[int] = []

    class Probe:
        @hookimpl
        def worker_task_error_retry(
            self,
            worker: Any,
            broker: Any,
            task_func: Any,
            task_broker: Any,
            trace: str,
            exc: BaseException,
            model: Any,
        ) -> Any:
            seen.append(
                {
                    "worker": worker,
                    "broker": broker,
                    "task_func": task_func,
                    "task_broker": task_broker,
                    "trace": trace,
                    "exc": exc,
                    "model": model,
                }
            )
            return model.model_copy(update={"status": "retry", "retry": 0, "retry_delay": 0.01})

    @app.task  # no retry option: the retry is the plugin's decision alone
    def flaky() -> str:
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("first run fails")
        return "second run"

    app.add_plugin(Probe(), name="probe")
    with app.running_worker() as worker:
        done = app.add_task("flaky", timeout=10)
    assert done.status == "success" and done.returning == "second run"
    assert len(runs) == 2 and done.attempts == 2
    (call_,) = seen
    assert call_["worker"] is worker and call_["broker"] is app.broker
    assert call_["task_func"] is app.tasks["flaky"]
    assert isinstance(call_["task_broker"], TaskPrioritySchema)
    assert call_["task_broker"].uuid == done.uuid
    assert "ValueError: first run fails" in call_["trace"]
    assert isinstance(call_["exc"], ValueError)
    model = call_["model"]
    assert isinstance(model, TaskStatusErrorSchema)
    assert (model.uuid, model.status) == (done.uuid, "error")
    assert model.traceback == call_["trace"]


def test_worker_task_error_retry_chains_after_the_builtin_retry(app: QueueTasks) -> None:
    """With ``retry=1`` the built-in plugin (tryfirst) already returned a retry model:
    a later impl sees it as ``model``, and returning ``None`` keeps it."""
    models: list[Any] = []
    runs: list[int] = []

    class Probe:
        @hookimpl
        def worker_task_error_retry(self, model: Any) -> None:
            models.append(model)

    @app.task(retry=1, retry_backoff=0.01)
    def always_fails() -> None:
        runs.append(1)
        raise RuntimeError("down")

    app.add_plugin(Probe(), name="probe")
    with app.running_worker():
        done = app.add_task("always_fails", timeout=10)
    assert done.status == "error" and len(runs) == 2 and done.attempts == 2
    assert [(m.status, m.retry) for m in models] == [("retry", 0), ("error", None)]


def test_worker_task_error_retry_fires_for_every_cause_of_failure(app: QueueTasks) -> None:
    """An unknown task name, a plugin failing the task and max_time fire it too, each
    saying whether a retry may follow; a retry returned where none may is not kept."""
    seen: dict[str, tuple[Any, bool, str]] = {}

    class Reporter:
        @hookimpl
        def worker_task_error_retry(
            self, task_broker: Any, task_func: Any, exc: BaseException, retryable: bool
        ) -> Any:
            seen[task_broker.task_name] = (task_func, retryable, type(exc).__name__)
            return TaskStatusErrorSchema(
                uuid=task_broker.uuid, traceback="reported", status="retry", retry=3
            )

    class Veto:
        @hookimpl
        def worker_execute_after(self, task_broker: Any) -> None:
            if task_broker.task_name == "vetoed":
                raise PermissionError("not today")

    @app.task(max_time=0.05)
    async def slow() -> None:
        await asyncio.sleep(5)

    @app.task
    def vetoed() -> int:
        return 1

    app.add_plugin(Reporter(), name="reporter")
    app.add_plugin(Veto(), name="veto")
    with app.running_worker():
        unknown = app.add_task("nobody_has_it", timeout=10)
        plugin = app.add_task("vetoed", timeout=10)
    assert seen["nobody_has_it"] == (None, False, "TaskNotFoundError")
    assert seen["vetoed"] == (app.tasks["vetoed"], False, "PermissionError")
    for done in (unknown, plugin):
        assert done.status == "error" and done.attempts == 1  # its retry was not kept
    seen.clear()
    with app.running_worker():
        timed_out = app.add_task("slow")
        eventually(lambda: "slow" in seen)
    assert seen["slow"] == (app.tasks["slow"], True, "TimeoutError")
    # Retryable: the reporter's retry was kept, so it waits for its next attempt.
    assert app.get(timed_out.uuid).status == "retry"  # type: ignore[union-attr]


def test_worker_task_error_retry_fires_once_per_attempt(app: QueueTasks) -> None:
    """A task that raises, then a plugin failing after it: one report per attempt, and
    the task's own error kept beside the plugin's."""
    reports: list[tuple[str, bool, str]] = []

    class Reporter:
        @hookimpl
        def worker_task_error_retry(self, exc: BaseException, retryable: bool, model: Any) -> None:
            reports.append((type(exc).__name__, retryable, model.status))

    class Broken:
        @hookimpl
        def worker_execute_after(self) -> None:
            raise PermissionError("audit store is down")

    @app.task(retry=2, retry_backoff=0.01)
    def boom() -> None:
        raise ValueError("task's own")

    app.add_plugin(Reporter(), name="reporter")
    app.add_plugin(Broken(), name="broken")
    with app.running_worker():
        done = app.add_task("boom", timeout=10)
    # Each attempt reported once, and what was reported holds: two retries, then the end.
    assert reports == [("ValueError", True, "retry")] * 2 + [("ValueError", True, "error")]
    assert done.status == "error" and done.attempts == 3
    assert "task's own" in (done.traceback or "") and "audit store" in (done.traceback or "")


def test_worker_remove_finished_task(app: QueueTasks) -> None:
    seen: list[tuple[Any, Any, Any, Any, Any]] = []

    class Probe:
        @hookimpl
        def worker_remove_finished_task(
            self, worker: Any, broker: Any, task_func: Any, task_broker: Any, model: Any
        ) -> Any:
            seen.append((worker, broker, task_func, task_broker, model))
            return {"model": TaskStatusCancelSchema(uuid=model.uuid, cancel_reason="vetoed")}

    @app.task
    def answer() -> int:
        return 42

    app.add_plugin(Probe(), name="probe")
    with app.running_worker() as worker:
        done = app.add_task("answer", timeout=10)
    assert done.status == "cancel" and done.cancel_reason == "vetoed"
    worker_, broker, task_func, task_broker, model = seen[0]
    assert worker_ is worker and broker is app.broker and task_func is app.tasks["answer"]
    assert isinstance(task_broker, TaskPrioritySchema) and task_broker.uuid == done.uuid
    assert isinstance(model, TaskStatusSuccessSchema) and model.returning == 42


# -------------------------------------------------------------------------
# Stats (stats_*)
# -------------------------------------------------------------------------


def test_stats_inspect(app: QueueTasks) -> None:
    seen: list[Any] = []

    class Probe:
        @hookimpl
        def stats_inspect(self, stats: Any) -> None:
            seen.append(stats)

    app.add_task("anything", priority=3)
    app.add_plugin(Probe(), name="probe")
    stats = Stats(app)
    snapshot = stats.inspect()
    assert seen == [stats] and stats.app is app
    assert snapshot.queued == {3: 1} and "probe" in snapshot.plugins


# -------------------------------------------------------------------------
# schedule_* (an extension beyond the reference's 52)
# -------------------------------------------------------------------------


def test_schedule_fired(app: QueueTasks) -> None:
    seen: list[tuple[str, str, Any]] = []

    class Probe:
        @hookimpl
        def schedule_fired(self, scheduler: Any, schedule: Any, tick: Any, uuid: str) -> None:
            seen.append((schedule.name, uuid, tick))

    app.add_plugin(Probe())

    @app.periodic(every=0.2, name="pulse")
    def pulse() -> None: ...

    with app.running_worker(), app.running_worker():  # two schedulers, one fire per tick
        time.sleep(0.75)
    assert 2 <= len(seen) <= 4, seen
    assert len({uuid for _, uuid, _ in seen}) == len(seen)
    for name, uuid, tick in seen:
        assert name == "pulse" and uuid == f"periodic:pulse:{round(tick.timestamp() * 1000)}"
        assert app.get(uuid) is not None


def test_schedule_missed(app: QueueTasks) -> None:
    seen: list[tuple[int, Any]] = []

    class Probe:
        @hookimpl
        def schedule_missed(self, scheduler: Any, schedule: Any, missed: Any, fired: Any) -> None:
            seen.append((len(missed), fired))

    app.add_plugin(Probe())

    @app.periodic(every=0.2, name="pulse")
    def pulse() -> None: ...

    with app.running_worker():
        time.sleep(0.3)
    time.sleep(0.9)  # four ticks or so fall while no scheduler runs
    with app.running_worker():
        time.sleep(0.1)
    [(count, fired)] = seen
    assert count >= 3 and fired is not None  # missed="once": the latest of them runs


# -------------------------------------------------------------------------
# Async and sync impls in one chain, in the real worker
# -------------------------------------------------------------------------


def test_async_and_sync_impls_chain_in_the_worker(app: QueueTasks) -> None:
    order: list[tuple[str, Any]] = []

    class SyncPlugin:
        @hookimpl
        def task_executor_run_task(self, result: Any) -> Any:
            order.append(("sync", result))
            return f"{result}+sync"

    class AsyncPlugin:
        @hookimpl
        async def task_executor_run_task(self, result: Any) -> Any:
            await asyncio.sleep(0.001)
            order.append(("async", result))
            return f"{result}+async"

    @app.task
    def base() -> str:
        return "base"

    # Among plain impls the last registered runs first: async, then sync.
    app.add_plugin(SyncPlugin(), name="sync-plugin")
    app.add_plugin(AsyncPlugin(), name="async-plugin")
    with app.running_worker():
        done = app.add_task("base", timeout=10)
    assert order == [("async", "base"), ("sync", "base+async")]
    assert done.returning == "base+async+sync"


# -------------------------------------------------------------------------
# Meta: every trigger has a test here, and the core fires every trigger
# -------------------------------------------------------------------------


def test_every_trigger_has_a_test_here() -> None:
    names = trigger_names()
    # The reference's 52, and the extensions (schedule_*, broker_add_failed,
    # storage_status_changed).
    assert len(names) == 56
    missing = [name for name in names if not callable(globals().get(f"test_{name}"))]
    assert missing == []


def test_every_trigger_is_fired_by_the_core() -> None:
    root = Path(qtasks_core.__file__).parent
    source = "\n".join(path.read_text() for path in sorted(root.rglob("*.py")))
    # An observer trigger whose impls are called one by one (each failure isolated)
    # reads them with get_hookimpls.
    never_fired = [
        name
        for name in trigger_names()
        if f"hook.{name}(" not in source and f"hook.{name}.get_hookimpls()" not in source
    ]
    assert never_fired == []
