"""Chaos: killed workers, a restarted Redis, poison messages, raising plugins.

Every test owns its Redis server (it gets stopped and restarted) and asserts what a
user relies on: every accepted task ends ``success`` (or, for poison, set aside with
its reason), and the only tasks run twice are the ones a killed worker had in flight.
``QTASKS_CHAOS_N`` scales the big run (2,000 by default).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from qtasks_core import QueueTasks, chord, hookimpl
from qtasks_core.keys import Keys
from qtasks_hooks import get_plugin_manager
from tests.conftest import RedisServer
from tests.integration.apps import sample
from tests.support import pythonpath, wait_for

APPS = Path(__file__).resolve().parents[1] / "integration"
log = logging.getLogger("qtasks.chaos")


#: URL endings choosing the transport: the lean connection for the hot scripts (the
#: default), or redis-py for everything (any URL option other than db and credentials).
TRANSPORTS = {"lean": "", "redis-py": "?socket_timeout=30"}


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    """The URL ending of each transport, so a test runs on both."""
    return TRANSPORTS[request.param]


def env_for(server: RedisServer, name: str, transport: str = "") -> dict[str, str]:
    return {
        **os.environ,
        "QTASKS_REDIS_URL": server.url + transport,
        "QTASKS_TEST_APP": name,
        "PYTHONPATH": pythonpath(APPS),
    }


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qtasks_core",
            "worker",
            "-A",
            "apps.sample:app",
            "--log-level",
            "warning",
            *args,
        ],
        env=env,
        cwd=APPS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def statuses(client: redis.Redis, keys: Keys, uuids: list[str]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for uuid in uuids:
        pipe.hget(keys.task(uuid), "status")
    return pipe.execute()


def in_flight_of(client: redis.Redis, keys: Keys, pid: int) -> set[str]:
    """Tasks a (dead) worker process held: still in ``running`` under its id."""
    prefix = f"{socket.gethostname()}:{pid}:"
    held = set()
    for uuid in client.zrange(keys.running, 0, -1):
        if (client.hget(keys.task(uuid), "worker") or "").startswith(prefix):
            held.add(uuid)
    return held


def settled(client: redis.Redis, keys: Keys) -> bool:
    return (
        client.zcard(keys.queue) + client.zcard(keys.running) + client.zcard(keys.scheduled)
    ) == 0


def test_killed_workers_and_a_redis_restart_lose_no_task(
    server: RedisServer, transport: str
) -> None:
    n = int(os.environ.get("QTASKS_CHAOS_N", "2000"))
    name = "chaos-kill"
    # Every change of every task stays on the stream (about 3.2 per task here): the
    # workers write it, configured by the environment.
    env = {
        **env_for(server, name, transport),
        "QTASKS_EVENTS": "1",
        "QTASKS_EVENTS_MAX": str(n * 10),
    }
    app = QueueTasks(
        name,
        redis_url=server.url + transport,
        load_entry_points=False,
        events=True,
        events_max=n * 10,
    )
    keys = Keys.for_app(name)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    tags = [f"c{i}" for i in range(n)]
    uuids = [app.add_task("sleepy", tag, 0.03).uuid for tag in tags]

    workers = [start_worker(env, "-c", "8", "--lease", "2", "--grace", "1") for _ in range(3)]
    in_flight: set[str] = set()
    killed: list[str] = []
    restarted_at = ""
    kills = restarts = 0
    recovery_started: float | None = None
    rng = random.Random(1234)
    deadline = time.monotonic() + 300
    try:
        while True:
            time.sleep(1.0)
            try:
                if settled(client, keys):
                    break
            except redis.ConnectionError:
                continue
            assert time.monotonic() < deadline, "the chaos run did not finish in 300s"
            if kills < 6:
                victim = rng.choice(workers)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                killed.append(f"{victim.pid}@{time.time():.3f}")
                held = in_flight_of(client, keys, victim.pid)
                in_flight |= held
                kills += 1
                recovery_started = recovery_started or time.monotonic()
                workers[workers.index(victim)] = start_worker(
                    env, "-c", "8", "--lease", "2", "--grace", "1"
                )
            if kills == 2 and restarts == 0:
                restarted_at = f"{time.time():.3f}"
                server.stop()
                time.sleep(1.0)
                server.start()
                restarts += 1
                restarted_at += f"-{time.time():.3f}"
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)

    final = statuses(client, keys, uuids)
    assert final.count("success") == n, {s: final.count(s) for s in set(final)}
    runs = sample.executions(client, name)
    assert all(runs.get(tag, 0) >= 1 for tag in tags), "a task never ran"
    tag_of = dict(zip(uuids, tags, strict=True))
    twice = {tag for tag, count in runs.items() if count > 1}
    allowed = {tag_of[uuid] for uuid in in_flight}
    uuid_of = {tag: uuid for uuid, tag in tag_of.items()}
    forensics = {
        tag: (client.hvals(f"{name}:ran:{tag}"), client.hget(keys.task(uuid_of[tag]), "attempts"))
        for tag in twice - allowed
    }
    assert twice <= allowed, (
        f"ran twice without a killed worker: {forensics}; kills: {killed}; "
        f"restart at {restarted_at}"
    )
    # The audit stream: one terminal change per task. A run cut short by a kill ends
    # nothing (its task is queued again, "lease_expired", and claimed anew), so each
    # run a task really had is one claim on the stream.
    ended: dict[str, int] = {}
    claims: dict[str, int] = {}
    requeued: set[str] = set()
    for change in app.events(after="0", timeout=1.0):
        if change.status in ("success", "error", "cancel", "dead"):
            ended[change.uuid] = ended.get(change.uuid, 0) + 1
        elif change.status == "process":
            claims[change.uuid] = claims.get(change.uuid, 0) + 1
        if change.reason == "lease_expired":
            requeued.add(change.uuid)
    assert ended == dict.fromkeys(uuids, 1)
    assert all(claims.get(uuid_of[tag], 0) >= runs[tag] for tag in tags)
    # A task queued again after a lost lease was claimed once more: the claim whose
    # lease ran out (its worker killed, or its reply lost as Redis stopped) and the one
    # that ran it to its end.
    assert all(claims.get(uuid, 0) >= 2 for uuid in requeued)
    print(
        f"\nchaos: {n} tasks, {kills} kills, {restarts} Redis restart(s), "
        f"{len(in_flight)} in flight on killed workers, {len(twice)} ran twice, "
        f"{len(requeued)} queued again after a lost lease"
    )
    app.stop()


def test_redis_down_for_ten_seconds_under_load(server: RedisServer, transport: str) -> None:
    name = "chaos-outage"
    env = env_for(server, name, transport)
    app = QueueTasks(name, redis_url=server.url + transport, load_entry_points=False)
    keys = Keys.for_app(name)
    uuids = [app.add_task("sleepy", f"o{i}", 0.05).uuid for i in range(300)]
    workers = [start_worker(env, "-c", "8", "--lease", "3") for _ in range(2)]
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        # The outage starts under load: both workers up and tasks running, however
        # long the workers take to start on a busy machine.
        wait_for(
            lambda: (
                len(list(client.scan_iter(match=keys.worker("*")))) == 2
                and sample.executions(client, name)
            ),
            timeout=60,
            what="both workers running tasks",
        )
        server.stop()
        time.sleep(10)
        server.start()
        deadline = time.monotonic() + 120
        while not settled(client, keys):
            assert time.monotonic() < deadline, "workers did not recover from the outage"
            assert all(w.poll() is None for w in workers), "a worker died in the outage"
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
    assert statuses(client, keys, uuids) == ["success"] * len(uuids)
    runs = sample.executions(client, name)
    # Workers stayed alive throughout, so their leases were honoured: nothing ran twice.
    assert sorted(runs.values()) == [1] * len(uuids)
    app.stop()


def test_poison_messages_are_set_aside_and_the_worker_goes_on(server: RedisServer) -> None:
    name = "chaos-poison"
    env = env_for(server, name)
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    keys = Keys.for_app(name)
    raw = redis.Redis.from_url(server.url)

    def inject(uuid: str, **fields: Any) -> None:
        record = {
            "status": "new",
            "task_name": "noop",
            "priority": "0",
            "args": '["p"]',
            "kwargs": "{}",
            "created_at": "1",
            "updated_at": "1",
            "attempts": "0",
        }
        record.update(fields)
        for key, value in list(record.items()):
            if value is None:
                del record[key]
        raw.hset(keys.task(uuid), mapping=record)
        raw.zadd(keys.queue, {uuid: 0})

    raw.zadd(keys.queue, {"no-record": 0})
    inject("bad-json", args="[not json")
    inject("kwargs-list", kwargs="[1, 2]")
    inject("bad-priority", priority="high")
    inject("bad-created", created_at="yesterday")
    inject("not-utf8", args=b'["\xff\xfe"]')
    inject("no-name", task_name=None)
    inject("unknown-task", task_name="does_not_exist")
    killer = app.add_task("die")
    good = [app.add_task("noop", f"g{i}") for i in range(20)]

    # The killer takes its worker down on every delivery: run workers until it is set
    # aside (2 deaths while it runs alone), restarting each one that dies.
    deadline = time.monotonic() + 90
    worker = start_worker(env, "-c", "1", "--lease", "1", "--max-attempts", "2")
    try:
        while app.get(killer.uuid).status != "error":
            assert time.monotonic() < deadline, "the killer task was never set aside"
            if worker.poll() is not None:
                worker = start_worker(env, "-c", "1", "--lease", "1", "--max-attempts", "2")
            time.sleep(0.2)
        for task in good:
            assert app.wait(task.uuid, timeout=60).status == "success"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    dead = {d["uuid"]: d["reason"] for d in app.dead_letters()}
    assert "no task record" in dead["no-record"]
    assert "malformed message" in dead["bad-json"]
    assert "malformed message" in dead["kwargs-list"]
    assert "malformed message" in dead["bad-priority"]
    assert "malformed message" in dead["bad-created"]
    assert "not UTF-8" in dead["not-utf8"]
    assert "no task_name" in dead["no-name"]
    # Its first death ran beside no one's fault; the next two, alone, were its own.
    assert "died 2 times while it ran alone" in dead[killer.uuid]
    assert app.get(killer.uuid).attempts == 3
    unknown = app.get("unknown-task")
    assert unknown.status == "error" and "no task named 'does_not_exist'" in unknown.traceback
    for uuid in ("bad-json", "kwargs-list", "not-utf8"):
        assert app.get(uuid).status == "error"
    app.stop()


def test_a_task_that_kills_its_process_is_told_apart_from_its_neighbours(
    server: RedisServer,
) -> None:
    """Four tasks at a time, one of them ``os._exit`` (as the OOM killer would): the
    killer and a chord member that kills are set aside, never a task that ran beside
    them, and the chord names the member that really failed."""
    name = "chaos-poison-neighbours"
    env = env_for(server, name)
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    neighbours = [app.add_task("sleepy", f"n{i}", 0.4) for i in range(12)]
    killer = app.add_task("die")
    header = [app.signature("wf_part", [f"m{i}", i, 0.3]) for i in range(3)]
    header.append(app.signature("die", []))
    flow = app.start_workflow(chord(header, app.signature("wf_total", ["body"])))
    args = ("-c", "4", "--lease", "1", "--max-attempts", "2")
    worker = start_worker(env, *args)
    deaths = 0
    deadline = time.monotonic() + 120
    try:
        while app.get(killer.uuid).status != "error" or app.get(flow.uuid).status == "process":
            assert time.monotonic() < deadline, "the killers were not set aside in 120 s"
            if worker.poll() is not None:
                deaths += 1
                worker = start_worker(env, *args)
            time.sleep(0.1)
        for task in neighbours:
            assert app.wait(task.uuid, timeout=60).status == "success"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    member = f"{flow.uuid}:r.0.3"
    assert {d["uuid"] for d in app.dead_letters()} == {killer.uuid, member}
    done = app.get(flow.uuid)
    assert done is not None and done.status == "error" and done.failed_member == member
    for i in range(3):
        assert app.get(f"{flow.uuid}:r.0.{i}").status == "success"  # type: ignore[union-attr]
    runs = sample.executions(client, name)
    assert all(runs.get(f"n{i}", 0) >= 1 for i in range(12))
    print(f"\npoison among neighbours: {deaths} worker deaths, 2 killers set aside, 0 neighbours")
    app.stop()


class RaisesEverywhere:
    """A plugin whose every trigger raises (generated from the spec list)."""


def _raiser(trigger: str) -> Any:
    def impl() -> None:
        raise RuntimeError(f"broken plugin in {trigger}")

    impl.__name__ = trigger
    return hookimpl(impl)


for _caller in get_plugin_manager().hook.__dict__.values():
    if getattr(_caller, "spec", None) is not None:
        setattr(RaisesEverywhere, _caller.name, staticmethod(_raiser(_caller.name)))


def test_a_plugin_raising_on_every_trigger_fails_tasks_not_workers(redis_url: str) -> None:
    name = f"chaos-plugin-{os.getpid()}"
    producer = QueueTasks(name, redis_url=redis_url, load_entry_points=False)
    worker_app = QueueTasks(name, redis_url=redis_url, load_entry_points=False)
    worker_app.add_plugin(RaisesEverywhere(), name="raises-everywhere")

    @worker_app.task
    def noop() -> str:
        return "ran"

    tasks = [producer.add_task("noop") for _ in range(5)]
    with worker_app.running_worker(lease=2) as worker:
        finished = [producer.wait(t.uuid, timeout=30) for t in tasks]
        assert not worker._stopping.is_set()  # the worker is still claiming
        later = producer.add_task("noop")
        assert producer.wait(later.uuid, timeout=30).status == "error"
    for task in finished:
        assert task.status == "error"
        assert "raised by plugin 'raises-everywhere'" in (task.traceback or "")
    producer.stop()
    worker_app.stop()


def test_a_dead_workers_task_is_recovered_within_its_lease(server: RedisServer) -> None:
    name = "chaos-recovery"
    env = env_for(server, name)
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    task = app.add_task("sleepy", "r", 0.5)
    doomed = start_worker(env, "-c", "1", "--lease", "2")
    deadline = time.monotonic() + 30
    while app.get(task.uuid).status != "process":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    survivor = start_worker(env, "-c", "1", "--lease", "2")
    try:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed_at = time.monotonic()
        final = app.wait(task.uuid, timeout=60)
        recovery = time.monotonic() - killed_at
    finally:
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=30)
    assert final.status == "success" and final.attempts == 2
    # The idle worker wakes when the lease ends (2 s), then runs the task (0.5 s).
    assert recovery < 2 + 0.5 + 3
    print(f"\nrecovered a dead worker's task in {recovery:.1f}s (lease 2s)")
    app.stop()


def test_dead_letters_can_be_listed_and_requeued_from_the_cli(server: RedisServer) -> None:
    name = "chaos-requeue"
    env = env_for(server, name)
    app = QueueTasks(name, redis_url=server.url, load_entry_points=False)
    keys = Keys.for_app(name)
    raw = redis.Redis.from_url(server.url)
    raw.hset(
        keys.task("bad"),
        mapping={
            "status": "new",
            "task_name": "noop",
            "priority": "0",
            "args": "[oops",
            "kwargs": "{}",
            "created_at": "1",
        },
    )
    raw.zadd(keys.queue, {"bad": 0})
    worker = start_worker(env, "--burst")
    worker.wait(timeout=60)
    cli = [sys.executable, "-m", "qtasks_core", "dead", "-A", "apps.sample:app"]
    listed = subprocess.run(cli, env=env, cwd=APPS, capture_output=True, text=True, timeout=60)
    assert "bad: malformed message" in listed.stdout
    raw.hset(keys.task("bad"), "args", '["fixed"]')  # the operator repairs the message
    requeued = subprocess.run(
        [*cli, "--requeue", "all"], env=env, cwd=APPS, capture_output=True, text=True, timeout=60
    )
    assert "bad: requeued" in requeued.stdout
    worker = start_worker(env, "--burst")
    worker.wait(timeout=60)
    assert app.get("bad").status == "success" and app.get("bad").returning == "fixed"
    app.stop()
