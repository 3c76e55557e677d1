"""The redis-py internals we rely on, checked so a redis-py upgrade fails loudly here.

Every private piece of redis-py that QTasks uses is imported in
``qtasks_core/backends/_redispy.py`` (its docstring says why each is needed); these
tests pin the shape we use of each, naming the piece when it has moved, instead of
leaving the upgrade to fail deep inside a connection. They inspect redis-py itself;
the last one runs both seams once against the suite's server.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    MovedError,
    NoPermissionError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.support import free_port

SHIM = Path(__file__).parents[2] / "qtasks_core" / "backends" / "_redispy.py"


def _broken(piece: str, what: str) -> str:
    """The failure message: which piece, what changed, where it is used."""
    return (
        f"redis-py {redis.__version__}: {piece} {what}. QTasks relies on it: see "
        "qtasks_core/backends/_redispy.py"
    )


def _base_parser() -> Any:
    piece = "redis._parsers.BaseParser"
    try:
        module = importlib.import_module("redis._parsers")
    except ImportError as exc:
        pytest.fail(_broken(piece, f"cannot be imported ({exc})"))
    parser = getattr(module, "BaseParser", None)
    assert parser is not None, _broken(piece, "is gone from redis._parsers")
    return parser


# -- redis._parsers.BaseParser.parse_error: the lean connection's error replies --------


def test_base_parser_parse_error_is_a_classmethod_taking_the_reply_text() -> None:
    parser = _base_parser()
    piece = "redis._parsers.BaseParser.parse_error"
    assert isinstance(inspect.getattr_static(parser, "parse_error", None), classmethod), _broken(
        piece, "is no longer a classmethod (called on the class, with no parser instance)"
    )
    params = list(inspect.signature(parser.parse_error).parameters.values())
    assert len(params) >= 1 and all(p.default is not p.empty for p in params[1:]), _broken(
        piece, f"no longer takes the reply text alone (parameters: {params})"
    )
    assert params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD)


@pytest.mark.parametrize(
    ("reply", "expected", "says"),
    [
        # What the lean connection follows or waits out in a cluster.
        ("MOVED 3999 127.0.0.1:6381", MovedError, "127.0.0.1:6381"),
        ("ASK 3999 127.0.0.1:6381", AskError, "127.0.0.1:6381"),
        ("TRYAGAIN Multiple keys request during rehashing of slot", TryAgainError, "rehashing"),
        ("CLUSTERDOWN The cluster is down", ClusterDownError, "cluster is down"),
        # What it reconnects on, retries, or gives up on at once.
        ("READONLY You can't write against a read only replica.", ReadOnlyError, "read only"),
        ("LOADING Redis is loading the dataset in memory", BusyLoadingError, "loading"),
        ("ERR max number of clients reached", RedisConnectionError, "max number of clients"),
        ("NOAUTH Authentication required.", AuthenticationError, "Authentication required"),
        ("WRONGPASS invalid username-password pair", AuthenticationError, "username-password"),
        ("ERR invalid password", AuthenticationError, "invalid password"),
        ("NOPERM this user has no permissions", NoPermissionError, "no permissions"),
        # What it reads the text of: a function to load, a library loaded meanwhile.
        ("ERR Function not found", ResponseError, "Function not found"),
        ("ERR Library 'qtasks' already exists", ResponseError, "already exists"),
    ],
)
def test_base_parser_maps_each_error_reply_we_handle_to_its_class(
    reply: str, expected: type[RedisError], says: str
) -> None:
    from qtasks_core.backends._redispy import error_from_reply

    code = reply.split(" ")[0]
    error = _base_parser().parse_error(reply)
    assert isinstance(error, expected), _broken(
        "redis._parsers.BaseParser.parse_error",
        f"turns a {code} reply into {type(error).__name__}, not {expected.__name__}",
    )
    assert says in str(error)
    # The shim is that table, no more.
    mine = error_from_reply(reply)
    assert (type(mine), str(mine)) == (type(error), str(error))


def test_moved_and_ask_errors_carry_the_node_to_go_to() -> None:
    from qtasks_core.backends._redispy import error_from_reply

    for reply, cls in (
        ("MOVED 3999 10.0.0.2:7001", MovedError),
        ("ASK 12 10.0.0.2:7001", AskError),
    ):
        error = error_from_reply(reply)
        assert isinstance(error, cls)
        # _resp and _cluster read exc.host and exc.port.
        assert (str(error.host), int(error.port)) == ("10.0.0.2", 7001), _broken(
            f"{cls.__name__} (from BaseParser.parse_error)", "no longer carries .host and .port"
        )


def test_the_exception_hierarchy_the_lean_connection_branches_on() -> None:
    # _resp catches AskError for both redirections and tells MOVED apart by subclass;
    # a refused login is a ConnectionError that must not be retried; a LOADING reply a
    # ConnectionError that is; READONLY, TRYAGAIN, CLUSTERDOWN are replies, not losses.
    assert issubclass(MovedError, AskError), _broken("MovedError", "is no longer an AskError")
    assert issubclass(AuthenticationError, RedisConnectionError)
    assert issubclass(BusyLoadingError, RedisConnectionError)
    for cls in (ReadOnlyError, TryAgainError, ClusterDownError):
        assert issubclass(cls, ResponseError) and not issubclass(cls, RedisConnectionError), (
            _broken(cls.__name__, "is no longer a ResponseError only")
        )


# -- AbstractConnection._connect: where the slot-owner connection picks its node -------


def test_connections_open_their_socket_in_a_private_connect_coroutine() -> None:
    piece = "redis.asyncio.connection.Connection._connect"
    assert "_connect" in vars(AbstractConnection), _broken(
        "AbstractConnection._connect", "is no longer declared: connect() opens sockets elsewhere"
    )
    connect = vars(Connection).get("_connect")
    assert connect is not None, _broken(piece, "is gone (TCP connections open elsewhere)")
    assert inspect.iscoroutinefunction(connect), _broken(piece, "is no longer a coroutine")
    assert list(inspect.signature(connect).parameters) == ["self"], _broken(
        piece, f"takes arguments now: {inspect.signature(connect)}"
    )
    # It connects to self.host:self.port as they are when it runs, set just before.
    init = inspect.signature(Connection.__init__).parameters
    assert {"host", "port"} <= set(init), _broken("Connection.__init__", "lost host= or port=")


def test_the_slot_owner_connection_overrides_connect_only_through_the_shim() -> None:
    from qtasks_core.backends._cluster import SlotOwnerConnection, _SlotOwnerMixin
    from qtasks_core.backends._redispy import LocatedConnection

    assert SlotOwnerConnection.__mro__[:4] == (
        SlotOwnerConnection,
        _SlotOwnerMixin,
        LocatedConnection,
        Connection,
    )
    # Nobody between redis-py and the shim's override, and the cluster's own step
    # is the one the override asks.
    assert SlotOwnerConnection._connect is vars(LocatedConnection)["_connect"]
    assert SlotOwnerConnection.locate is vars(_SlotOwnerMixin)["locate"]


def test_private_redis_py_imports_live_only_in_the_shim() -> None:
    private = re.compile(r"\bredis(?:\.\w+)*\._\w")
    offenders = [
        f"{path.relative_to(SHIM.parents[2])}:{number}: {line.strip()}"
        for path in sorted(SHIM.parents[1].rglob("*.py"))
        if path != SHIM
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert not offenders, "import redis-py internals through _redispy.py:\n" + "\n".join(offenders)


# -- both seams, once, on the suite's server -------------------------------------------


def test_both_seams_work_against_a_real_server(redis_url: str) -> None:
    from qtasks_core.backends._cluster import Locator, SlotOwnerConnection, slot_owner_pool
    from qtasks_core.backends._resp import RespConnection
    from qtasks_core.backends._topology import Address, ClusterURL

    parts = urlsplit(redis_url)
    server: Address = (str(parts.hostname), int(parts.port or 6379))

    class Here(Locator):
        """The suite's server is no cluster (no CLUSTER SLOTS): it serves the slot."""

        def __init__(self) -> None:
            super().__init__(ClusterURL.of_node(*server, None, None), slot=0)
            self.asked = 0

        async def primary(self) -> Address:
            self.asked += 1
            return server

    moved = f"return redis.error_reply('MOVED 7 {server[0]}:{server[1]}')"

    async def slot_owner() -> None:
        locator = Here()
        pool: Any = slot_owner_pool(locator)  # redis-py's pool methods are untyped
        assert pool.connection_class is SlotOwnerConnection
        conn = pool.make_connection()
        conn.port = free_port()  # nothing there: only locate() gets it to the server
        try:
            await conn.connect()
        except RedisConnectionError as exc:
            pytest.fail(_broken("Connection._connect", f"is not what connect() calls: {exc}"))
        try:
            assert locator.asked == 1
            await conn.send_command("PING")
            assert await conn.read_response() == b"PONG"
            # MOVED drops the connection; the next one goes where it said, unasked.
            await conn.send_command("EVAL", moved, 0)
            with pytest.raises(RedisConnectionError, match="slot moved"):
                await conn.read_response()
            assert conn.moved_to == server and not conn.is_connected
            await conn.connect()
            await conn.send_command("PING")
            assert await conn.read_response() == b"PONG"
            assert locator.asked == 1
        finally:
            await conn.disconnect()

    async def lean() -> None:
        conn = RespConnection(redis_url)
        try:
            with pytest.raises(MovedError) as caught:
                await conn.execute("EVAL", moved, 0)
            assert (caught.value.slot_id, caught.value.host, caught.value.port) == (7, *server)
            assert caught.value.from_reply  # type: ignore[attr-defined]
            assert await conn.execute("PING") == b"PONG"
        finally:
            await conn.close()

    asyncio.run(slot_owner())
    asyncio.run(lean())
