"""A lean, pipelined RESP connection for the hot scripts (enqueue, claim, extend, finish).

redis-py's asyncio client spends more time per command in Python than Redis spends
running it: a connection is taken from the pool and given back under a lock, and with a
socket timeout each write runs in a task of its own (``asyncio.wait_for``). On the
benchmark machine that put one ``LPUSH`` at about 250 µs, against under 100 µs for the
same command written straight to the socket. The four scripts that every task runs go
through this connection instead:

- one TCP (or Unix) connection per event loop, opened on first use and re-opened after
  a failure; requests are written as they come and replies matched in order, so
  concurrent callers share the round trip (pipelining) without a pool or a lock;
- replies are parsed by hiredis (already a dependency, through ``redis[hiredis]``);
- the same retry policy as the redis-py client (three attempts, exponential backoff),
  the same exception classes, and a reply deadline: when replies are owed and nothing
  arrives for ``reply_timeout`` seconds the connection is dropped and the callers get
  ``TimeoutError``;
- ``EVALSHA`` falls back to ``SCRIPT LOAD`` when the server lost its scripts (a restart).

Blocking commands never come here: they would hold up every reply behind them. URLs
this connection does not speak (TLS, RESP3, extra connection options) keep the redis-py
client for everything; :func:`supports` says which.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import UnixDomainSocketConnection, parse_url
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: URL options this connection honours; any other keeps the redis-py client.
_OPTIONS = frozenset(
    {"host", "port", "db", "username", "password", "path", "socket_timeout", "connection_class"}
)

#: Errors after which the command is retried on a new connection, as redis-py does.
_RETRIED = (RedisConnectionError, RedisTimeoutError)
RETRIES = 3


def supports(url: str) -> bool:
    """Whether :class:`RespConnection` can talk to the server at ``url``."""
    try:
        options = parse_url(url)
    except ValueError:
        return False
    cls = options.get("connection_class")
    return set(options) <= _OPTIONS and cls in (None, UnixDomainSocketConnection)


def _error(message: str) -> RedisError:
    """The redis-py exception for an error reply, so callers handle both clients alike."""
    code = message.split(" ", 1)[0]
    if code == "NOSCRIPT":
        return NoScriptError(message)
    if code == "LOADING":
        return BusyLoadingError(message)
    if code == "READONLY":
        return ReadOnlyError(message)
    if code in ("NOAUTH", "WRONGPASS") or message.startswith("invalid password"):
        return AuthenticationError(message)
    return ResponseError(message)


def _pack(args: Sequence[Any]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bool):
            raise TypeError(f"cannot send a bool to Redis: {arg!r}")
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int | float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"cannot send a {type(arg).__name__} to Redis: {arg!r}")
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(b"\r\n")
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    """Matches replies to requests in order; fails every pending request on loss."""

    def __init__(self, reply_timeout: float) -> None:
        self.reader = hiredis.Reader()
        self.pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reply_timeout = reply_timeout
        self._received = 0
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._received += 1
        self.reader.feed(data)
        pending = self.pending
        while pending:
            reply = self.reader.gets()
            if reply is False:
                break
            future = pending.popleft()
            if future.done():  # its caller was cancelled; the reply is still consumed
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed by server'}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def fail(self, exc: Exception) -> None:
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(exc)

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise RedisConnectionError("connection to Redis is closed")
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        transport.write(payload)
        if self._watchdog is None:
            self._arm(self._received)
        return future

    def _arm(self, seen: int) -> None:
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self.reply_timeout, self._check, seen)

    def _check(self, seen: int) -> None:
        # One timer per connection, not per request: it only fires late when replies
        # are owed and not one byte arrived since the last check.
        self._watchdog = None
        if not self.pending or self.transport is None:
            return
        if self._received == seen:
            self.fail(RedisTimeoutError(f"Redis sent no reply for {self.reply_timeout:g}s"))
            self.transport.abort()
            return
        self._arm(self._received)


class RespConnection:
    """A pipelined connection to one Redis server, for the loop that first uses it."""

    def __init__(
        self, url: str, *, connect_timeout: float = 5.0, reply_timeout: float = 30.0
    ) -> None:
        options = parse_url(url)
        self._path: str | None = options.get("path")
        self._host: str = options.get("host", "localhost")
        self._port = int(options.get("port", 6379))
        self._db = int(options.get("db", 0))
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._where = self._path or f"{self._host}:{self._port}"
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._backoff = ExponentialBackoff(cap=1.0, base=0.05)
        self._shas: dict[str, bytes] = {}

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        reply_timeout = self._reply_timeout

        def factory() -> _Protocol:
            return _Protocol(reply_timeout)

        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    _, protocol = await loop.create_unix_connection(factory, self._path)
                else:
                    _, protocol = await loop.create_connection(factory, self._host, self._port)
                try:
                    await self._hello(protocol)
                except BaseException:
                    if protocol.transport is not None:
                        protocol.transport.abort()
                    raise
        except TimeoutError:  # before OSError, its base class
            raise RedisTimeoutError(
                f"cannot connect to Redis at {self._where} within {self._connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {self._where}: {exc}") from exc
        return protocol

    async def _hello(self, protocol: _Protocol) -> None:
        hello: list[asyncio.Future[Any]] = []
        if self._password is not None:
            auth = ("AUTH", self._username, self._password)
            hello.append(protocol.send(_pack([a for a in auth if a is not None])))
        if self._db:
            hello.append(protocol.send(_pack(("SELECT", self._db))))
        for future in hello:
            await future

    async def _ready(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            return protocol
        # Callers that arrive while the connection opens wait for the same attempt.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, future: asyncio.Future[_Protocol]) -> None:
        self._connecting = None
        if not future.cancelled() and future.exception() is None:
            self._protocol = future.result()

    def abort(self) -> None:
        """Drop the connection at once; requests still owed a reply fail."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (bytes are not decoded).

        Retried like the redis-py client: up to ``RETRIES`` more attempts on a new
        connection after a ``ConnectionError`` or ``TimeoutError``, with backoff.
        """
        payload = _pack(args)
        failures = 0
        while True:
            try:
                protocol = self._protocol
                if protocol is None or protocol.transport is None:
                    protocol = await self._ready()
                return await protocol.send(payload)
            except _RETRIED:
                self.abort()
                failures += 1
                if failures > RETRIES:
                    raise
                await asyncio.sleep(self._backoff.compute(failures))

    async def evalsha(self, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a Lua script by its SHA1, loading it first if the server does not know it."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest().encode()
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.execute("SCRIPT", "LOAD", source)
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    async def close(self) -> None:
        """Close the connection; requests still owed a reply fail with ``ConnectionError``."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await protocol.closed


class BlockingPool:
    """Connections for blocking commands (``BLPOP``, ``BLMOVE``), one caller each.

    A blocked command holds its connection until the server answers, so every caller
    takes a connection of its own; up to ``keep`` idle ones are kept for the next. A
    connection whose caller was cancelled or failed is closed, never reused: its reply
    may still be on the way.
    """

    def __init__(self, url: str, *, keep: int = 4) -> None:
        self.url = url
        self.keep = keep
        self._idle: list[RespConnection] = []

    async def execute(self, *args: Any) -> Any:
        """Send one (blocking) command on a connection of its own; return the reply."""
        conn = self._idle.pop() if self._idle else RespConnection(self.url)
        try:
            reply = await conn.execute(*args)
        except BaseException:
            conn.abort()
            raise
        if len(self._idle) < self.keep:
            self._idle.append(conn)
        else:
            conn.abort()
        return reply

    async def close(self) -> None:
        """Close the idle connections (the busy ones close when their callers finish)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


class LeanScript:
    """A Lua script run over a :class:`RespConnection`, called like redis-py's scripts."""

    __slots__ = ("conn", "source")

    def __init__(self, conn: RespConnection, source: str) -> None:
        self.conn = conn
        self.source = source

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return await self.conn.evalsha(self.source, keys, args)
