"""Limits across worker processes on one Redis: a concurrency limit never exceeded
(sampled) and kept through a killed worker; a rate limit over a few seconds."""

from __future__ import annotations

import signal
import subprocess
import time

import redis

from qtasks_core import QueueTasks
from qtasks_core.keys import Keys
from tests.chaos.test_chaos import env_for, in_flight_of, start_worker
from tests.conftest import RedisServer
from tests.integration.apps import sample
from tests.support import wait_for


def _running(app: QueueTasks, name: str) -> int:
    page = app.list_tasks(status="process", limit=1000)
    return sum(t.task_name == name for t in page.tasks)


def test_a_concurrency_limit_holds_over_three_workers_and_a_kill(server: RedisServer) -> None:
    name = "limits-concurrency"
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    keys = Keys.for_app(name)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    uuids = [app.add_task("two_at_a_time", f"t{i}", 0.15).uuid for i in range(30)]
    env = env_for(server, name)
    workers = [start_worker(env, "-c", "4", "--lease", "2") for _ in range(3)]
    most, killed = 0, False
    try:
        deadline = time.monotonic() + 90
        while any(app.get(u).status != "success" for u in uuids):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the limited tasks did not all run in 90 s"
            most = max(most, _running(app, "two_at_a_time"))
            if not killed and in_flight_of(client, keys, workers[0].pid):
                # A worker dies holding a slot: the slot comes back when its lease ends.
                workers[0].send_signal(signal.SIGKILL)
                workers[0].wait()
                killed = True
            time.sleep(0.05)
    finally:
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
        for worker in workers[1:]:
            worker.wait(timeout=30)
    assert killed
    assert most == 2, f"{most} ran at once under concurrency_limit=2"
    runs = sample.executions(client, name)
    assert all(runs.get(f"t{i}", 0) >= 1 for i in range(30))
    app.stop()


def test_a_rate_limit_holds_over_three_workers(server: RedisServer) -> None:
    name = "limits-rate"
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    for i in range(300):
        app.add_task("paced", f"p{i}")
    env = env_for(server, name)
    workers = [start_worker(env, "-c", "8") for _ in range(3)]
    try:
        time.sleep(5.0)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
    ran = sum(sample.executions(client, name).values())
    # 5 s at 20 a second, and one window begun at either end: at most 100 + 20.
    assert 40 <= ran <= 120, ran
    app.stop()


def test_a_paused_worker_loses_its_slots_and_its_runs_stop(server: RedisServer) -> None:
    """A worker SIGSTOPped past its lease (a zombie) gets its slots taken back; when it
    resumes, its runs are stopped at its next heartbeat and never complete twice."""
    name = "limits-zombie"
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    keys = Keys.for_app(name)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    env = env_for(server, name)
    zombie = start_worker(env, "-c", "4", "--lease", "2")
    others: list[subprocess.Popen[bytes]] = []
    try:
        uuids = [app.add_task("two_async", f"z{i}", 6.0).uuid for i in range(2)]
        wait_for(lambda: len(in_flight_of(client, keys, zombie.pid)) == 2, timeout=30)
        zombie.send_signal(signal.SIGSTOP)
        others = [start_worker(env, "-c", "4", "--lease", "2")]
        # The slots come back when the lease ends, and the other worker takes them (one
        # at a time: a task whose worker went silent may have killed it, so it runs
        # alone).
        wait_for(
            lambda: _running(app, "two_async") >= 1 and not in_flight_of(client, keys, zombie.pid),
            timeout=30,
        )
        zombie.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 60
        while any(app.get(u).status != "success" for u in uuids):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the limited tasks did not end in 60 s"
            assert _running(app, "two_async") <= 2
            time.sleep(0.1)
    finally:
        zombie.send_signal(signal.SIGCONT)
        for worker in [zombie, *others]:
            worker.send_signal(signal.SIGTERM)
        for worker in [zombie, *others]:
            worker.wait(timeout=30)
    runs = sample.executions(client, name)
    assert runs == {"z0": 1, "z1": 1}, f"a paused worker's run completed too: {runs}"
    app.stop()
