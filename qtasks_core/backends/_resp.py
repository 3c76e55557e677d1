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
- the same retry policy as the redis-py client (three retries, exponential backoff),
  the same exception classes, and a reply deadline: when a request has waited
  ``reply_timeout`` seconds for its reply the connection is dropped and the callers get
  ``TimeoutError``;
- ``FCALL`` loads the QTasks function library when the server lacks it (a restart).

Blocking commands never come here: they would hold up every reply behind them. URLs
this connection does not speak (TLS, RESP3, extra connection options) keep the redis-py
client for everything; :func:`supports` says which.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import UnixDomainSocketConnection, parse_url
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AskError,
    AuthenticationError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._redispy import error_from_reply

#: URL options this connection honours; any other keeps the redis-py client.
_OPTIONS = frozenset({"host", "port", "db", "username", "password", "path", "connection_class"})

#: Errors after which the command is retried on a new connection, as redis-py does.
_RETRIED = (RedisConnectionError, RedisTimeoutError)
RETRIES = 3
#: Seconds a command is retried while a cluster settles (TRYAGAIN, CLUSTERDOWN, MOVED).
SETTLE = 10.0


def supports(url: str) -> bool:
    """Whether :class:`RespConnection` can talk to the server at ``url``."""
    try:
        options = parse_url(url)
    except ValueError:
        return False
    cls = options.get("connection_class")
    return set(options) <= _OPTIONS and cls in (None, UnixDomainSocketConnection)


def _error(message: str) -> RedisError:
    """The redis-py exception for an error reply, so callers handle both clients alike
    (e.g. ``ERR max number of clients reached`` is a ``ConnectionError``, retried)."""
    error = error_from_reply(message)  # redis-py's own table of error codes
    error.from_reply = True  # type: ignore[attr-defined]
    return error


def _pack(args: Sequence[Any]) -> bytes:
    """A command in RESP: hiredis's packer (C, a quarter of the time of the loop below
    on a 25-argument FCALL); what it refuses goes through :func:`_pack_checked`, which
    packs what it can and names what it cannot."""
    try:
        packed: bytes = hiredis.pack_command(args if type(args) is tuple else tuple(args))
    except TypeError:
        return _pack_checked(args)
    return packed


def _pack_checked(args: Sequence[Any]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bool):
            raise TypeError(f"cannot send a bool to Redis: {arg!r}")
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg  # an IntEnum's value, not its repr
        elif isinstance(arg, float):
            data = repr(float(arg)).encode()
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
        self.loop = asyncio.get_running_loop()
        #: Requests owed a reply, oldest first, with the loop time each was sent.
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.reply_timeout = reply_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        #: An error the server sent unasked before closing (``max number of clients``).
        self.parting: RedisError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while pending:
            reply = self.reader.gets()
            if reply is False:
                break
            future = pending.popleft()[0]
            if future.done():  # its caller was cancelled; the reply is still consumed
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._unasked()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self.fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _unasked(self) -> None:
        """Keep an error reply that came with no request pending (the server's last
        word before it closed), to give it to the next caller instead of "closed"."""
        if not self.pending and self.parting is None:
            reply = self.reader.gets()
            if isinstance(reply, hiredis.ReplyError):
                self.parting = _error(str(reply))

    def fail(self, exc: Exception) -> None:
        while self.pending:
            future = self.pending.popleft()[0]
            if not future.done():
                future.set_exception(exc)

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        transport = self.transport
        if transport is None or transport.is_closing():
            self._unasked()
            raise self.parting or RedisConnectionError("connection to Redis is closed")
        future = self.loop.create_future()
        self.pending.append((future, self.loop.time()))
        transport.write(payload)
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self.reply_timeout, self._check)
        return future

    def _check(self) -> None:
        # One timer per connection, not per request, set for when the oldest request
        # owed a reply reaches the deadline.
        self._watchdog = None
        if not self.pending or self.transport is None:
            return
        waited = self.loop.time() - self.pending[0][1]
        if waited >= self.reply_timeout:
            self.fail(RedisTimeoutError(f"Redis sent no reply for {self.reply_timeout:g}s"))
            self.transport.abort()
            return
        self._watchdog = self.loop.call_later(self.reply_timeout - waited, self._check)


class RespConnection:
    """A pipelined connection to one Redis server, for the loop that first uses it."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        reply_timeout: float = 30.0,
        address: Callable[[], Awaitable[tuple[str, int]]] | None = None,
    ) -> None:
        """:param address: where to connect, asked on every (re)connection (Sentinel:
        the primary of now); the URL then gives only credentials and database, and a
        ``READONLY`` reply (a demoted primary) reconnects."""
        self._address = address
        self._hint: tuple[str, int] | None = None
        self._url = url
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
        self._closed = False
        self._backoff = ExponentialBackoff(cap=1.0, base=0.05)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        reply_timeout = self._reply_timeout

        def factory() -> _Protocol:
            return _Protocol(reply_timeout)

        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._hint is not None:
                    (self._host, self._port), self._hint = self._hint, None
                    self._where = f"{self._host}:{self._port}"
                elif self._address is not None:
                    self._host, self._port = await self._address()
                    self._where = f"{self._host}:{self._port}"
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
        if self._username is not None or self._password is not None:
            # As redis-py: AUTH [username] password (an empty password if none given).
            auth = ["AUTH", self._password or ""]
            if self._username is not None:
                auth.insert(1, self._username)
            hello.append(protocol.send(_pack(auth)))
        if self._db:
            hello.append(protocol.send(_pack(("SELECT", self._db))))
        # Every reply is read, so a failed AUTH leaves no unread SELECT error behind.
        for result in await asyncio.gather(*hello, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def _ready(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            return protocol
        if self._closed:
            raise RedisConnectionError("connection to Redis was closed by QTasks")
        # Callers that arrive while the connection opens wait for the same attempt.
        connecting = self._connecting
        if connecting is None:
            connecting = self._connecting = asyncio.ensure_future(self._connect())
            connecting.add_done_callback(self._connected)
        try:
            return await asyncio.shield(connecting)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if connecting.cancelled() and self.closed and not (task and task.cancelling()):
                # The attempt was called off by close(), not this caller's cancellation.
                raise RedisConnectionError("connection to Redis was closed by QTasks") from None
            raise

    def _connected(self, future: asyncio.Future[_Protocol]) -> None:
        self._connecting = None
        if future.cancelled() or future.exception() is not None:
            return
        protocol = future.result()
        if self._closed:  # closed while it opened: nobody will use or close it
            if protocol.transport is not None:
                protocol.transport.abort()
            return
        self._protocol = protocol

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`abort` was called (no reconnecting then)."""
        return self._closed

    def _drop(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()

    def _shut(self) -> _Protocol | None:
        """Refuse any further (re)connection; hand back the open protocol, if any."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()  # its half-open socket is closed by _connect
        protocol, self._protocol = self._protocol, None
        return protocol if protocol is not None and protocol.transport is not None else None

    def abort(self) -> None:
        """Close at once, for good; requests still owed a reply fail."""
        protocol = self._shut()
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (bytes are not decoded).

        Retried like the redis-py client: up to ``RETRIES`` more attempts on a new
        connection after a ``ConnectionError`` or ``TimeoutError``, with backoff. An
        error *reply* of those kinds (``LOADING`` after a restart) leaves the connection
        alone: other callers' requests on it are fine. Where an ``address`` finds the
        server (Sentinel, Cluster), ``READONLY`` and ``MOVED`` reconnect to where it
        says now; ``ASK`` is followed for this one command; ``TRYAGAIN`` and
        ``CLUSTERDOWN`` (a cluster settling) are retried.
        """
        payload = _pack(args)
        failures = 0
        settling_until: float | None = None
        while True:
            protocol = None
            try:
                protocol = self._protocol
                if protocol is None or protocol.transport is None:
                    protocol = await self._ready()
                return await protocol.send(payload)
            except (TryAgainError, ClusterDownError, AskError) as exc:
                if isinstance(exc, MovedError):
                    if self._address is None:
                        raise
                    if self._protocol is protocol:
                        # The node that refused knows who serves the slot now: asked
                        # next, before the cluster, whose other nodes may not know yet.
                        self._hint = (str(exc.host), int(exc.port))
                        self._drop()
                elif isinstance(exc, AskError) and args[0] != "FCALL":
                    return await self._asking(exc, payload)
                # A cluster settling (a failover, a slot on the move; a function is
                # never sent after an ASK: its other keys may be on either node) takes
                # longer than a dropped connection: waited out up to SETTLE seconds.
                now = asyncio.get_running_loop().time()
                settling_until = settling_until or now + SETTLE
                if now >= settling_until:
                    raise
                await asyncio.sleep(min(0.25, 0.02 * 2 ** min(failures, 4)))
                failures += 1
            except (*_RETRIED, ReadOnlyError) as exc:
                # A refused login is a ConnectionError in redis-py, but the same
                # credentials fail the same way again: no retry. READONLY is retried
                # only where the next connection may reach another server.
                if self._closed or isinstance(exc, AuthenticationError):
                    raise
                readonly = isinstance(exc, ReadOnlyError)
                if readonly and self._address is None:
                    raise
                # Only the connection that failed: callers that shared it get the same
                # reply and must not drop the one opened meanwhile.
                # A server at maxclients closes the connection after its reply.
                failed = (
                    not getattr(exc, "from_reply", False)
                    or readonly
                    or "max number of clients" in str(exc)
                )
                if failed and self._protocol is protocol:
                    self._drop()
                failures += 1
                if failures > RETRIES:
                    raise
                await asyncio.sleep(self._backoff.compute(failures))

    async def _asking(self, exc: AskError, payload: bytes) -> Any:
        """Send ``payload`` once to the node an ``ASK`` reply names (a slot half-way
        through a migration), after ``ASKING``, on a connection of its own."""
        host, port = str(exc.host), int(exc.port)

        async def there() -> tuple[str, int]:
            return host, port

        target = RespConnection(
            self._url,
            connect_timeout=self._connect_timeout,
            reply_timeout=self._reply_timeout,
            address=there,
        )
        try:
            protocol = await target._ready()
            asking = protocol.send(_pack(("ASKING",)))
            reply = protocol.send(payload)
            await asking
            return await reply
        finally:
            target.abort()

    async def fcall(self, name: str, library: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Call the Redis function ``name``, loading ``library`` first if the server
        does not have it (a new server, a restart without persistence, a flush)."""
        try:
            return await self.execute("FCALL", name, len(keys), *keys, *args)
        except ResponseError as exc:
            if not is_missing_function(exc):
                raise
            await load_library(self.execute, library)
            return await self.execute("FCALL", name, len(keys), *keys, *args)

    async def close(self) -> None:
        """Close for good; requests still owed a reply fail with ``ConnectionError``."""
        protocol = self._shut()
        if protocol is None or protocol.transport is None:
            return
        protocol.transport.close()
        # A dead peer may never take the buffered bytes: do not wait for ever.
        try:
            await asyncio.wait_for(asyncio.shield(protocol.closed), 1.0)
        except TimeoutError:
            if protocol.transport is not None:
                protocol.transport.abort()


class BlockingPool:
    """Connections for blocking commands (``BLPOP``, ``BLMOVE``), one caller each.

    A blocked command holds its connection until the server answers, so every caller
    takes a connection of its own (at most ``limit`` at once, if given: the others
    wait for one); up to ``keep`` idle ones are kept for the next. A connection whose
    caller was cancelled or failed is closed, never reused: its reply may still be on
    the way.
    """

    def __init__(
        self,
        url: str,
        *,
        keep: int = 16,
        limit: int | None = None,
        reply_timeout: float = 30.0,
        address: Callable[[], Awaitable[tuple[str, int]]] | None = None,
    ) -> None:
        self.url = url
        self.address = address
        self.keep = keep
        self.reply_timeout = reply_timeout
        self._idle: list[RespConnection] = []
        self._slots = asyncio.Semaphore(limit) if limit else None
        self._closed = False

    async def execute(self, *args: Any) -> Any:
        """Send one (blocking) command on a connection of its own; return the reply."""
        if self._slots is None:
            return await self._execute(args)
        async with self._slots:
            return await self._execute(args)

    async def _execute(self, args: tuple[Any, ...]) -> Any:
        conn = (
            self._idle.pop()
            if self._idle
            else RespConnection(self.url, reply_timeout=self.reply_timeout, address=self.address)
        )
        try:
            reply = await conn.execute(*args)
        except BaseException:
            conn.abort()
            raise
        if self._closed or len(self._idle) >= self.keep:
            conn.abort()
        else:
            self._idle.append(conn)
        return reply

    async def close(self) -> None:
        """Close the idle connections; busy ones are closed when their call returns."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


def is_missing_function(exc: ResponseError) -> bool:
    """Whether ``exc`` says the server lacks the function called."""
    return "Function not found" in str(exc)


async def load_library(execute: Callable[..., Awaitable[Any]], library: str) -> None:
    """``FUNCTION LOAD`` ``library`` through ``execute``; loaded meanwhile by another
    process is as good."""
    try:
        await execute("FUNCTION", "LOAD", library)
    except ResponseError as exc:
        if "already exists" not in str(exc):
            raise


class LeanFunction:
    """A function of the QTasks library called over a :class:`RespConnection`, called
    like redis-py's scripts: ``await function(keys=[...], args=[...])``."""

    __slots__ = ("conn", "library", "name")

    def __init__(self, conn: RespConnection, name: str, library: str) -> None:
        self.conn = conn
        self.name = name
        self.library = library

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return await self.conn.fcall(self.name, self.library, keys, args)
