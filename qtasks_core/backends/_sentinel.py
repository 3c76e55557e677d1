"""Redis Sentinel: the primary found through the sentinels, and found again after a
failover.

``redis+sentinel://[user:pass@]host:port[,host:port...]/<service>[/db]`` names the
sentinels and the service they watch; ``user:pass`` are the primary's credentials, and
``?sentinel_username=...&sentinel_password=...`` the sentinels' own (if they need any).
Every connection asks the sentinels where the primary is when it (re)connects: the
lean connection and the blocking waits through :meth:`SentinelURL.resolver`, redis-py
through its ``SentinelConnectionPool``. A connection that meets ``READONLY`` (the old
primary, demoted) is dropped and opened again to the new one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from redis.asyncio.sentinel import Sentinel

SCHEME = "redis+sentinel://"


def is_sentinel(url: str) -> bool:
    return url.startswith(SCHEME)


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_username: str | None
    sentinel_password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """Parse ``url``; a ``ValueError`` names what is missing or wrong."""
        if not is_sentinel(url):
            raise ValueError(f"not a sentinel URL (expected {SCHEME}...)")
        rest = url[len(SCHEME) :]
        rest, _, query = rest.partition("?")
        userinfo, at, location = rest.rpartition("@")
        if not at:
            userinfo, location = "", rest
        username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
        hostlist, _, path = location.partition("/")
        hosts = []
        for item in hostlist.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(
                    f"sentinel URL: {item!r} is not host:port (write "
                    f"{SCHEME}host:26379[,host:26379...]/<service>[/db])"
                )
            hosts.append((host.strip("[]"), int(port)))
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise ValueError(
                f"sentinel URL names no service: write {SCHEME}host:26379/<service>[/db]"
            )
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ValueError(f"sentinel URL path must be /<service>[/db], got /{path}")
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        unknown = set(options) - {"sentinel_username", "sentinel_password"}
        if unknown:
            raise ValueError(
                f"sentinel URL: unknown option(s) {sorted(unknown)}; known: "
                "sentinel_username, sentinel_password"
            )
        return cls(
            hosts=tuple(hosts),
            service=unquote(parts[0]),
            db=int(parts[1]) if len(parts) == 2 else 0,
            username=unquote(username) or None,
            password=unquote(password) or None,
            sentinel_username=options.get("sentinel_username"),
            sentinel_password=options.get("sentinel_password"),
        )

    def sentinel(self, **connection: Any) -> Sentinel:
        """A redis-py ``Sentinel`` for this URL (one per event loop)."""
        sentinel_kwargs = {
            k: v
            for k, v in (
                ("username", self.sentinel_username),
                ("password", self.sentinel_password),
            )
            if v is not None
        }
        return Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
            list(self.hosts),
            sentinel_kwargs=sentinel_kwargs or None,
            username=self.username,
            password=self.password,
            db=self.db,
            **connection,
        )

    def template(self) -> str:
        """A ``redis://`` URL with this URL's credentials and database, whose host
        is a stand-in: the lean connection asks :meth:`resolver` for the real one."""
        userinfo = ""
        if self.username or self.password:
            userinfo = (
                f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
            )
        return f"redis://{userinfo}sentinel-primary:6379/{self.db}"

    def resolver(self, sentinel: Sentinel) -> Callable[[], Awaitable[tuple[str, int]]]:
        """Where the primary is now, asked of the sentinels on every (re)connection."""

        async def primary() -> tuple[str, int]:
            host, port = await sentinel.discover_master(self.service)
            return str(host), int(port)

        return primary
