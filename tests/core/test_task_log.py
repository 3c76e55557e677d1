"""The task log (``qtasks.tasklog``): a worker logs each task it finishes on
``qtasks.tasks``, with the fields as record attributes; a producer logs nothing; the
plugin is switched off like any built-in. On Redis and on the in-memory backend."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from qtasks_core import QueueTasks
from qtasks_core.starter import Starter
from tests.conftest import MakeApp

FIELDS = {
    "task_name",
    "uuid",
    "status",
    "duration",
    "attempt",
    "worker",
    "error_type",
    "error",
    "retry_delay",
    "reason",
}


@pytest.fixture
def app(make_app: MakeApp) -> QueueTasks:
    return make_app()


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    caplog.set_level(logging.DEBUG, logger="qtasks.tasks")
    return lambda: [r for r in caplog.records if r.name == "qtasks.tasks"]


def _drain(app: QueueTasks, **options: Any) -> str:
    """Run a worker until the queue is empty; its id."""
    worker = app.worker(**options)
    Starter(app, worker, burst=True).start()
    return str(worker.id)


def _finished(records: list[logging.LogRecord], uuid: str) -> list[logging.LogRecord]:
    """The lines above DEBUG about ``uuid``."""
    return [r for r in records if r.levelno > logging.DEBUG and r.uuid == uuid]  # type: ignore[attr-defined]


def test_success_line_has_duration_attempt_and_worker(app: QueueTasks, lines: Any) -> None:
    @app.task(name="nap")
    async def nap(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "rested"

    uuid = app.add_task("nap", 0.05).uuid
    worker = _drain(app)

    [line] = _finished(lines(), uuid)
    assert line.levelno == logging.INFO
    assert re.match(rf"task nap\[{uuid}\] succeeded in \d+\.\d{{4}}s ", line.getMessage())
    assert f"(attempt 1, worker {worker})" in line.getMessage()
    assert {name: getattr(line, name) for name in FIELDS} == {
        "task_name": "nap",
        "uuid": uuid,
        "status": "success",
        "duration": line.duration,  # type: ignore[attr-defined]
        "attempt": 1,
        "worker": worker,
        "error_type": None,
        "error": None,
        "retry_delay": None,
        "reason": None,
    }
    # From the start of the run to its outcome: at least the task's own sleep.
    assert line.duration >= 0.05  # type: ignore[attr-defined]


def test_failure_line_names_the_exception(app: QueueTasks, lines: Any) -> None:
    @app.task(name="parse")
    def parse(text: str) -> int:
        return int(text)

    uuid = app.add_task("parse", "seven").uuid
    _drain(app)

    [line] = _finished(lines(), uuid)
    assert line.levelno == logging.WARNING
    message = "ValueError: invalid literal for int() with base 10: 'seven'"
    assert line.getMessage().endswith(f"(attempt 1, worker {line.worker}): {message}")  # type: ignore[attr-defined]
    assert (line.status, line.error_type, line.error) == ("error", "ValueError", message)  # type: ignore[attr-defined]
    assert line.duration is not None  # type: ignore[attr-defined]
    assert line.reason == "ValueError"  # type: ignore[attr-defined]


def test_retry_then_error_lines(app: QueueTasks, lines: Any) -> None:
    @app.task(name="flaky", retry=1, retry_backoff=0.01, retry_jitter=False)
    async def flaky() -> None:
        raise ConnectionError("upstream down")

    uuid = app.add_task("flaky").uuid
    _drain(app)

    retry, error = _finished(lines(), uuid)
    assert [r.levelno for r in (retry, error)] == [logging.WARNING, logging.WARNING]
    assert (retry.status, retry.attempt) == ("retry", 1)  # type: ignore[attr-defined]
    delay = retry.retry_delay  # type: ignore[attr-defined]
    assert delay == 0.01
    assert f", retry in {delay:g}s: ConnectionError: upstream down" in retry.getMessage()
    assert (error.status, error.attempt, error.retry_delay) == ("error", 2, None)  # type: ignore[attr-defined]
    assert error.error == "ConnectionError: upstream down"  # type: ignore[attr-defined]


def test_cancelled_run_is_an_info_line(app: QueueTasks, lines: Any) -> None:
    from qtasks_core.errors import TaskCancel

    @app.task(name="skip")
    def skip() -> None:
        raise TaskCancel("nothing to do")

    uuid = app.add_task("skip").uuid
    _drain(app)

    [line] = _finished(lines(), uuid)
    assert line.levelno == logging.INFO
    assert line.status == "cancel"  # type: ignore[attr-defined]
    assert f"task skip[{uuid}] cancelled in " in line.getMessage()
    assert line.getMessage().endswith(": nothing to do")


def test_lease_expiry_line(app: QueueTasks, lines: Any) -> None:
    """A task whose worker died is queued again: the worker that finds it says so."""

    @app.task(name="crash")
    def crash() -> None: ...

    uuid = app.add_task("crash").uuid
    # A worker that claimed it and died: its lease of 50 ms runs out.
    app._portal.call(app.backend.claim(1, "dead-worker", 0.05, 0))
    app._portal.call(asyncio.sleep(0.1))
    _drain(app)

    requeued, ran = _finished(lines(), uuid)
    assert requeued.levelno == logging.WARNING
    assert (requeued.status, requeued.reason) == ("new", "lease_expired")  # type: ignore[attr-defined]
    assert f"task [{uuid}] requeued: its worker stopped renewing the lease" in (
        requeued.getMessage()
    )
    assert (ran.status, ran.attempt) == ("success", 2)  # type: ignore[attr-defined]


def test_dead_letter_line(app: QueueTasks, lines: Any) -> None:
    """A message that cannot be read is set aside: a line of its own."""

    @app.task(name="read")
    def read(x: int) -> int:
        return x

    uuid = app.add_task("read", 1).uuid
    app._portal.call(app.storage.update(uuid=uuid, args="[1"))
    _drain(app)

    [dead] = _finished(lines(), uuid)
    assert dead.levelno == logging.ERROR
    assert (dead.status, dead.reason) == ("dead", "malformed")  # type: ignore[attr-defined]
    assert dead.getMessage().startswith(
        f"task read[{uuid}] set aside as a dead letter: malformed message: "
    )


def test_a_run_starting_is_a_debug_line(app: QueueTasks, lines: Any) -> None:
    @app.task(name="ok")
    def ok() -> None: ...

    uuid = app.add_task("ok").uuid
    worker = _drain(app)

    debug = [r for r in lines() if r.levelno == logging.DEBUG and r.uuid == uuid]  # type: ignore[attr-defined]
    assert [r.getMessage() for r in debug] == [
        f"task ok[{uuid}] started (attempt 1, worker {worker})"
    ]


def test_a_producer_logs_nothing(app: QueueTasks, lines: Any) -> None:
    """No worker runs in this process: enqueues and cancels stay out of the log."""

    @app.task(name="ok")
    def ok() -> None: ...

    uuid = app.add_task("ok").uuid
    assert app.cancel(uuid)

    assert lines() == []


@pytest.mark.parametrize("how", ["block_plugins", "environment"])
def test_switched_off_like_any_builtin(
    make_app: MakeApp, lines: Any, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "environment":
        monkeypatch.setenv("QTASKS_DISABLE_PLUGINS", "qtasks.tasklog")
        app = make_app()
    else:
        app = make_app(block_plugins=["qtasks.tasklog"])

    @app.task(name="fail")
    def fail() -> None:
        raise RuntimeError("quiet")

    app.add_task("fail")
    _drain(app)

    assert lines() == []
    assert "qtasks.tasklog" not in [info.name for info in app.pm.plugin_infos()]


def test_after_the_worker_stopped_the_process_logs_as_a_producer(
    app: QueueTasks, lines: Any
) -> None:
    """Once the worker stopped, the process is a producer again."""

    @app.task(name="ok")
    def ok() -> None: ...

    app.add_task("ok")
    _drain(app)
    before = len(lines())
    uuid = app.add_task("ok").uuid
    app.cancel(uuid)

    assert len(lines()) == before


def test_the_task_log_leaves_the_status_change_feed_off(app: QueueTasks, lines: Any) -> None:
    """The engine collects status changes only while a plugin listens to them: the task
    log, on by default, must not be one, or every worker would pay for the feed."""

    @app.task(name="look")
    def look() -> list[str]:
        return [impl.plugin_name for impl in app.pm.hook.storage_status_changed.get_hookimpls()]

    uuid = app.add_task("look").uuid
    _drain(app)

    task = app.get(uuid)
    assert task is not None and (task.status, task.returning) == ("success", [])
    assert [line.status for line in _finished(lines(), uuid)] == ["success"]  # type: ignore[attr-defined]


def test_a_task_line_has_every_attribute_a_record_made_by_logging_has() -> None:
    # Lines are made without LogRecord() (it is half a line's cost): what a formatter
    # or a filter reads must still be there, with the values logging would give.
    import threading

    from qtasks_core.cli import _TextFormatter
    from qtasks_core.plugins import tasklog

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("qtasks.tasks")
    keep = Keep()
    logger.addHandler(keep)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        tasklog._emit(logging.WARNING, "task t[u] failed", {"task_name": "t", "uuid": "u"})
        logger.warning("reference", extra={"task_name": "t", "uuid": "u"})
    finally:
        logger.removeHandler(keep)
        logger.setLevel(old)
    ours, theirs = records
    assert set(vars(ours)) == set(vars(theirs))
    assert ours.getMessage() == "task t[u] failed"
    assert (ours.levelname, ours.levelno, ours.name) == ("WARNING", logging.WARNING, "qtasks.tasks")
    assert (ours.filename, ours.module) == ("tasklog.py", "tasklog")
    assert (ours.process, ours.processName) == (theirs.process, theirs.processName)
    assert (ours.thread, ours.threadName) == (threading.get_ident(), theirs.threadName)
    assert abs(ours.created - theirs.created) < 5 and 0 <= ours.msecs < 1000
    assert (ours.task_name, ours.uuid) == ("t", "u")  # type: ignore[attr-defined]
    # The CLI's text format reads the time once a second; the line is logging's own.
    fmt = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    assert _TextFormatter(fmt).format(ours) == logging.Formatter(fmt).format(ours)
    assert _TextFormatter(fmt).format(theirs) == logging.Formatter(fmt).format(theirs)
