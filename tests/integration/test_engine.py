"""The engine under the failures a sweep found: zombie workers, skewed clocks, lost
replies, a user missing an ACL command, a full Redis, tasks calling ``sys.exit()``.

Real servers and real worker processes, as a user would meet them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from qtasks_core import QueueTasks, chord, hookimpl
from qtasks_core.errors import BackendOutOfMemoryError, BackendPermissionError
from qtasks_core.keys import Keys
from qtasks_core.stats import Stats
from tests.chaos.test_chaos import APPS, env_for, start_worker
from tests.conftest import RedisServer
from tests.integration.apps.sample import executions
from tests.support import free_port, wait_for


def worker_of(app: QueueTasks, uuid: str) -> str:
    task = app.get(uuid)
    return (task.worker or "") if task is not None else ""


# -- fencing: a worker that lost its lease ---------------------------------------------------


def test_a_stopped_worker_resuming_after_its_lease_cannot_overwrite(server: RedisServer) -> None:
    name = "engine-zombie"
    env = env_for(server, name)
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    raw = redis.Redis.from_url(server.url, decode_responses=True)
    task = app.add_task("sleepy", "z", 2.0)
    zombie = start_worker(env, "-c", "1", "--lease", "1.5")
    live = None
    try:
        wait_for(lambda: worker_of(app, task.uuid), what="the first worker to claim")
        zombie.send_signal(signal.SIGSTOP)
        live = start_worker(env, "-c", "1", "--lease", "1.5")
        done = app.wait(task.uuid, timeout=60)
        assert done.status == "success" and done.attempts == 2
        winner = done.worker
        assert winner and f":{live.pid}:" in winner
        zombie.send_signal(signal.SIGCONT)
        # The zombie's own run ends too (it records its execution), then its result is
        # refused: the record stays the live worker's.
        wait_for(lambda: executions(raw, name).get("z") == 2, what="the zombie's run to end")
        time.sleep(1.0)
        after = app.get(task.uuid)
        assert after is not None and after.status == "success" and after.worker == winner
        assert after.attempts == 2
    finally:
        for process in (zombie, live):
            if process is not None:
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    app.stop()


# -- clocks: leases on the server's time ---------------------------------------------------


def test_skewed_worker_clocks_do_not_delay_recovery(server: RedisServer, tmp_path: Path) -> None:
    name = "engine-skew"
    # Each worker's time.time() runs off by its own skew, as on badly synchronised hosts.
    (tmp_path / "sitecustomize.py").write_text(
        "import os, time\n"
        "_skew = float(os.environ.get('QTASKS_TEST_SKEW', '0'))\n"
        "_real = time.time\n"
        "time.time = lambda: _real() + _skew\n"
    )
    base = env_for(server, name)
    base["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{base['PYTHONPATH']}"
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    task = app.add_task("sleepy", "s", 2.5)
    doomed = start_worker({**base, "QTASKS_TEST_SKEW": "0"}, "-c", "1", "--lease", "3")
    survivors = []
    try:
        wait_for(lambda: worker_of(app, task.uuid), what="the doomed worker to claim")
        for skew in ("2", "-2"):
            survivors.append(
                start_worker({**base, "QTASKS_TEST_SKEW": skew}, "-c", "1", "--lease", "3")
            )
        time.sleep(1.0)  # both survivors heartbeating, with their skewed clocks
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed_at = time.monotonic()
        final = app.wait(task.uuid, timeout=40)
        recovery = time.monotonic() - killed_at
    finally:
        for process in survivors:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert final.status == "success" and final.attempts == 2
    # At most a lease (3 s) after the last heartbeat (was over 40 s on client clocks),
    # then the 2.5 s run; the bound leaves a lease of slack for a slow machine.
    assert recovery < 3 + 2.5 + 3
    app.stop()


# -- idempotent writes: a lost reply ---------------------------------------------------------


class ReplyDropper:
    """A TCP proxy in front of Redis that can swallow one reply and cut the connection,
    as a network failure after the server ran the command would."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.port = free_port()
        self.drop_next = threading.Event()
        self.dropped = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while data := src.recv(65536):
                if replies and self.drop_next.is_set():
                    self.drop_next.clear()
                    self.dropped += 1
                    raise OSError("reply dropped")
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop = True
        self._listener.close()


@pytest.mark.parametrize("batch", [False, True], ids=["add_task", "add_tasks"])
def test_an_enqueue_whose_reply_was_lost_is_not_doubled(
    redis_server: RedisServer, batch: bool
) -> None:
    proxy = ReplyDropper(redis_server.port)
    name = f"engine-lost-reply-{batch}"
    producer = QueueTasks(
        name, redis_url=f"redis://127.0.0.1:{proxy.port}/0", load_entry_points=False
    )
    ran: list[str] = []

    @producer.task
    def count(tag: str) -> None:
        ran.append(tag)

    try:
        producer.add_task("count", "warm-up")  # scripts loaded, connection open
        proxy.drop_next.set()
        if batch:
            producer.add_tasks([("count", (f"b{i}",)) for i in range(3)])
        else:
            producer.add_task("count", "once")
        assert proxy.dropped == 1
        worker = QueueTasks(name, redis_url=redis_server.url, load_entry_points=False)
        worker.tasks = producer.tasks
        asyncio.run(worker.serve(burst=True))
        expected = ["warm-up", "b0", "b1", "b2"] if batch else ["warm-up", "once"]
        assert sorted(ran) == sorted(expected)
        worker.flush_all()
        worker.stop()
    finally:
        producer.stop()
        proxy.close()


# -- ACL -------------------------------------------------------------------------------------


def test_a_user_missing_a_command_is_told_which_at_start(server: RedisServer) -> None:
    admin = redis.Redis.from_url(server.url)
    admin.execute_command("ACL", "SETUSER", "nohincr", "on", ">pw", "~*", "+@all", "-hincrby")
    name = "engine-acl"
    app = QueueTasks(
        name,
        redis_url=f"redis://nohincr:pw@127.0.0.1:{server.port}/0",
        load_entry_points=False,
    )
    with pytest.raises(BackendPermissionError, match="hincrby"):
        app.add_task("noop", "never")
    assert admin.keys(Keys.for_app(name).prefix + "*") == []  # nothing was written
    app.stop()


def test_a_least_privilege_user_runs_a_producer_and_a_worker(server: RedisServer) -> None:
    from qtasks_core.backends.redis import ACL_RULE

    # The rule the README gives operators is the one this test proves enough.
    assert ACL_RULE in (Path(__file__).resolve().parents[2] / "README.md").read_text()
    admin = redis.Redis.from_url(server.url)
    admin.execute_command("ACL", "SETUSER", "qtasks", "on", ">pw", "resetkeys", *ACL_RULE.split())
    url = f"redis://qtasks:pw@127.0.0.1:{server.port}/0"
    name = "engine-least"
    # qtasks migrate-keys, run by the same user: a key of QTasks < 0.2 moves.
    admin.set(Keys.legacy(name).prefix + "old", "1")
    mover = QueueTasks(name, redis_url=url, load_entry_points=False)
    assert mover.migrate_keys() == (1, [])
    mover.stop()
    assert admin.get(Keys.for_app(name).prefix + "old") == b"1"
    admin.delete(Keys.for_app(name).prefix + "old")
    app = QueueTasks(name, redis_url=url, load_entry_points=False)
    env = {**env_for(server, name), "QTASKS_REDIS_URL": url}
    worker = start_worker(env, "-c", "2")
    try:
        # pid: noop records its run under a key of the test's, outside ~qtasks:*.
        tasks = [app.add_task("pid") for _ in range(5)]
        assert [app.wait(t.uuid, timeout=30).status for t in tasks] == ["success"] * 5
        assert Stats(app).inspect().status_counts.get("success") == 5
        # Named queues, delays and schedules run under the same rule.
        app.send_task("pid", queue="elsewhere", delay=0.1)
        app.add_schedule("tick", "pid", every=3600)
        assert Stats(app).inspect().queues.get("elsewhere") is not None
        assert [s.schedule.name for s in app.schedules()] == ["tick"]
        # And workflows, limits, unique keys, abort, progress, watch and the task list.
        flow = chord([app.signature("double", [i]) for i in range(4)], app.signature("sum_all"))
        assert app.start_workflow(flow, timeout=30).returning == 12
        limited = [app.add_task("limited_pid") for _ in range(4)]
        assert {app.wait(t.uuid, timeout=30).status for t in limited} == {"success"}
        first = app.send_task("pid", unique_key="once", delay=60)
        assert app.send_task("pid", unique_key="once").uuid == first.uuid
        assert app.abort(first.uuid, "no") == "cancelled"
        watched = app.add_task("progress_pid")
        assert [t.status for t in app.watch(watched.uuid, timeout=30)][-1] == "success"
        assert app.list_tasks(status="success", limit=2).next is not None
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    app.stop()


# -- a full Redis ----------------------------------------------------------------------------


def test_under_noeviction_oom_queued_tasks_still_run(server: RedisServer) -> None:
    name = "engine-oom"
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    # A task of its own that writes nothing to Redis (noop records its run there).
    queued = [app.add_task("pid") for _ in range(50)]
    admin = redis.Redis.from_url(server.url)
    admin.config_set("maxmemory-policy", "noeviction")
    # Well under what is used: Redis does not count its AOF buffer (a few KB) against
    # maxmemory, so a margin of 1 KB could leave it under the limit.
    admin.config_set("maxmemory", str(int(admin.info("memory")["used_memory"]) - 65536))
    try:
        with pytest.raises(BackendOutOfMemoryError, match="maxmemory"):
            app.add_task("noop", "refused")
        worker = start_worker(env_for(server, name), "--burst")
        assert worker.wait(timeout=60) == 0
    finally:
        admin.config_set("maxmemory", "0")
    assert {app.get(t.uuid).status for t in queued} == {"success"}  # type: ignore[union-attr]
    app.stop()


def test_a_failover_to_read_only_is_waited_out_quietly(server: RedisServer, tmp_path: Path) -> None:
    other = RedisServer(tmp_path / "other")
    other.folder.mkdir()
    other.start()
    name = "engine-readonly"
    env = env_for(server, name)
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    admin = redis.Redis.from_url(server.url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "qtasks_core", "worker", "-A", "apps.sample:app"],
        env=env,
        cwd=APPS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.add_task("pid", timeout=30).status == "success"
        # The server becomes a replica, as the old primary does in a failover.
        admin.execute_command("REPLICAOF", "127.0.0.1", str(other.port))
        time.sleep(4)
        assert worker.poll() is None  # waiting for a primary, not dead
        # A worker started against the replica says so on one line and exits.
        late = subprocess.run(
            [sys.executable, "-m", "qtasks_core", "worker", "-A", "apps.sample:app"],
            env=env, cwd=APPS, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert late.returncode == 2 and "READONLY" in late.stderr
        assert len(late.stderr.strip().splitlines()) == 1
        admin.execute_command("REPLICAOF", "NO", "ONE")
        assert app.add_task("pid", timeout=30).status == "success"
    finally:
        worker.send_signal(signal.SIGTERM)
        _, log = worker.communicate(timeout=30)
        other.stop()
    lines = [line for line in log.splitlines() if "READONLY" in line]
    # It says what is wrong, then at most a line per 30 s (it was 28 lines a second).
    assert 1 <= len(lines) <= 4, log
    assert "replica" in lines[0]
    assert "Traceback" not in log
    app.stop()


# -- a task that exits, a plugin that raises OSError -----------------------------------------


def test_a_task_calling_sys_exit_fails_alone(app: QueueTasks) -> None:
    @app.task
    def quits() -> None:
        sys.exit(3)

    @app.task
    async def quits_async() -> None:
        raise KeyboardInterrupt

    @app.task
    async def innocent() -> str:
        await asyncio.sleep(0.2)
        return "fine"

    with app.running_worker(concurrency=4) as worker:
        bystander = app.add_task("innocent")
        sync_exit = app.add_task("quits", timeout=30)
        async_exit = app.add_task("quits_async", timeout=30)
        assert app.wait(bystander.uuid, timeout=30).returning == "fine"
        assert not worker._stopping.is_set()
    assert sync_exit.status == "error" and "SystemExit(3)" in (sync_exit.traceback or "")
    assert async_exit.status == "error" and "KeyboardInterrupt" in (async_exit.traceback or "")


def test_a_plugins_oserror_fails_the_task_not_the_worker(app: QueueTasks) -> None:
    class Flaky:
        @hookimpl
        def storage_remove_finished_task(self, storage: Any, task_broker: Any, model: Any) -> None:
            if task_broker.task_name == "unlucky":
                raise ConnectionRefusedError("the plugin's own metrics server is down")

    @app.task
    def unlucky() -> str:
        return "ran"

    @app.task
    def lucky() -> str:
        return "ran"

    app.add_plugin(Flaky(), name="flaky")
    with app.running_worker(concurrency=2):
        tasks = [app.add_task("unlucky") for _ in range(3)] + [app.add_task("lucky")]
        done = [app.wait(t.uuid, timeout=30) for t in tasks]
    assert [t.status for t in done] == ["error", "error", "error", "success"]
    assert all("raised by plugin 'flaky'" in (t.traceback or "") for t in done[:3])


# -- garbage a caller may read ---------------------------------------------------------------


def test_deeply_nested_json_is_read_and_set_aside_without_recursion(redis_app: QueueTasks) -> None:
    raw = redis.Redis.from_url(redis_app.redis_url or "")
    keys = Keys.for_app(redis_app.name)
    deep = "[" * 100_000 + "]" * 100_000
    raw.hset(
        keys.task("deep"),
        mapping={
            "status": "new",
            "task_name": "noop",
            "priority": "0",
            "args": deep,
            "kwargs": "{}",
            "created_at": "1",
        },
    )
    raw.zadd(keys.queue, {"deep": 0})
    got = redis_app.get("deep")
    assert got is not None and "args" in got.extra["malformed"]
    asyncio.run(redis_app.serve(burst=True))
    letters = {d["uuid"]: d["reason"] for d in redis_app.dead_letters()}
    assert "malformed message" in letters["deep"]
    assert redis_app.get("deep").status == "error"  # type: ignore[union-attr]


def test_requeue_from_the_cli_refuses_a_running_task(server: RedisServer) -> None:
    name = "engine-requeue-running"
    env = env_for(server, name)
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    task = app.add_task("sleepy", "r", 2.0)
    worker = start_worker(env, "-c", "1")
    try:
        wait_for(lambda: worker_of(app, task.uuid), what="the worker to claim")
        cli = [sys.executable, "-m", "qtasks_core", "dead", "-A", "apps.sample:app"]
        out = subprocess.run(
            [*cli, "--requeue", task.uuid],
            env=env,
            cwd=APPS,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "not a dead letter" in out.stdout
        assert app.wait(task.uuid, timeout=30).attempts == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert executions(redis.Redis.from_url(server.url), name) == {"r": 1}
    app.stop()


def test_a_traceback_json_cannot_carry_fails_no_other_task(app: QueueTasks) -> None:
    @app.task
    def odd_file() -> None:
        raise FileNotFoundError("no such file: report-\udcff.csv")  # as os.listdir gives

    @app.task
    async def fine() -> str:
        return "fine"

    with app.running_worker(concurrency=8):
        tasks = [app.add_task("odd_file") for _ in range(4)] + [
            app.add_task("fine") for _ in range(4)
        ]
        done = [app.wait(t.uuid, timeout=30) for t in tasks]
    assert [t.status for t in done] == ["error"] * 4 + ["success"] * 4
    assert "report-\\udcff.csv" in (done[0].traceback or "")


def test_a_plugin_replacing_a_claim_with_bad_values_fails_that_task(app: QueueTasks) -> None:
    class Garbles:
        @hookimpl
        def broker_add_worker(self, task_name: str) -> Any:
            return {"priority": "not a number"} if task_name == "victim" else None

    @app.task
    def victim() -> str:
        return "ran"

    @app.task
    def bystander() -> str:
        return "ran"

    app.add_plugin(Garbles(), name="garbles")
    with app.running_worker():
        victim_task = app.add_task("victim", timeout=30)
        assert app.add_task("bystander", timeout=30).returning == "ran"
    # It fails once, with the reason, rather than running again until set aside.
    assert victim_task.status == "error" and victim_task.attempts == 1
    assert "broker_add_worker plugin replaced the task's values" in (victim_task.traceback or "")
    assert "priority" in (victim_task.traceback or "")


def test_a_plugin_setting_a_bad_priority_fails_that_enqueue_alone(app: QueueTasks) -> None:
    from qtasks_core.errors import TaskOptionError

    class Raises:
        @hookimpl
        def broker_add_before(self, model: Any) -> Any:
            if model.task_name == "too_low":
                return model.model_copy(update={"priority": 99_999})
            return None

    app.add_plugin(Raises(), name="raises")
    with pytest.raises(TaskOptionError, match="priority"):
        app.add_task("too_low")
    assert app.add_task("fine").status == "new"
    assert Stats(app).inspect().status_counts == {"new": 1}


def test_a_slow_liveness_plugin_does_not_cost_a_running_task_its_lease(app: QueueTasks) -> None:
    class Slow:
        @hookimpl
        async def global_config_set_status(self) -> None:
            await asyncio.sleep(10)  # e.g. an HTTP call to a monitoring service hanging

    @app.task
    async def long() -> str:
        await asyncio.sleep(2.5)
        return "done"

    app.add_plugin(Slow(), name="slow")
    with app.running_worker(lease=1.2):
        done = app.add_task("long", timeout=30)
    # Renewed every lease/6 regardless: the worker never lost it, nobody ran it again.
    assert done.status == "success" and done.attempts == 1
