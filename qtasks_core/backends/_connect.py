"""The connections of one event loop to the Redis a :class:`~._topology.Topology` names.

Two transports, both to the one server that holds the app's keys (the standalone
server, the primary the sentinels name, or the cluster primary that serves the app's
slot):

- redis-py's asyncio client, for every command: a pool per event loop, retried with
  backoff, with a health check and a socket timeout. Two clients share the pool's
  settings: one decodes replies, the other (``raw``) leaves them bytes, for data that
  may not be UTF-8;
- the lean RESP connection (``_resp``), for the functions every task runs and the
  blocking waits, whenever the URL allows it (:func:`uses_lean`): measured, it spends
  a third of redis-py's time in Python per call (``bench/RESULTS.md``).

:class:`Links` holds them and makes the library's functions callable over them; the
backend builds its calls on top. Loading this module loads redis-py and the
transports: the backend does it when it first connects.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import TaskOptionError
from . import _lua, _resp
from ._cluster import Locator, slot_of, slot_owner_pool
from ._sentinel import primary_resolver, sentinel_of
from ._topology import CLUSTER_SCHEME, SENTINEL_SCHEME, Address, ClusterURL, Topology

log = logging.getLogger("qtasks.backend.redis")

#: A reply slower than this means the connection is dead (redis-py's socket timeout,
#: the lean connections' reply deadline).
SOCKET_TIMEOUT: Final = 30.0

#: A function of the QTasks library, called as ``await function(keys=[...], args=[...])``.
Script = Callable[..., Awaitable[Any]]


class PyFunction:
    """A function of the QTasks library called through redis-py; the library is loaded
    when the server lacks it."""

    __slots__ = ("client", "name")

    def __init__(self, client: aioredis.Redis, name: str) -> None:
        self.client = client
        self.name = name

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        call = self.client.fcall
        try:
            return await call(self.name, len(keys), *keys, *args)
        except ResponseError as exc:
            if not _resp.is_missing_function(exc):
                raise
            await _resp.load_library(self.client.execute_command, _lua.LIBRARY)
            return await call(self.name, len(keys), *keys, *args)


@dataclass(slots=True)
class Links:
    """The connections of one event loop, and the library's functions over them."""

    topology: Topology
    #: redis-py, replies decoded.
    client: aioredis.Redis
    #: redis-py, replies left bytes (uuids and records may be anything a user wrote).
    raw: aioredis.Redis
    #: The pipelined connection of the hot functions, when the URL allows it.
    lean: _resp.RespConnection | None
    #: Connections for the blocking waits of workers and callers, likewise.
    blocking: _resp.BlockingPool | None
    _functions: dict[str, PyFunction] = field(default_factory=dict)

    def hot_function(self, name: str) -> Script:
        """Function ``name`` of the library (``_lua.CLAIM`` …) over the lean connection
        when there is one: for the functions every task runs. Replies are not decoded."""
        if self.lean is not None:
            return _resp.LeanFunction(self.lean, name, _lua.LIBRARY)
        return PyFunction(self.raw, name)

    def function(self, name: str) -> Script:
        """Function ``name`` of the library through redis-py: the lean connection is
        kept for the calls of every task, which would queue behind a long one.
        Replies are not decoded."""
        function = self._functions.get(name)
        if function is None:
            function = self._functions[name] = PyFunction(self.raw, name)
        return function

    async def cluster_topology(self) -> Topology | None:
        """The topology to use instead, when a standalone URL names a node of a Redis
        Cluster; ``None`` when it names a standalone server."""
        topology = self.topology
        info = await self.client.info("cluster")
        if not info.get("cluster_enabled"):
            return None
        options = parse_url(topology.url)
        if "connection_class" in options:
            raise TaskOptionError(
                f"{topology.location} is a Redis Cluster node: QTasks reaches a cluster over "
                "plain TCP only (TLS and unix sockets to a cluster are not supported); "
                "write redis+cluster://host:port[,host:port...]"
            )
        if int(options.get("db", 0)):
            raise TaskOptionError(
                f"{topology.location} is a Redis Cluster node, which has database 0 only: "
                "drop the /<db> from the URL"
            )
        log.info(
            "%s is a Redis Cluster node: the app's slot %d is served by its primary",
            topology.location,
            slot_of(topology.key_prefix),
        )
        return topology.as_cluster(
            ClusterURL.of_node(
                options.get("host", "localhost"),
                int(options.get("port", 6379)),
                options.get("username"),
                options.get("password"),
            )
        )

    async def close(self) -> None:
        await self.client.aclose()
        await self.raw.aclose()
        if self.lean is not None:
            await self.lean.close()
        if self.blocking is not None:
            await self.blocking.close()


def uses_lean(topology: Topology) -> bool:
    """Whether the hot functions and the blocking waits take the lean connection: when
    asked (or not refused) and the URL allows it (no TLS, RESP3 or extra options)."""
    # Sentinel and Cluster URLs take no options the lean connection lacks (a node's
    # redis:// URL found to be a cluster's is judged as the URL it is).
    speaks = topology.url.startswith((SENTINEL_SCHEME, CLUSTER_SCHEME)) or _resp.supports(
        topology.url
    )
    return speaks if topology.lean is None else topology.lean and speaks


def open_links(topology: Topology) -> Links:
    """The connections of the running event loop to the Redis ``topology`` names.

    Nothing is connected yet: each connection opens on its first command, and asks
    where the primary is then (Sentinel, Cluster), and again whenever it reconnects.
    """
    options: dict[str, Any] = {
        "max_connections": topology.max_connections,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 15,
        "socket_timeout": SOCKET_TIMEOUT,
    }
    address: Callable[[], Awaitable[Address]] | None = None
    lean_url = topology.url
    if topology.sentinel is not None:
        # Each connection asks the sentinels for the primary when it opens.
        sentinel = sentinel_of(topology.sentinel, socket_timeout=SOCKET_TIMEOUT)
        client, raw = (
            sentinel.master_for(topology.sentinel.service, decode_responses=decode, **options)
            for decode in (True, False)
        )
        address = primary_resolver(topology.sentinel, sentinel)
        lean_url = topology.sentinel.template()
    elif topology.cluster is not None:
        # Each connection asks the cluster which primary serves the app's slot.
        locator = Locator(
            topology.cluster, slot_of(topology.key_prefix), {"socket_timeout": SOCKET_TIMEOUT}
        )
        max_connections = options.pop("max_connections")
        client, raw = (
            aioredis.Redis(
                connection_pool=slot_owner_pool(
                    locator,
                    max_connections=max_connections or 2**31,
                    decode_responses=decode,
                    **options,
                )
            )
            for decode in (True, False)
        )
        address = locator.primary
        lean_url = topology.cluster.template()
    else:
        client, raw = (
            aioredis.Redis.from_url(topology.url, decode_responses=decode, **options)
            for decode in (True, False)
        )
    if not uses_lean(topology):
        return Links(topology, client, raw, None, None)
    return Links(
        topology,
        client,
        raw,
        _resp.RespConnection(lean_url, reply_timeout=SOCKET_TIMEOUT, address=address),
        _resp.BlockingPool(
            lean_url,
            limit=topology.max_connections,
            reply_timeout=SOCKET_TIMEOUT,
            address=address,
        ),
    )
