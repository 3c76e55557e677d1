"""Redis Sentinel: the primary found through the sentinels, and found again after a
failover.

The URL (:class:`~qtasks_core.backends._topology.SentinelURL`) names the sentinels and
the service they watch. Every connection asks the sentinels where the primary is when
it (re)connects: the lean connection and the blocking waits through
:func:`primary_resolver`, redis-py through its ``SentinelConnectionPool``. A connection
that meets ``READONLY`` (the old primary, demoted) is dropped and opened again to the
new one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.sentinel import Sentinel

from ._topology import Address, SentinelURL


def sentinel_of(url: SentinelURL, **connection: Any) -> Sentinel:
    """A redis-py ``Sentinel`` for ``url`` (one per event loop)."""
    sentinel_kwargs = {
        k: v
        for k, v in (("username", url.sentinel_username), ("password", url.sentinel_password))
        if v is not None
    }
    return Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        list(url.hosts),
        sentinel_kwargs=sentinel_kwargs or None,
        username=url.username,
        password=url.password,
        db=url.db,
        **connection,
    )


def primary_resolver(url: SentinelURL, sentinel: Sentinel) -> Callable[[], Awaitable[Address]]:
    """Where the primary is now, asked of the sentinels on every (re)connection."""

    async def primary() -> Address:
        host, port = await sentinel.discover_master(url.service)
        return str(host), int(port)

    return primary
