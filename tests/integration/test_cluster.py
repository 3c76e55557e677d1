"""Redis Cluster: apps on different shards of a real cluster the test forms, a primary
killed under load and its replica promoted; a node's plain URL recognised as a cluster."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from qtasks_core import BackendError, QueueTasks, TaskOptionError, hookimpl
from qtasks_core.stats import Stats
from tests.chaos.test_chaos import start_worker
from tests.cluster_support import Cluster
from tests.conftest import RedisServer
from tests.integration.apps import sample
from tests.support import wait_for

PER_APP = 1000
CONCURRENCY = 8


def _env(url: str, name: str, ledger: RedisServer) -> dict[str, str]:
    from tests.chaos.test_chaos import env_for

    return {**env_for(ledger, name), "QTASKS_REDIS_URL": url, "QTASKS_TEST_LEDGER": ledger.url}


def test_two_apps_on_two_shards_carry_on_after_a_primary_fails_over(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "cluster", primaries=3, replicas=1)
    ledger = RedisServer(tmp_path / "ledger")
    ledger.folder.mkdir()
    ledger.start()
    ledger_client = redis.Redis.from_url(ledger.url, decode_responses=True)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        hit, spared = cluster.app_names("cluster-failover", 2)
        victim = cluster.owner(hit)
        assert cluster.owner(spared) is not victim
        apps = {name: QueueTasks(name, redis_url=cluster.url, load_entry_points=False)
                for name in (hit, spared)}  # fmt: skip
        tags: dict[str, dict[str, str]] = {name: {} for name in apps}
        for name, app in apps.items():
            for i in range(PER_APP * 4 // 5):
                tags[name][app.add_task("sleepy", f"{name}-{i}", 0.005).uuid] = f"{name}-{i}"
            workers.append(
                start_worker(
                    _env(cluster.url, name, ledger), "-c", str(CONCURRENCY), "--lease", "3"
                )
            )
        wait_for(
            lambda: len(sample.executions(ledger_client, hit)) > PER_APP // 4,
            timeout=60,
            what="tasks to run on the first primary",
        )
        admin = cluster.clients[victim.port]
        # Every write so far is on the replica: what a failover may lose is what the
        # primary acknowledged after this (asynchronous replication), counted below.
        assert admin.execute_command("WAIT", 1, 5000) == 1
        running_at_kill = int(admin.zcard(f"qtasks:{{{hit}}}:running"))
        victim.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        victim.process.wait()  # type: ignore[union-attr]
        victim.process = None
        killed_at = time.monotonic()

        refused = 0
        for name, app in apps.items():
            for i in range(PER_APP * 4 // 5, PER_APP):
                while True:
                    try:
                        uuid = app.add_task("sleepy", f"{name}-{i}", 0.005).uuid
                        break
                    except BackendError:
                        refused += 1  # the failover is under way: a caller retries
                        assert time.monotonic() - killed_at < 60, "no new primary in 60 s"
                        time.sleep(0.1)
                tags[name][uuid] = f"{name}-{i}"
        for name, app in apps.items():
            for uuid in tags[name]:
                assert app.wait(uuid, timeout=120).status == "success"
        promoted = cluster.owner(hit)
        assert promoted is cluster.replicas[cluster.primaries.index(victim)][0]
        twice = {
            name: sorted(t for t, n in sample.executions(ledger_client, name).items() if n > 1)
            for name in apps
        }
        assert twice[spared] == [], "a task of the other shard ran twice"
        # A task runs again only if the new primary did not learn of its claim or its
        # end: one of those in flight on that shard when its primary died.
        assert len(twice[hit]) <= max(running_at_kill, 2 * CONCURRENCY), twice[hit]
        print(
            f"\ncluster failover: {2 * PER_APP} tasks all ran; {refused} enqueue(s) refused "
            f"while the shard had no primary; {len(twice[hit])} ran twice "
            f"({running_at_kill} running at the kill)"
        )
        for app in apps.values():
            app.stop()
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        ledger_client.close()
        ledger.stop()
        cluster.stop()


def test_a_plain_url_of_a_cluster_node_is_used_as_the_cluster(cluster: Any) -> None:
    name = cluster.app_names("cluster-plain", 3)[1]
    elsewhere = next(n for n in cluster.primaries if n is not cluster.owner(name))
    app = QueueTasks(name, redis_url=elsewhere.url, load_entry_points=False, events=True)
    changes: list[Any] = []

    class Audit:
        @hookimpl
        def storage_status_changed(self, change: Any) -> None:
            changes.append((change.uuid, change.previous, change.status))

    app.add_plugin(Audit())

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    uuids = [app.add_task("add", i, 1).uuid for i in range(20)]
    with app.running_worker(concurrency=4):
        assert [app.wait(u, timeout=30).returning for u in uuids] == [i + 1 for i in range(20)]
    assert Stats(app).inspect().status_counts["success"] == 20
    # Every change told once, and the event stream (in the app's slot) holds the same.
    run = [(None, "new"), ("new", "process"), ("process", "success")]
    for uuid in uuids:
        assert [c[1:] for c in changes if c[0] == uuid] == run
    streamed = [(c.uuid, c.previous, c.status) for c in app.events(after="0", timeout=0.5)]
    assert sorted(map(repr, streamed)) == sorted(map(repr, changes))
    # Written where the cluster keeps the app's slot, not on the node of the URL.
    assert cluster.clients[cluster.owner(name).port].exists(f"qtasks:{{{name}}}:counts")
    app.stop()


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis+cluster://127.0.0.1", "is not host:port"),
        ("redis+cluster://127.0.0.1:7000/2", "database 0 only"),
        ("redis+cluster://127.0.0.1:7000?timeout=1", "options"),
    ],
)
def test_a_bad_cluster_url_is_refused_naming_the_problem(url: str, names: str) -> None:
    with pytest.raises(TaskOptionError, match=names):
        QueueTasks("bad", redis_url=url, load_entry_points=False).backend  # noqa: B018


def test_a_cluster_url_of_a_standalone_server_says_so(redis_url: str) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    app = QueueTasks("standalone", redis_url=f"redis+cluster://127.0.0.1:{port}",
                     load_entry_points=False)  # fmt: skip
    with pytest.raises(BackendError, match="not a cluster node"):
        app.add_task("anything")
    app.stop()


def _migrate_slot(cluster: Any, slot: int, source: Any, target: Any) -> None:
    """Move ``slot`` from ``source`` to ``target`` as ``redis-cli --cluster reshard``
    does: IMPORTING/MIGRATING, the keys a batch at a time, then the new owner."""
    src, dst = cluster.clients[source.port], cluster.clients[target.port]
    src_id, dst_id = (c.execute_command("CLUSTER MYID") for c in (src, dst))
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
    while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 20):
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        time.sleep(0.02)  # the app runs between batches, meeting ASK and TRYAGAIN
    for client in (dst, src):
        client.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)


def test_an_app_moved_to_another_shard_while_it_runs_loses_nothing(cluster: Any) -> None:
    from redis.crc import key_slot

    name = cluster.app_names("cluster-reshard", 1)[0]
    source = cluster.owner(name)
    target = next(n for n in cluster.primaries if n is not source)
    app = QueueTasks(name, redis_url=cluster.url, load_entry_points=False)

    @app.task
    async def nap(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    uuids = [app.add_task("nap", 0.01).uuid for i in range(300)]
    with app.running_worker(concurrency=8):
        wait_for(lambda: app.get(uuids[20]).status == "success", timeout=30, what="tasks to run")  # type: ignore[union-attr]
        _migrate_slot(cluster, key_slot(f"qtasks:{{{name}}}:".encode()), source, target)
        uuids += [app.add_task("nap", 0.01).uuid for i in range(50)]
        assert [app.wait(u, timeout=60).status for u in uuids] == ["success"] * len(uuids)
    assert cluster.owner(name) is target
    # No step stopped half-way on keys split between the nodes: nothing set aside,
    # nothing delivered twice.
    assert app.dead_letters() == []
    assert {app.get(u).attempts for u in uuids} == {1}  # type: ignore[union-attr]
    app.stop()
