"""The pipelined connection of the hot scripts, against a real server."""

from __future__ import annotations

import asyncio
import enum
import time
from typing import Any

import pytest
import redis
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError, TimeoutError

from qtasks_core.backends._resp import BlockingPool, LeanFunction, RespConnection, supports
from tests.conftest import RedisServer

LIBRARY = """#!lua name=resp_test
redis.register_function('resp_test_echo', function(keys, args) return {keys[1], args[1]} end)
"""


class Silent:
    """A TCP server that reads requests and answers none, counting its connections."""

    def __init__(self) -> None:
        self.opened = 0
        self.open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self.open += 1
        try:
            await reader.read()
        finally:
            self.open -= 1
            writer.close()

    async def start(self) -> tuple[asyncio.Server, str]:
        listener = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        return listener, f"redis://127.0.0.1:{port}/0"


def test_concurrent_requests_get_their_own_replies(redis_url: str) -> None:
    async def main() -> list[object]:
        conn = RespConnection(redis_url)
        try:
            return list(await asyncio.gather(*(conn.execute("ECHO", i) for i in range(500))))
        finally:
            await conn.close()

    assert asyncio.run(main()) == [str(i).encode() for i in range(500)]


def test_every_argument_type_reaches_the_server_as_it_was_given(redis_url: str) -> None:
    class Colour(enum.StrEnum):
        RED = "red"

    class Count(enum.IntEnum):
        TWO = 2

    given: list[Any] = ["ünï", b"a\x00b", 7, -0.5, 1.5e300, Colour.RED, Count.TWO]

    async def main() -> list[object]:
        conn = RespConnection(redis_url)
        try:
            replies = [await conn.execute("ECHO", value) for value in given]
            for bad in (True, None, [1]):
                with pytest.raises(TypeError, match=f"cannot send a {type(bad).__name__}"):
                    await conn.execute("ECHO", bad)
            # The refused argument sent nothing: the connection answers in order.
            replies.append(await conn.execute("ECHO", "after"))
            return replies
        finally:
            await conn.close()

    assert asyncio.run(main()) == [
        "ünï".encode(),
        b"a\x00b",
        b"7",
        b"-0.5",
        b"1.5e+300",
        b"red",
        b"2",
        b"after",
    ]


def test_an_error_reply_raises_and_the_connection_goes_on(redis_url: str) -> None:
    async def main() -> object:
        conn = RespConnection(redis_url)
        try:
            await conn.execute("SET", "resp:text", "abc")
            with pytest.raises(ResponseError, match="not an integer"):
                await conn.execute("INCR", "resp:text")
            return await conn.execute("GET", "resp:text")
        finally:
            await conn.close()

    assert asyncio.run(main()) == b"abc"


def test_a_cancelled_caller_does_not_shift_the_replies(redis_url: str) -> None:
    async def main() -> object:
        conn = RespConnection(redis_url)
        try:
            slow = asyncio.ensure_future(conn.execute("BLPOP", "resp:never", 0.3))
            await asyncio.sleep(0.05)
            slow.cancel()
            return await conn.execute("ECHO", "after")
        finally:
            await conn.close()

    assert asyncio.run(main()) == b"after"


def test_a_function_the_server_forgot_is_loaded_again(redis_url: str) -> None:
    async def main() -> tuple[object, object]:
        conn = RespConnection(redis_url)
        try:
            function = LeanFunction(conn, "resp_test_echo", LIBRARY)
            first = await function(["k"], ["v1"])
            redis.Redis.from_url(redis_url).function_delete("resp_test")
            return first, await function(["k"], ["v2"])
        finally:
            await conn.close()

    assert asyncio.run(main()) == ([b"k", b"v1"], [b"k", b"v2"])


def test_the_urls_database_is_selected(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/5"

    async def main() -> None:
        conn = RespConnection(url)
        try:
            await conn.execute("SET", "resp:db", "five")
        finally:
            await conn.close()

    asyncio.run(main())
    assert redis.Redis.from_url(url).get("resp:db") == b"five"
    assert redis.Redis.from_url(redis_url).get("resp:db") is None


def test_the_urls_password_is_sent_and_a_wrong_one_is_refused(server: RedisServer) -> None:
    redis.Redis.from_url(server.url).config_set("requirepass", "s3cret")
    good = server.url.replace("redis://", "redis://:s3cret@")
    bad = server.url.replace("redis://", "redis://:wrong@")

    async def main() -> object:
        conn = RespConnection(bad)
        with pytest.raises(AuthenticationError) as refused:
            await conn.execute("PING")
        assert "wrong" not in str(refused.value)
        conn = RespConnection(good)
        try:
            return await conn.execute("PING")
        finally:
            await conn.close()

    assert asyncio.run(main()) == b"PONG"


def test_it_reconnects_after_the_server_comes_back(server: RedisServer) -> None:
    async def main() -> object:
        conn = RespConnection(server.url)
        try:
            await conn.execute("SET", "resp:kept", "yes")
            server.stop()
            with pytest.raises(ConnectionError, match="connect"):
                await conn.execute("GET", "resp:kept")
            server.start()
            return await conn.execute("GET", "resp:kept")
        finally:
            await conn.close()

    assert asyncio.run(main()) == b"yes"


def test_a_server_that_never_replies_times_out() -> None:
    async def main() -> float:
        listener, url = await Silent().start()
        conn = RespConnection(url, reply_timeout=0.2)
        started = time.monotonic()
        try:
            with pytest.raises(TimeoutError, match="no reply"):
                await conn.execute("PING")
            return time.monotonic() - started
        finally:
            await conn.close()
            listener.close()

    # Four attempts (one and three retries), each given up after at most two ticks.
    assert asyncio.run(main()) < 10


def test_blocking_calls_do_not_wait_behind_each_other(redis_url: str) -> None:
    async def main() -> tuple[object, object, float]:
        pool = BlockingPool(redis_url)
        client = RespConnection(redis_url)
        try:
            slow = asyncio.ensure_future(pool.execute("BLPOP", "resp:slow", 5))
            fast = asyncio.ensure_future(pool.execute("BLPOP", "resp:fast", 5))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await client.execute("RPUSH", "resp:fast", "f")
            first = await fast
            took = time.monotonic() - started
            await client.execute("RPUSH", "resp:slow", "s")
            return first, await slow, took
        finally:
            await pool.close()
            await client.close()

    first, second, took = asyncio.run(main())
    assert (first, second) == ([b"resp:fast", b"f"], [b"resp:slow", b"s"])
    assert took < 2  # not held up by the other BLPOP's five seconds


def test_a_cancelled_blocking_call_leaves_no_reply_behind(redis_url: str) -> None:
    async def main() -> tuple[object, int]:
        pool = BlockingPool(redis_url)
        client = RespConnection(redis_url)
        try:
            waiting = asyncio.ensure_future(pool.execute("BLPOP", "resp:gone", 5))
            await asyncio.sleep(0.1)
            waiting.cancel()
            await asyncio.sleep(0.1)
            # The cancelled BLPOP's connection is closed, so the server no longer
            # waits on it: this element stays for the next reader.
            await client.execute("RPUSH", "resp:gone", "kept")
            return await pool.execute("BLPOP", "resp:gone", 1), len(pool._idle)
        finally:
            await pool.close()
            await client.close()

    assert asyncio.run(main()) == ([b"resp:gone", b"kept"], 1)


def test_closing_fails_the_calls_in_flight_and_does_not_reconnect() -> None:
    async def main() -> tuple[int, int]:
        silent = Silent()
        listener, url = await silent.start()
        conn = RespConnection(url)
        try:
            call = asyncio.ensure_future(conn.execute("PING"))
            await asyncio.sleep(0.1)
            await conn.close()
            with pytest.raises(ConnectionError):
                await call
            with pytest.raises(ConnectionError):
                await conn.execute("PING")
            await asyncio.sleep(0.1)
            return silent.opened, silent.open
        finally:
            listener.close()

    assert asyncio.run(main()) == (1, 0)


def test_a_call_cancelled_while_connecting_leaves_no_connection_open() -> None:
    async def main() -> int:
        silent = Silent()
        listener, url = await silent.start()
        # With a password, the connection waits for the handshake's AUTH: never answered.
        pool = BlockingPool(url.replace("redis://", "redis://:pw@"))
        try:
            call = asyncio.ensure_future(pool.execute("BLPOP", "k", 1))
            await asyncio.sleep(0.2)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await asyncio.sleep(0.2)
            return silent.open
        finally:
            await pool.close()
            listener.close()

    assert asyncio.run(main()) == 0


def test_a_refused_handshake_leaves_no_unread_error(server: RedisServer) -> None:
    import gc

    redis.Redis.from_url(server.url).config_set("requirepass", "s3cret")
    bad = server.url.replace("redis://", "redis://:wrong@").rsplit("/", 1)[0] + "/3"
    logged: list[str] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: logged.append(context["message"])
        )
        conn = RespConnection(bad)
        with pytest.raises(AuthenticationError):
            await conn.execute("PING")
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert logged == []


def test_a_full_server_is_a_connection_error_retried_not_a_reply(server: RedisServer) -> None:
    admin = redis.Redis.from_url(server.url)
    admin.config_set("maxclients", 1)  # the admin connection is the one client allowed

    async def main() -> None:
        conn = RespConnection(server.url)
        # Refused with an error reply or a closed socket, depending on timing: either
        # way a ConnectionError, which callers retry and workers survive.
        with pytest.raises(ConnectionError):
            await conn.execute("PING")

    try:
        asyncio.run(main())
    finally:
        admin.config_set("maxclients", 10_000)


def test_urls_it_does_not_speak_keep_the_redis_py_client() -> None:
    assert supports("redis://127.0.0.1:6379/0")
    assert supports("redis://user:pw@host:1/2")
    assert supports("unix:///tmp/redis.sock?db=1")
    assert not supports("rediss://host:6380/0")
    assert not supports("redis://host:6379/0?protocol=3")
    assert not supports("redis://host:6379/0?socket_timeout=2")


def test_the_connections_of_closed_loops_are_let_go(redis_url: str) -> None:
    import gc
    import weakref

    from qtasks_core import QueueTasks

    app = QueueTasks("resp-loops", redis_url=redis_url, load_entry_points=False)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def enqueue() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await app.add_task_async("x")

    for _ in range(5):
        asyncio.run(enqueue())  # a script calling asyncio.run() per task
    gc.collect()
    assert sum(ref() is not None for ref in loops) <= 1
