"""The private parts of redis-py that QTasks uses, all imported here and nowhere else.

redis-py has no public API for two things the backends need. This module takes them
from redis-py's private parts, once, and gives them names of our own; ``_resp`` and
``_cluster`` import private things only from here (public redis-py API stays where it
is used). ``tests/backends/test_redispy_seam.py`` pins every piece, so a redis-py
upgrade that moves or reshapes one fails there, naming it, instead of deep inside a
connection.

The pieces, and why each is needed:

``redis._parsers.BaseParser.parse_error`` (a private module), as :func:`error_from_reply`
    redis-py's table from an error reply's text to the exception its client raises for
    it. The lean connection (``_resp``) reads replies with hiredis itself, then goes
    through the same table, so that both clients raise the same classes: ``MOVED`` and
    ``ASK`` as ``MovedError``/``AskError`` carrying the node to go to, ``TRYAGAIN``,
    ``CLUSTERDOWN``, ``READONLY``, ``NOPERM``, ``NOAUTH``/``WRONGPASS`` and
    ``ERR invalid password`` as ``AuthenticationError``, ``LOADING`` and
    ``ERR max number of clients reached`` as ``ConnectionError``s (retried). A copy of
    the table would drift from redis-py's as it grows.

``redis.asyncio.connection.AbstractConnection._connect``, overridden by :class:`LocatedConnection`
    A private method: the coroutine that opens the socket to ``self.host:self.port``
    (``Connection._connect`` for TCP), which ``connect()`` calls on every
    (re)connection attempt, before the handshake. The cluster's slot-owner
    connection (``_cluster``) must pick its host and port right then (the primary that
    serves the app's slot now, or the node a ``MOVED`` named), and redis-py has no
    public hook that runs before the socket opens (``redis_connect_func`` runs after,
    already on the server connected to). An override keeps redis-py's name, so it lives
    here, and ``_cluster`` overrides :meth:`LocatedConnection.locate` instead.

Checked against redis-py 8.2.0 (installed; the test suite runs on it), and read in
redis-py's sources of 6.0.0, 6.4.0, 7.0.0, 7.4.1, 8.0.0 and 8.1.0, across the range
``pyproject.toml`` allows (``redis>=6.0,<9``): both pieces exist there with the shape
used here. redis-py 5.x is not allowed: its ``BaseParser`` table lacks the cluster codes
(``MOVED``, ``ASK``, ``TRYAGAIN``, ``CLUSTERDOWN``), which then come out as plain
``ResponseError``s.
"""

from __future__ import annotations

from redis._parsers import BaseParser
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

__all__ = ["LocatedConnection", "error_from_reply"]


def error_from_reply(message: str) -> RedisError:
    """The exception redis-py raises for the error reply ``message`` (its text, without
    the leading ``-``), e.g. ``MovedError`` for ``MOVED 3999 10.0.0.2:6379``."""
    error: RedisError = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]
    return error


class LocatedConnection(Connection):
    """A redis-py TCP connection that asks :meth:`locate` where to go before every
    (re)connection: the host and port it sets are those the socket opens to."""

    async def locate(self) -> None:
        """Set ``self.host`` and ``self.port`` for the connection about to open
        (by default, leave them as given)."""

    async def _connect(self) -> None:
        await self.locate()
        await super()._connect()  # type: ignore[no-untyped-call]
