"""Which Redis a URL names, read from the URL alone.

Three topologies, told apart by the scheme:

- **standalone**: ``redis://``, ``rediss://`` (TLS), ``unix://``, with redis-py's
  options in the query. A ``redis://`` URL of a cluster node is recognised at start
  (``INFO cluster``) and used as the cluster's (see ``_connect.Links.cluster_topology``).
- **Sentinel**: ``redis+sentinel://[user:pass@]host:port[,host:port...]/<service>[/db]``
  names the sentinels and the service they watch; ``user:pass`` are the primary's
  credentials, and ``?sentinel_username=...&sentinel_password=...`` the sentinels' own
  (if they need any). Connections go to the primary the sentinels name (``_sentinel``).
- **Cluster**: ``redis+cluster://[user:pass@]host:port[,host:port...]`` names some nodes
  of the cluster (any, primaries or replicas; more than one in case one is down).
  Connections go to the primary that serves the app's slot (``_cluster``).

Nothing here imports redis-py: a URL is checked, and refused with a message that names
what is wrong, when the backend is made, while the client and the transports load only
when the first connection opens (``_connect.open_links``, which reads this module; this
one never imports it back).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qs, quote, unquote

from .._urls import check_url, mask_url
from ..errors import TaskOptionError

SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Topology:
    """The Redis an app's backend talks to, and over what.

    :param url: the URL as given (checked), with its credentials.
    :param location: the URL with its passwords masked, for messages and logs.
    :param key_prefix: the app's key prefix: on a cluster, its hash slot picks the
        primary every connection goes to.
    :param sentinel: the sentinels to ask for the primary, for a Sentinel URL.
    :param cluster: some nodes of the cluster, for a cluster URL (or a node's URL
        recognised as one at start).
    :param lean: whether the hot functions and the blocking waits may take the lean
        RESP connection (``None``: whenever the URL allows it); see ``_connect``.
    :param max_connections: the size of redis-py's pool, and of the blocking waits'.
    """

    url: str
    location: str
    key_prefix: str
    sentinel: SentinelURL | None = None
    cluster: ClusterURL | None = None
    lean: bool | None = None
    max_connections: int | None = None

    @classmethod
    def of_url(
        cls,
        url: str,
        key_prefix: str,
        *,
        lean: bool | None = None,
        max_connections: int | None = None,
    ) -> Topology:
        """The topology ``url`` names; a ``TaskOptionError`` names what is wrong in it."""
        checked = check_url(url)
        location = mask_url(url)
        try:
            sentinel = SentinelURL.parse(url) if url.startswith(SENTINEL_SCHEME) else None
            cluster = ClusterURL.parse(url) if url.startswith(CLUSTER_SCHEME) else None
        except ValueError as exc:
            raise TaskOptionError(f"{exc} (in {location})") from None
        return cls(checked, location, key_prefix, sentinel, cluster, lean, max_connections)

    @property
    def standalone(self) -> bool:
        """Neither Sentinel nor Cluster (yet: a node's URL may turn out a cluster's)."""
        return self.sentinel is None and self.cluster is None

    def as_cluster(self, cluster: ClusterURL) -> Topology:
        """This topology, reaching the cluster ``cluster`` (a node's URL found to be one)."""
        return replace(self, cluster=cluster)


def _userinfo(username: str | None, password: str | None) -> str:
    if not (username or password):
        return ""
    return f"{quote(username or '', safe='')}:{quote(password or '', safe='')}@"


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    hosts: tuple[Address, ...]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_username: str | None
    sentinel_password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """Parse ``url``; a ``ValueError`` names what is missing or wrong."""
        if not url.startswith(SENTINEL_SCHEME):
            raise ValueError(f"not a sentinel URL (expected {SENTINEL_SCHEME}...)")
        rest = url[len(SENTINEL_SCHEME) :]
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
                    f"{SENTINEL_SCHEME}host:26379[,host:26379...]/<service>[/db])"
                )
            hosts.append((host.strip("[]"), int(port)))
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise ValueError(
                f"sentinel URL names no service: write {SENTINEL_SCHEME}host:26379/<service>[/db]"
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

    def template(self) -> str:
        """A ``redis://`` URL with this URL's credentials and database, whose host is a
        stand-in: the lean connection asks the sentinels for the real one."""
        return f"redis://{_userinfo(self.username, self.password)}sentinel-primary:6379/{self.db}"


@dataclass(frozen=True, slots=True)
class ClusterURL:
    """A parsed ``redis+cluster://`` URL (or a cluster node's ``redis://`` URL)."""

    seeds: tuple[Address, ...]
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> ClusterURL:
        """Parse ``url``; a ``ValueError`` names what is missing or wrong."""
        if not url.startswith(CLUSTER_SCHEME):
            raise ValueError(f"not a cluster URL (expected {CLUSTER_SCHEME}...)")
        rest = url[len(CLUSTER_SCHEME) :]
        if "?" in rest:
            raise ValueError(
                f"cluster URL: options ({rest.partition('?')[2]!r}) are not supported; "
                f"write {CLUSTER_SCHEME}[user:password@]host:port[,host:port...]"
            )
        userinfo, at, location = rest.rpartition("@")
        if not at:
            userinfo, location = "", rest
        username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
        hostlist, _, path = location.partition("/")
        if path.strip("/") not in ("", "0"):
            raise ValueError(
                f"cluster URL: a Redis Cluster has database 0 only, got /{path} "
                f"(write {CLUSTER_SCHEME}host:port[,host:port...])"
            )
        seeds = []
        for item in hostlist.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(
                    f"cluster URL: {item!r} is not host:port (write "
                    f"{CLUSTER_SCHEME}host:6379[,host:6379...])"
                )
            seeds.append((host.strip("[]"), int(port)))
        return cls(tuple(seeds), unquote(username) or None, unquote(password) or None)

    @classmethod
    def of_node(
        cls, host: str, port: int, username: str | None, password: str | None
    ) -> ClusterURL:
        """The cluster that the node at ``host:port`` belongs to."""
        return cls(((host, port),), username, password)

    def template(self) -> str:
        """A ``redis://`` URL with this URL's credentials, whose host is a stand-in: the
        lean connection asks the cluster for the real one (``_cluster.Locator``)."""
        return f"redis://{_userinfo(self.username, self.password)}cluster-primary:6379/0"
