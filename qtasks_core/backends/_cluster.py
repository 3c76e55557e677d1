"""Redis Cluster: every connection goes to the primary that serves the app's slot.

All keys of one app share one hash slot (``qtasks:{<app>}:``), so an app lives on one
shard and needs no cluster client: the lean connection, the blocking waits and redis-py
alike connect to the primary that holds the slot, asked of the cluster (``CLUSTER
SLOTS``) on every (re)connection. A ``MOVED`` reply (a failover, or the slot moved to
another shard) drops the connection and asks again; ``ASK`` (the slot half-way through a
migration) is followed for that one command; ``TRYAGAIN`` and ``CLUSTERDOWN`` are waited
out like a lost connection. Pipelines, ``MULTI`` and scans of the app's keys then work as
on one server, and cost what they cost there: measured in ``bench/cluster.py``, a
cluster client routing each command by its keys would only add work per call.

The URL (:class:`~qtasks_core.backends._topology.ClusterURL`) names some nodes of the
cluster; a plain ``redis://`` URL of a cluster node is recognised at start (``INFO
cluster``) and treated as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.connection import ConnectionPool
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    MovedError,
    NoPermissionError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import str_if_bytes

from ._redispy import LocatedConnection
from ._topology import Address, ClusterURL


@dataclass(slots=True)
class Locator:
    """Finds the primary serving one slot by asking the nodes it knows, in turn."""

    cluster: ClusterURL
    slot: int
    connection: dict[str, Any] = field(default_factory=dict)
    #: Every node seen so far (seeds first): any of them may answer ``CLUSTER SLOTS``.
    known: list[Address] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.known = list(self.cluster.seeds)

    async def primary(self) -> Address:
        """Where the slot's primary is now; ``ConnectionError`` if no node answers."""
        failures: list[str] = []
        # Seeds in order (the operator's first choice), the nodes learned after them.
        for host, port in list(self.known):
            try:
                reply = await self._slots(host, port)
            except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
                failures.append(f"{host}:{port}: {exc}")
                continue
            except NoPermissionError:
                raise  # the same on every node: name it, do not hide it behind a retry
            except ResponseError as exc:
                if "cluster support disabled" in str(exc):
                    raise RedisConnectionError(
                        f"{host}:{port} is not a cluster node (cluster support disabled): "
                        "use a redis:// URL for a standalone server"
                    ) from None
                failures.append(f"{host}:{port}: {exc}")
                continue
            found = self._learn(reply, host)
            if found is not None:
                return found
            failures.append(f"{host}:{port}: no primary serves slot {self.slot}")
        raise RedisConnectionError(
            f"no node of the cluster named where slot {self.slot} is served: " + "; ".join(failures)
        )

    async def _slots(self, host: str, port: int) -> Any:
        client = _node_client(host, port, self.cluster, **self.connection)
        try:
            return await client.execute_command("CLUSTER SLOTS")
        finally:
            await client.aclose()

    def _learn(self, reply: Any, asked: str) -> Address | None:
        found: Address | None = None
        for start, end, *nodes in reply:
            for node in nodes:
                host = str_if_bytes(node[0]) or asked  # "" or NULL: the node we asked
                address = (host, int(node[1]))
                if address not in self.known:
                    self.known.append(address)
            if int(start) <= self.slot <= int(end) and nodes:
                found = (str_if_bytes(nodes[0][0]) or asked, int(nodes[0][1]))
        return found


def _node_client(host: str, port: int, cluster: ClusterURL, **connection: Any) -> Any:
    from redis.asyncio import Redis

    return Redis(
        host=host,
        port=port,
        username=cluster.username,
        password=cluster.password,
        single_connection_client=True,
        **connection,
    )


def slot_of(app_keys_prefix: str) -> int:
    """The hash slot of an app's keys (all of them share it)."""
    return int(key_slot(app_keys_prefix.encode()))


class _SlotOwnerMixin:
    """A redis-py connection to the primary serving the pool's slot, found anew on
    every (re)connection; ``MOVED`` drops it, so that the retry reconnects there."""

    host: str
    port: int

    def __init__(self, **kwargs: Any) -> None:
        self.locator: Locator = kwargs.pop("locator")
        self.moved_to: Address | None = None
        super().__init__(**kwargs)

    async def locate(self) -> None:
        # Asked before every (re)connection (LocatedConnection, the redis-py seam).
        # The node that answered MOVED knows who serves the slot now; the cluster's
        # other nodes may not know yet.
        if self.moved_to is not None:
            (self.host, self.port), self.moved_to = self.moved_to, None
        else:
            self.host, self.port = await self.locator.primary()

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except MovedError as exc:
            await self.disconnect()  # type: ignore[attr-defined]
            self.moved_to = (str(exc.host), int(exc.port))
            raise RedisConnectionError(
                f"the app's slot moved to {exc.host}:{exc.port}; reconnecting"
            ) from exc


class SlotOwnerConnection(_SlotOwnerMixin, LocatedConnection):
    pass


def slot_owner_pool(locator: Locator, **options: Any) -> ConnectionPool:
    """A redis-py pool whose connections go to the primary serving ``locator.slot``."""
    return ConnectionPool(
        connection_class=SlotOwnerConnection,
        locator=locator,
        username=locator.cluster.username,
        password=locator.cluster.password,
        **options,
    )
