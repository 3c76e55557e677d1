"""A Redis Cluster on loopback ports for the tests: primaries with their slots, optional
replicas, formed through redis-py (``CLUSTER ADDSLOTSRANGE``, ``MEET``, ``REPLICATE``)."""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from qtasks_core.keys import Keys
from tests.conftest import RedisServer
from tests.support import wait_for

SLOTS = 16384


def _port_pair() -> int:
    """A free port whose cluster bus port (10,000 above it) is free and valid too."""
    for _ in range(1000):
        port = random.randrange(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _node(folder: Path, *options: str) -> RedisServer:
    node = RedisServer(folder, *options)
    node.port = _port_pair()
    node.url = f"redis://127.0.0.1:{node.port}/0"
    return node


def _info(client: redis.Redis) -> dict[str, str]:
    reply: Any = client.execute_command("CLUSTER INFO")
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)


class Cluster:
    """``primaries`` primaries sharing the slots evenly, each with ``replicas`` replicas."""

    def __init__(self, folder: Path, primaries: int = 3, replicas: int = 0) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        options = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "1000",
            "--repl-diskless-sync-delay", "0",
            "--appendfsync", "everysec",
        )  # fmt: skip
        self.primaries = [_node(folder / f"p{i}", *options) for i in range(primaries)]
        self.replicas = [
            [_node(folder / f"p{i}r{j}", *options) for j in range(replicas)]
            for i in range(primaries)
        ]
        self.nodes = self.primaries + [r for group in self.replicas for r in group]
        for node in self.nodes:
            node.folder.mkdir()
            node.start()
        self.clients = {node.port: redis.Redis(port=node.port) for node in self.nodes}
        self._form()

    def _form(self) -> None:
        share = SLOTS // len(self.primaries)
        for i, node in enumerate(self.primaries):
            last = SLOTS - 1 if i == len(self.primaries) - 1 else (i + 1) * share - 1
            self.clients[node.port].execute_command("CLUSTER ADDSLOTSRANGE", i * share, last)
        first = self.primaries[0].port
        for node in self.nodes[1:]:
            self.clients[node.port].execute_command("CLUSTER MEET", "127.0.0.1", first)
        wait_for(
            lambda: all(
                int(_info(c)["cluster_known_nodes"]) == len(self.nodes)
                for c in self.clients.values()
            ),
            timeout=30,
            what="the cluster's nodes to meet",
        )
        for primary, group in zip(self.primaries, self.replicas, strict=True):
            ident = self.clients[primary.port].execute_command("CLUSTER MYID")
            for replica in group:
                self.clients[replica.port].execute_command("CLUSTER REPLICATE", ident)
        wait_for(self.settled, timeout=60, what="the cluster to be ok with replicas linked")

    def settled(self) -> bool:
        """Every live node says ``cluster_state:ok``; every replica's link is up."""
        try:
            for node in self.nodes:
                if node.process is None:
                    continue
                client = self.clients[node.port]
                if _info(client)["cluster_state"] != "ok":
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
            return True
        except redis.RedisError:
            return False

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every primary."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.primaries)

    def owner(self, app_name: str) -> RedisServer:
        """The node serving the slot of ``app_name``'s keys now."""
        slot = key_slot(Keys.for_app(app_name).prefix.encode())
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                for start, end, master, *_ in self.clients[node.port].execute_command(
                    "CLUSTER SLOTS"
                ):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
            except redis.RedisError:
                continue
        raise AssertionError(f"no live node knows who serves slot {slot}")

    def app_names(self, prefix: str, count: int) -> list[str]:
        """``count`` app names whose keys are on different primaries."""
        names: list[str] = []
        owners: set[int] = set()
        for i in range(10_000):
            name = f"{prefix}-{i}"
            port = self.owner(name).port
            if port not in owners:
                owners.add(port)
                names.append(name)
                if len(names) == count:
                    return names
        raise AssertionError("no app names found on enough primaries")

    def client(self) -> redis.RedisCluster:
        """A redis-py cluster client, for the tests' own reads and writes."""
        return redis.RedisCluster(host="127.0.0.1", port=self.primaries[0].port)

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        for node in self.nodes:
            node.stop()
