"""The ``qtasks`` command line: through typer's runner and as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from qtasks_core import BackendError, QueueTasks
from qtasks_core.cli import cli
from qtasks_core.keys import Keys
from tests.support import pythonpath, wait_for

from .apps import sample

HERE = Path(__file__).resolve().parent
runner = CliRunner()


@pytest.fixture
def sample_env(sample_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The integration tests' environment; the apps the commands import here are
    imported afresh, under this test's app name."""
    sys.modules.pop("apps.lifecycle", None)
    yield sample_env
    sys.modules.pop("apps.lifecycle", None)


def producer(env: dict[str, str]) -> QueueTasks:
    return QueueTasks(
        env["QTASKS_TEST_APP"], redis_url=env["QTASKS_REDIS_URL"], load_entry_points=False
    )


def executions(env: dict[str, str]) -> dict[str, int]:
    client = redis.Redis.from_url(env["QTASKS_REDIS_URL"], decode_responses=True)
    return sample.executions(client, env["QTASKS_TEST_APP"])


def start_worker(
    env: dict[str, str], *args: str, app: str = "apps.sample:app"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "qtasks_core", "worker", "-A", app, *args],
        env=env,
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# -- errors are one-line messages ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "-A", "no_such_module:app"], "cannot import 'no_such_module'"),
        (["worker", "-A", "apps.sample:nothing"], "has no attribute 'nothing'"),
        (["worker", "-A", "apps.sample"], "must look like 'module:app'"),
        (["worker", "-A", "apps.sample:record"], "not a QueueTasks app"),
        (["add", "-A", "apps.sample:app", "noop", "--kwargs", "{bad"], "--kwargs is not valid"),
        (["worker", "-A", "apps.sample:app", "--log-format", "xml"], "--log-format 'xml'"),
        (
            ["worker", "-A", "apps.lifecycle:make()"],
            "--app apps.lifecycle:make(): the factory apps.lifecycle.make() raised "
            "TypeError: make() needs a settings object",
        ),
        (["stats", "-A", "apps.sample:app()"], "app is a QueueTasks, not a factory"),
        (["add", "-A", "apps.sample:app", "nop", "x"], "has no task 'nop': did you mean 'noop'"),
        (["add", "-A", "apps.lifecycle:app", "zzz"], "its tasks: also_fails, fails, lingers"),
        (["retry", "-A", "apps.sample:app"], "give a task's id or --failed"),
        (["retry", "-A", "apps.sample:app", "some-id", "--failed"], "give a task's id or"),
        (["retry", "-A", "apps.sample:app", "--name", "noop"], "--name filters --failed"),
    ],
)
def test_user_errors_print_one_line_and_exit_non_zero(sample_env, args, message) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qtasks: error:")
    assert message in lines[0]


def test_a_redis_that_does_not_answer_names_its_url(sample_env) -> None:
    result = runner.invoke(
        cli, ["stats", "-A", "apps.sample:app", "--redis-url", "redis://:secret@127.0.0.1:1/0"]
    )
    assert result.exit_code == 2
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in result.output
    assert "secret" not in result.output


def test_a_bad_option_exits_non_zero() -> None:
    result = runner.invoke(cli, ["worker", "-A", "apps.sample:app", "--concurrency", "0"])
    assert result.exit_code != 0


# -- add and stats ---------------------------------------------------------------------


def test_add_waits_and_prints_the_result_and_stats_shows_it(sample_env) -> None:
    worker = start_worker(sample_env)
    try:
        plain = runner.invoke(
            cli, ["add", "-A", "apps.sample:factory()", "noop", "hello", "--wait", "20"]
        )
        whole = runner.invoke(
            cli, ["add", "-A", "apps.sample:app", "noop", "again", "--wait", "20", "--json"]
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert plain.exit_code == 0, plain.output
    uuid, outcome = plain.output.strip().split(" ", 1)
    assert outcome == 'success: "hello"'
    assert producer(sample_env).get(uuid).returning == "hello"  # type: ignore[union-attr]
    assert whole.exit_code == 0, whole.output
    task = json.loads(whole.output)
    assert task["status"] == "success" and task["returning"] == "again"
    assert task["task_name"] == "noop" and task["args"] == ["again"]
    stats = runner.invoke(cli, ["stats", "-A", "apps.sample:app", "--json"])
    assert stats.exit_code == 0
    assert json.loads(stats.output)["status_counts"]["success"] >= 2


def test_add_converts_the_shell_words_by_the_tasks_annotations(sample_env) -> None:
    """The shell gives words: an int parameter gets 007 as 7, a str one gets 12345 as
    text, a datetime its ISO form; a word past the named parameters is a JSON value."""
    words = ["007", "12345", "2026-12-07T09:30", "42", "plain"]
    added = runner.invoke(cli, ["add", "-A", "apps.lifecycle:app", "typed", *words])
    assert added.exit_code == 0, added.output
    task = producer(sample_env).get(added.output.strip())
    assert task is not None
    assert task.args == (7, "12345", "2026-12-07T09:30:00", 42, "plain")
    bad = runner.invoke(cli, ["add", "-A", "apps.lifecycle:app", "typed", "seven", "x", "now"])
    assert bad.exit_code == 2
    assert "argument 1 (count: int) 'seven': Input should be a valid integer" in bad.output


def test_add_without_wait_prints_the_id_to_follow(sample_env) -> None:
    added = runner.invoke(cli, ["add", "-A", "apps.sample:app", "noop", "later"])
    assert added.exit_code == 0, added.output
    app = producer(sample_env)
    task = app.get(added.output.strip())
    assert task is not None and (task.status, task.args) == ("new", ("later",))
    as_json = runner.invoke(cli, ["add", "-A", "apps.sample:app", "noop", "x", "--json"])
    assert json.loads(as_json.output)["status"] == "new"
    app.stop()


def test_add_wait_prints_the_error_and_exits_1(sample_env) -> None:
    worker = start_worker(sample_env, app="apps.lifecycle:app")
    try:
        result = runner.invoke(
            cli, ["add", "-A", "apps.lifecycle:app", "fails", "x", "--wait", "20"]
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert result.exit_code == 1, result.output
    assert result.output.strip().endswith(" error: ValueError: bad input x")


def test_add_force_sends_a_name_only_a_workers_app_declares(sample_env) -> None:
    refused = runner.invoke(cli, ["add", "-A", "apps.sample:app", "elsewhere"])
    assert refused.exit_code == 2 and "--force" in refused.output
    forced = runner.invoke(cli, ["add", "-A", "apps.sample:app", "elsewhere", "1", "--force"])
    assert forced.exit_code == 0, forced.output
    app = producer(sample_env)
    task = app.get(forced.output.strip())
    assert task is not None and (task.task_name, task.args) == ("elsewhere", (1,))
    app.stop()


def test_add_knows_the_shared_tasks_of_the_app(sample_env) -> None:
    """A library's shared_task joins the app when it starts: it is no unknown name."""
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "qtasks_core",
            "add",
            "-A",
            "apps.shared:app",
            "from_a_library",
            "x",
        ],
        env=sample_env,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    app = producer(sample_env)
    task = app.get(added.stdout.strip())
    assert task is not None and task.task_name == "from_a_library"
    app.stop()


def test_the_app_comes_from_qtasks_app_when_a_command_leaves_it_out(sample_env) -> None:
    added = runner.invoke(cli, ["add", "noop", "env"], env={"QTASKS_APP": "apps.sample:app"})
    assert added.exit_code == 0, added.output
    shown = runner.invoke(
        cli, ["get", added.output.strip(), "--json"], env={"QTASKS_APP": "apps.sample:app"}
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["args"] == ["env"]
    assert "QTASKS_APP" in runner.invoke(cli, ["get", "--help"]).output
    missing = runner.invoke(cli, ["get", "some-id"], env={"QTASKS_APP": None})
    assert missing.exit_code == 2 and "--app" in missing.output


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"qtasks-core {version('qtasks-core')}\n"


# -- a task's life: get, retry, cancel -------------------------------------------------


def run_burst(env: dict[str, str]) -> None:
    worker = start_worker(env, "--burst", app="apps.lifecycle:app")
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output


def test_get_prints_status_result_error_and_times(sample_env) -> None:
    app = producer(sample_env)
    ok = app.send_task("succeeds", [{"total": 3}]).uuid
    bad = app.send_task("fails", ["y"]).uuid
    run_burst(sample_env)
    shown = runner.invoke(cli, ["get", "-A", "apps.lifecycle:app", ok])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert f"uuid:     {ok}" in lines and "status:   success" in lines
    assert 'result:   {"total": 3}' in lines
    assert {line.split(":", 1)[0] for line in lines} >= {"created", "started", "finished"}
    failed = runner.invoke(cli, ["get", "-A", "apps.lifecycle:app", bad])
    assert "status:   error" in failed.output
    assert "Traceback" in failed.output and "ValueError: bad input y" in failed.output
    whole = json.loads(
        runner.invoke(cli, ["get", "-A", "apps.lifecycle:app", bad, "--json"]).output
    )
    assert whole["uuid"] == bad and whole["status"] == "error" and whole["args"] == ["y"]
    unknown = runner.invoke(cli, ["get", "-A", "apps.lifecycle:app", "no-such-task"])
    assert unknown.exit_code == 2
    assert (
        unknown.output == "qtasks: error: no task no-such-task (unknown, or its record expired)\n"
    )
    app.stop()


def test_retry_sends_one_failed_task_again(sample_env) -> None:
    app = producer(sample_env)
    bad = app.send_task("fails", ["z"], priority=3).uuid
    ok = app.send_task("succeeds", [1]).uuid
    run_burst(sample_env)
    result = runner.invoke(cli, ["retry", "-A", "apps.lifecycle:app", bad])
    assert result.exit_code == 0, result.output
    new_uuid = result.output.strip().rsplit(" ", 1)[1]
    assert result.output == f"task {bad} sent again as {new_uuid}\n"
    again = app.get(new_uuid)
    assert again is not None
    assert (again.status, again.task_name, again.args, again.priority) == (
        "new",
        "fails",
        ("z",),
        3,
    )
    refused = runner.invoke(cli, ["retry", "-A", "apps.lifecycle:app", ok])
    assert refused.exit_code == 2 and "only a task that ended error or cancel" in refused.output
    app.stop()


def test_retry_failed_asks_then_sends_every_failed_task_of_a_name(sample_env) -> None:
    app = producer(sample_env)
    failing = [app.send_task("fails", [f"f{i}"]).uuid for i in range(2)]
    other = app.send_task("also_fails", ["o"]).uuid
    app.send_task("succeeds", ["fine"])
    run_burst(sample_env)
    args = ["retry", "-A", "apps.lifecycle:app", "--failed", "--name", "fails"]
    declined = runner.invoke(cli, args, input="n\n")
    assert declined.exit_code == 1
    assert "Send again 2 task(s) of task 'fails' that ended error" in declined.output
    assert app.list_tasks(status="new").tasks == []
    sent = runner.invoke(cli, [*args, "--yes"])
    assert sent.exit_code == 0, sent.output
    assert "sent again 2 of 2 task(s)" in sent.output
    queued = app.list_tasks(status="new").tasks
    assert sorted(t.args for t in queued) == [("f0",), ("f1",)]
    assert all(f"{old}: sent again as " in sent.output for old in failing)
    assert other not in sent.output
    # The two sent again already are skipped: only the other one goes.
    every = runner.invoke(cli, ["retry", "-A", "apps.lifecycle:app", "--failed"], input="y\n")
    assert every.exit_code == 0, every.output
    assert "skipping 2 task(s) sent again already" in every.output
    assert "Send again 1 task(s) that ended error" in every.output
    assert f"{other}: sent again as " in every.output
    assert "sent again 1 of 1 task(s)" in every.output
    app.stop()


def test_retry_failed_run_twice_sends_each_task_once(sample_env) -> None:
    app = producer(sample_env)
    failed = [app.send_task("fails", [f"f{i}"]).uuid for i in range(2)]
    run_burst(sample_env)
    args = ["retry", "-A", "apps.lifecycle:app", "--failed", "--yes"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "sent again 2 of 2 task(s)" in first.output
    second = runner.invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert "every task of app" in second.output and "(2) was sent again already" in second.output
    queued = app.list_tasks(status="new").tasks
    assert sorted(t.args for t in queued) == [("f0",), ("f1",)]
    assert sorted(t.retried_from or "" for t in queued) == sorted(failed)
    app.stop()


def test_retry_failed_skips_a_task_another_run_sent_meanwhile(sample_env) -> None:
    app = producer(sample_env)
    old = app.send_task("fails", ["f"]).uuid
    run_burst(sample_env)
    first = app.retry(old, once=True)
    # Read as not sent again (another run sent it but had not linked it yet): this run
    # sends nothing, links it, and says so; not a refusal.
    assert app._portal.call(app.backend.update(old, {"retried_as": ""}))
    result = runner.invoke(cli, ["retry", "-A", "apps.lifecycle:app", "--failed", "--yes"])
    assert result.exit_code == 0, result.output
    assert f"{old}: skipped: sent again meanwhile, as {first.uuid}" in result.output
    assert "sent again 0 of 1 task(s) (1 sent again meanwhile)" in result.output
    assert [t.uuid for t in app.list_tasks(status="new").tasks] == [first.uuid]
    app.stop()


def test_retry_failed_with_nothing_failed_says_so(sample_env) -> None:
    result = runner.invoke(
        cli, ["retry", "-A", "apps.lifecycle:app", "--failed", "--name", "fails"]
    )
    assert result.exit_code == 0
    assert "no task of task 'fails' of app" in result.output and "ended error" in result.output


def test_cancel_says_whether_it_cancelled_and_why_not(sample_env) -> None:
    app = producer(sample_env)
    queued = app.send_task("succeeds", [1], delay=60).uuid
    result = runner.invoke(cli, ["cancel", "-A", "apps.lifecycle:app", queued, "--reason", "no"])
    assert result.exit_code == 0, result.output
    assert result.output == f"task {queued} cancelled: it will not run\n"
    task = app.get(queued)
    assert task is not None and (task.status, task.cancel_reason) == ("cancel", "no")
    again = runner.invoke(cli, ["cancel", "-A", "apps.lifecycle:app", queued])
    assert again.exit_code == 1 and "it had ended already (cancel)" in again.output
    unknown = runner.invoke(cli, ["cancel", "-A", "apps.lifecycle:app", "no-such-task"])
    assert unknown.exit_code == 1 and "no such task" in unknown.output
    running = app.send_task("lingers", [60]).uuid
    worker = start_worker(sample_env, app="apps.lifecycle:app")
    try:
        wait_for(lambda: app.get(running).status == "process", what="the task running")
        busy = runner.invoke(cli, ["cancel", "-A", "apps.lifecycle:app", running])
        assert busy.exit_code == 1
        assert "it is running (qtasks abort stops a running task)" in busy.output
        assert app.get(running).status == "process"  # type: ignore[union-attr]
        app.abort(running)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    app.stop()


def test_the_commands_run_an_app_of_qtasks_core_asyncio(sample_env) -> None:
    """Its operations are coroutines; the shell's commands block on the same app."""
    app = producer(sample_env)
    queued = app.send_task("echo", ["later"], delay=60).uuid
    aborted = runner.invoke(cli, ["abort", "-A", "apps.sample_async:app", queued])
    assert aborted.exit_code == 0, aborted.output
    assert app.get(queued).status == "cancel"  # type: ignore[union-attr]
    added = runner.invoke(cli, ["add", "-A", "apps.sample_async:app", "echo", "now"])
    assert added.exit_code == 0, added.output
    uuid = added.output.strip()
    worker = subprocess.run(
        [sys.executable, "-m", "qtasks_core", "worker", "-A", "apps.sample_async:app", "--burst"],
        env=sample_env,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    done = app.get(uuid)
    assert done is not None and (done.status, done.returning) == ("success", "now")
    app.stop()


def test_abort_from_the_shell(sample_env) -> None:
    app = producer(sample_env)
    queued = app.send_task("noop", ["never"], delay=60).uuid
    result = runner.invoke(cli, ["abort", "-A", "apps.sample:app", queued, "--reason", "nope"])
    assert result.exit_code == 0, result.output
    assert "cancelled, it will not run" in result.output
    task = app.get(queued)
    assert task is not None and (task.status, task.cancel_reason) == ("cancel", "nope")
    again = runner.invoke(cli, ["abort", "-A", "apps.sample:app", queued])
    assert again.exit_code == 1 and "had ended already" in again.output
    app.stop()


def test_events_prints_every_change_of_other_processes(sample_env) -> None:
    env = {**sample_env, "QTASKS_EVENTS": "1"}  # the worker writes the event stream
    app = QueueTasks(
        env["QTASKS_TEST_APP"], redis_url=env["QTASKS_REDIS_URL"], load_entry_points=False,
        events=True,
    )  # fmt: skip
    worker = start_worker(env)
    try:
        uuid = app.add_task("noop", "hi", timeout=20).uuid
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    app.stop()
    args = ["events", "-A", "apps.sample:app", "--after", "0", "--timeout", "0.5"]
    as_json = runner.invoke(cli, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    lines = [json.loads(line) for line in as_json.output.splitlines()]
    assert [(c["previous"], c["status"]) for c in lines if c["uuid"] == uuid] == [
        (None, "new"),
        ("new", "process"),
        ("process", "success"),
    ]
    assert all(c["task_name"] == "noop" and c["id"] for c in lines if c["uuid"] == uuid)
    text = runner.invoke(cli, args)
    assert f"{uuid} noop: new -> process attempt 1 on " in text.output


# -- workers as real processes ---------------------------------------------------------


def test_burst_worker_processes_tasks_from_another_process_and_exits(sample_env) -> None:
    app = producer(sample_env)
    tasks = [app.add_task("noop", f"t{i}") for i in range(50)]
    worker = start_worker(sample_env, "--burst")
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    assert "QTasks worker" in output and "noop" in output  # the banner
    assert all(app.get(t.uuid).status == "success" for t in tasks)
    assert executions(sample_env) == {f"t{i}": 1 for i in range(50)}
    app.stop()


def test_sigterm_lets_running_tasks_finish_and_hands_back_the_rest(sample_env) -> None:
    app = producer(sample_env)
    tasks = [app.add_task("sleepy", f"s{i}", 1.0) for i in range(6)]
    worker = start_worker(sample_env, "--concurrency", "2", "--grace", "10")
    wait_for(
        lambda: sum(app.get(t.uuid).status == "process" for t in tasks) == 2,
        what="two tasks running",
    )
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    statuses = [app.get(t.uuid).status for t in tasks]
    assert statuses.count("success") == 2  # the running ones finished within the grace
    assert statuses.count("new") == 4  # the rest were never claimed: still queued
    worker = start_worker(sample_env, "--concurrency", "4", "--burst")
    worker.communicate(timeout=60)
    assert executions(sample_env) == {f"s{i}": 1 for i in range(6)}  # nothing lost, no twice
    app.stop()


def test_a_second_sigterm_stops_at_once_and_loses_nothing(sample_env) -> None:
    app = producer(sample_env)
    tasks = [app.add_task("sleepy", f"l{i}", 5.0) for i in range(2)]
    worker = start_worker(sample_env, "--concurrency", "2", "--grace", "60")
    wait_for(
        lambda: all(app.get(t.uuid).status == "process" for t in tasks), what="both tasks running"
    )
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=30)
    # Stopped well before the 5 s tasks or the 60 s grace; their threads cannot be killed
    # but the process exits, and the tasks went back to the queue.
    assert time.monotonic() - started < 4.5
    assert [app.get(t.uuid).status for t in tasks] == ["new", "new"]
    worker = start_worker(sample_env, "--burst")
    worker.communicate(timeout=60)
    assert [app.get(t.uuid).status for t in tasks] == ["success", "success"]
    app.stop()


def test_processes_2_uses_two_processes_and_survives_one_being_killed(sample_env) -> None:
    app = producer(sample_env)
    supervisor = start_worker(sample_env, "--processes", "2", "--concurrency", "1")
    try:
        wait_for(
            lambda: len(app._portal.call(app.backend.stats()).workers) == 2,
            what="two worker processes",
        )
        pids = {w["pid"] for w in app._portal.call(app.backend.stats()).workers}
        assert len(pids) == 2 and supervisor.pid not in pids
        os.kill(next(iter(pids)), signal.SIGKILL)
        tasks = [app.add_task("sleepy", f"k{i}", 0.05) for i in range(20)]
        for task in tasks:
            assert app.wait(task.uuid, timeout=60).status == "success"
        wait_for(
            lambda: (
                len({w["pid"] for w in app._portal.call(app.backend.stats()).workers} - pids) >= 1
            ),
            what="a replacement process",
        )
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.communicate(timeout=30)
    assert supervisor.returncode == 0
    app.stop()


# -- plugins ---------------------------------------------------------------------------


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A plugin distribution on sys.path, as pip would have installed it."""

    def install(name: str, source: str) -> None:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[qtasks.plugins]\n{name} = {name}\n")

    install(
        "qtasks_probe",
        """
        from qtasks_hooks import hookimpl

        @hookimpl
        def worker_start(worker):
            pass
    """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("QTASKS_PLUGINS", raising=False)
    monkeypatch.delenv("QTASKS_DISABLE_PLUGINS", raising=False)
    import importlib

    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("qtasks_probe", None)
    sys.modules.pop("qtasks_typo", None)


def test_plugins_json_lists_an_installed_plugin(installed_plugin: Path) -> None:
    result = runner.invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.output)}
    assert listed["qtasks_probe"]["distribution"] == "qtasks_probe"
    assert listed["qtasks_probe"]["version"] == "0.1"
    assert listed["qtasks_probe"]["hooks"] == ["worker_start"]
    assert "qtasks.retry" in listed  # built-ins are ordinary plugins
    hook = runner.invoke(cli, ["plugins", "--json", "--hook", "worker_start"])
    # The plugins with an impl of that trigger: the built-in history's and the probe's.
    assert [p["name"] for p in json.loads(hook.output)] == ["qtasks.history", "qtasks_probe"]


def test_qtasks_plugins_empty_lists_no_entry_point_plugin(installed_plugin, monkeypatch) -> None:
    monkeypatch.setenv("QTASKS_PLUGINS", "")
    result = runner.invoke(cli, ["plugins", "--json"])
    assert "qtasks_probe" not in [p["name"] for p in json.loads(result.output)]


def test_plugins_check_fails_on_a_misspelt_trigger(installed_plugin: Path) -> None:
    (installed_plugin / "qtasks_typo.py").write_text(
        "from qtasks_hooks import hookimpl\n\n@hookimpl\ndef worker_strat(worker):\n    pass\n"
    )
    info = installed_plugin / "qtasks_typo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qtasks_typo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[qtasks.plugins]\nqtasks_typo = qtasks_typo\n")
    result = runner.invoke(cli, ["plugins", "--check"])
    assert result.exit_code == 2
    assert "qtasks_typo" in result.output and "worker_strat" in result.output
    assert (
        runner.invoke(
            cli, ["plugins", "--check"], env={"QTASKS_DISABLE_PLUGINS": "qtasks_typo"}
        ).exit_code
        == 0
    )


# -- the embedded default --------------------------------------------------------------


def test_embedded_server_is_shared_by_two_processes_and_keeps_data(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QTASKS_REDIS_URL"}
    # QTASKS_HOME pins the folder (tested here).
    env.update(
        QTASKS_HOME=str(tmp_path / "home"),
        PYTHONPATH=pythonpath(HERE),
        QTASKS_TEST_APP="embedded",
    )
    script = textwrap.dedent("""
        import sys
        from qtasks_core import QueueTasks
        app = QueueTasks("embedded", load_entry_points=False)
        if sys.argv[1] == "add":
            print(app.add_task("noop", "x").uuid)
        else:
            print(app.get(sys.argv[2]).status)
        app.stop()
    """)

    def run(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", script, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def qtasks(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "qtasks_core", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout

    try:
        uuid = run("add")
        status = qtasks("server", "status")
        assert "running at redis://:***@127.0.0.1:" in status  # the password never shown
        assert run("get", uuid) == "new"  # a second process finds the same server
        assert "stopped" in qtasks("server", "stop")
        assert "not running" in qtasks("server", "status")
        assert run("get", uuid) == "new"  # restarted on demand, the task survived (AOF)
    finally:
        qtasks("server", "stop")


def test_the_embedded_server_is_private_to_its_owner(tmp_path: Path) -> None:
    from qtasks_core import embedded

    folder = tmp_path / "home"
    url = embedded.ensure_server(folder)
    try:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        # Loopback only, and a process without the secret is refused.
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        client = redis.Redis.from_url(url)
        client.set("probe", "x")
        client.execute_command("BGREWRITEAOF")
        time.sleep(0.5)
        assert client.config_get("bind")["bind"].split() == ["127.0.0.1"]
        # The folder and every file in it (the AOF holds task arguments) are the owner's.
        assert folder.stat().st_mode & 0o777 == 0o700
        found = list(folder.rglob("*"))
        assert any("appendonly" in p.name for p in found)
        for path in found:
            mode = path.stat().st_mode & 0o777
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        # The password is in owner-only files, never on the server's command line.
        password = (folder / "server.secret").read_text().strip()
        pid = int((folder / "server.pid").read_text())
        assert password and password not in Path(f"/proc/{pid}/cmdline").read_text()
    finally:
        embedded.stop_server(folder)


def test_purge_deletes_finished_records_and_flush_everything(sample_env) -> None:
    app = producer(sample_env)
    done = [app.add_task("noop", f"p{i}") for i in range(3)]
    worker = start_worker(sample_env, "--burst")
    worker.communicate(timeout=60)
    queued = app.add_task("noop", "still queued")
    refused = runner.invoke(cli, ["purge", "-A", "apps.sample:app"], input="n\n")
    assert refused.exit_code == 1 and app.get(done[0].uuid) is not None
    result = runner.invoke(cli, ["purge", "-A", "apps.sample:app", "--yes"])
    assert result.exit_code == 0 and "deleted 3 finished task record(s)" in result.output
    assert [app.get(t.uuid) for t in done] == [None, None, None]
    assert app.get(queued.uuid).status == "new"  # a queued task is never purged
    result = runner.invoke(cli, ["flush", "-A", "apps.sample:app", "-y"])
    assert result.exit_code == 0 and app.get(queued.uuid) is None
    app.stop()


def test_keys_of_an_older_version_are_refused_then_migrated(sample_env: dict[str, str]) -> None:
    app = producer(sample_env)
    raw = redis.Redis.from_url(sample_env["QTASKS_REDIS_URL"])
    old = Keys.legacy(app.name)
    # A task queued by QTasks < 0.2, under its key names.
    raw.hset(
        old.task("old-task"),
        mapping={"status": "new", "task_name": "noop", "priority": "0", "args": '["old"]',
                 "kwargs": "{}", "created_at": "1", "attempts": "0"},
    )  # fmt: skip
    raw.zadd(old.queue, {"old-task": 0})
    with pytest.raises(BackendError, match="qtasks migrate-keys"):
        app.add_task("noop", "refused")
    assert raw.exists(Keys.for_app(app.name).task("old-task")) == 0
    cli = [sys.executable, "-m", "qtasks_core", "migrate-keys", "-A", "apps.sample:app"]
    out = subprocess.run(cli, env=sample_env, cwd=HERE, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "moved 2 key(s)" in out.stdout, out.stderr
    assert raw.exists(old.queue, old.task("old-task")) == 0
    worker = start_worker(sample_env, "--burst")
    assert worker.wait(timeout=60) == 0
    done = app.get("old-task")
    assert done is not None and done.status == "success" and done.returning == "old"
    app.stop()
