"""Redis Sentinel: a primary, a replica and three sentinels started by the test; the
primary is killed under load and the sentinels promote the replica."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from qtasks_core import BackendError, QueueTasks
from tests.chaos.test_chaos import env_for, start_worker
from tests.conftest import RedisServer, server_binary
from tests.support import free_port, wait_for

SERVICE = "mymaster"


class SentinelNode:
    """A sentinel on a loopback port watching ``SERVICE``."""

    def __init__(self, folder: Path, primary_port: int) -> None:
        folder.mkdir()
        self.port = free_port()
        conf = folder / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.process = subprocess.Popen(
            [server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port, decode_responses=True)
        wait_for(self._answers, timeout=10, what="a sentinel to start")

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def test_workers_and_producers_carry_on_after_a_failover(tmp_path: Path) -> None:
    primary = RedisServer(tmp_path / "primary", "--repl-diskless-sync-delay", "0")
    primary.folder.mkdir()
    primary.start()
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    replica.folder.mkdir()
    replica.start()
    sentinels = [SentinelNode(tmp_path / f"s{i}", primary.port) for i in range(3)]
    workers: list[subprocess.Popen[bytes]] = []
    admin = redis.Redis(port=primary.port)
    try:
        wait_for(
            lambda: admin.info("replication").get("connected_slaves") == 1,
            timeout=20,
            what="the replica to link",
        )
        wait_for(
            lambda: all(
                len(s.client.sentinel_sentinels(SERVICE)) == 2
                and len(s.client.sentinel_slaves(SERVICE)) == 1
                for s in sentinels
            ),
            timeout=30,
            what="the sentinels to find each other and the replica",
        )
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
        url = f"redis+sentinel://{hosts}/{SERVICE}"
        name = "sentinel-failover"
        app = QueueTasks(name, redis_url=url, load_entry_points=False)
        env = {**env_for(primary, name), "QTASKS_REDIS_URL": url}
        workers = [start_worker(env, "-c", "8", "--lease", "3") for _ in range(2)]
        before = [app.add_task("nap", 0.01).uuid for _ in range(1400)]
        wait_for(
            lambda: sum(t.status == "success" for t in map(app.get, before[:400])) > 200,  # type: ignore[union-attr]
            timeout=60,
            what="tasks to run on the first primary",
        )
        # Every task accepted so far is on the replica too: none may be lost.
        assert admin.execute_command("WAIT", 1, 5000) == 1
        primary.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        primary.process.wait()  # type: ignore[union-attr]
        killed_at = time.monotonic()

        after: list[str] = []
        refused = 0
        while len(after) < 600:
            try:
                after.append(app.add_task("nap", 0.01).uuid)
            except BackendError:
                refused += 1  # the failover is under way: a caller retries
                assert time.monotonic() - killed_at < 60, "no primary after 60 s"
                time.sleep(0.1)
        for uuid in before + after:
            assert app.wait(uuid, timeout=120).status == "success"
        promoted = sentinels[0].client.sentinel_get_master_addr_by_name(SERVICE)
        assert int(promoted[1]) == replica.port
        print(
            f"\nfailover: {refused} enqueue(s) refused while no primary answered; "
            f"{len(before) + len(after)} tasks all ran"
        )
        app.stop()
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        for node in sentinels:
            node.stop()
        replica.stop()
        primary.stop()
