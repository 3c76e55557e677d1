"""Errors by origin: what Redis or a socket raises leaves the backend as a BackendError.

Each error is provoked for real on a server (one of the test's own when the test
reconfigures it), through redis-py's asyncio client and through the lean connection
of the hot scripts, and caught the way the backend does: inside ``mapped()``.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis
import redis.asyncio as aioredis
import redis.exceptions as rx

from qtasks_core.backends._errors import backend_error, mapped
from qtasks_core.backends._redispy import error_from_reply
from qtasks_core.backends._resp import RespConnection
from qtasks_core.errors import (
    BackendAuthError,
    BackendDataError,
    BackendError,
    BackendOutOfMemoryError,
    BackendPermissionError,
    BackendReadOnlyError,
    BackendTimeoutError,
    BackendUnavailableError,
)
from tests.conftest import RedisServer
from tests.support import free_port

SCRIPT_HINCRBY = "return redis.call('hincrby', KEYS[1], 'f', 1)"
SCRIPT_SET = "return redis.call('set', KEYS[1], 'v')"


class Client(Protocol):
    async def execute(self, *args: Any) -> Any: ...

    async def close(self) -> None: ...


class RedisPy:
    """redis-py's asyncio client, called like the lean connection."""

    def __init__(self, url: str, timeout: float | None) -> None:
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout)

    async def execute(self, *args: Any) -> Any:
        return await self.client.execute_command(*args)

    async def close(self) -> None:
        await self.client.aclose()


Connect = Callable[[str, float | None], Client]


def _lean(url: str, timeout: float | None) -> Client:
    return RespConnection(url, reply_timeout=timeout or 30.0)


@pytest.fixture(params=["redis-py", "lean"])
def connect(request: pytest.FixtureRequest) -> Connect:
    """Opens a client of one transport: ``connect(url, reply_timeout)``."""
    return RedisPy if request.param == "redis-py" else _lean


async def failure(
    connect: Connect, url: str, *command: Any, timeout: float | None = None
) -> BackendError:
    """Run ``command`` on a new client inside ``mapped()``; the error it raised."""
    client = connect(url, timeout)
    try:
        async with mapped(str(command[0])):
            await client.execute(*command)
    except BackendError as exc:
        error = exc
    else:
        raise AssertionError(f"{command[0]} did not fail")
    finally:
        await client.close()
    # Mapped at the edge: one line, the command named, the client's error kept as cause.
    assert "\n" not in str(error)
    assert str(command[0]) in str(error)
    assert error.command == command[0]
    assert isinstance(error.__cause__, rx.RedisError)
    return error


def fails(connect: Connect, url: str, *command: Any, timeout: float | None = None) -> BackendError:
    """:func:`failure` on an event loop of its own."""
    return asyncio.run(failure(connect, url, *command, timeout=timeout))


def admin(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


def url_as(server: RedisServer, user: str, password: str, db: int = 0) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/{db}"


# -- an outage: retried ---------------------------------------------------------------


def test_a_closed_port_is_unavailable(connect: Connect) -> None:
    error = fails(connect, f"redis://127.0.0.1:{free_port()}/0", "PING")
    assert isinstance(error, BackendUnavailableError)
    assert isinstance(error, ConnectionError)  # user code catching the builtin still works
    assert error.retryable
    assert "cannot reach Redis" in str(error)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "redis-py"])
def test_a_dropped_connection_is_retried_unseen(server: RedisServer, lean: bool) -> None:
    from qtasks_core.backends.redis import RedisBackend

    backend = RedisBackend(server.url, "dropped", lean=lean)

    async def go() -> None:
        await backend.enqueue("a", {"status": "new", "task_name": "t", "priority": "0"}, 0)
        # Every client connection closed by the server (a restart, a proxy, a timeout).
        admin(server).client_kill_filter(_type="normal")
        assert await backend.ping()
        assert (await backend.stats()).queued == {0: 1}
        await backend.close()

    asyncio.run(go())


def test_a_server_that_stops_replying_times_out(server: RedisServer, connect: Connect) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)  # it still accepts connections, in the kernel
    try:
        error = fails(connect, server.url, "GET", "k", timeout=0.2)
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert isinstance(error, BackendTimeoutError)
    assert isinstance(error, TimeoutError)
    assert error.retryable


def test_a_server_at_maxclients_is_unavailable(server: RedisServer, connect: Connect) -> None:
    keeper = admin(server)
    keeper.config_set("maxclients", 1)  # this connection is the one
    error = fails(connect, server.url, "PING")
    assert isinstance(error, BackendUnavailableError)
    assert error.retryable
    assert "maxclients" in str(error)


def test_a_server_busy_running_a_script_is_unavailable(
    server: RedisServer, connect: Connect
) -> None:
    admin(server).config_set("busy-reply-threshold", 50)
    busy = """
        local function now() local t = redis.call('TIME') return t[1] * 1000 + t[2] / 1000 end
        local stop = now() + tonumber(ARGV[1])
        while now() < stop do end
        return 1
    """

    async def main() -> BackendError:
        other = aioredis.Redis.from_url(server.url, socket_timeout=10)
        running = asyncio.ensure_future(other.eval(busy, 0, 1500))
        await asyncio.sleep(0.4)
        try:
            return await failure(connect, server.url, "GET", "k")
        finally:
            await running
            await other.aclose()

    error = asyncio.run(main())
    assert isinstance(error, BackendUnavailableError)
    assert error.code == "BUSY"
    assert error.retryable


# -- a full or read-only server: retried ----------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("SET", "k", "v"), ("EVAL", SCRIPT_SET, 1, "k")],
    ids=["plain", "script"],
)
def test_a_write_to_a_full_redis_is_out_of_memory(
    server: RedisServer, connect: Connect, command: tuple[Any, ...]
) -> None:
    admin(server).config_set("maxmemory-policy", "noeviction")
    admin(server).config_set("maxmemory", 1)
    error = fails(connect, server.url, *command)
    assert isinstance(error, BackendOutOfMemoryError)
    assert isinstance(error.__cause__, rx.OutOfMemoryError)
    assert error.code == "OOM"
    assert error.retryable
    assert "raise maxmemory or free memory" in str(error)
    assert "queued tasks are kept" in str(error)
    assert ("in a script" in str(error)) == (command[0] == "EVAL")


@pytest.fixture
def replica(server: RedisServer, tmp_path: Path) -> Iterator[RedisServer]:
    """A second server of the test's own, a read-only replica of ``server``."""
    folder = tmp_path / "replica"
    folder.mkdir()
    own = RedisServer(folder)
    own.start()
    admin(own).replicaof("127.0.0.1", server.port)
    yield own
    own.stop()


@pytest.mark.parametrize(
    "command",
    [("SET", "k", "v"), ("EVAL", SCRIPT_SET, 1, "k")],
    ids=["plain", "script"],
)
def test_a_write_to_a_replica_is_read_only(
    replica: RedisServer, connect: Connect, command: tuple[Any, ...]
) -> None:
    error = fails(connect, replica.url, *command)
    assert isinstance(error, BackendReadOnlyError)
    assert error.code == "READONLY"
    assert error.retryable
    assert "read-only replica" in str(error)
    assert "point the URL at the primary" in str(error)
    assert "failover" in str(error)


# -- refused: not retried -------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("HINCRBY", "h", "f", 1), ("EVAL", SCRIPT_HINCRBY, 1, "h")],
    ids=["plain", "script"],
)
def test_a_command_the_acl_refuses_is_named_with_its_rule(
    valkey: RedisServer, connect: Connect, command: tuple[Any, ...]
) -> None:
    # Valkey's texts (Redis 7.0 names no user, and no command in a script: its texts are
    # parsed in test_the_error_texts_of_other_servers).
    server = valkey
    admin(server).execute_command("ACL", "SETUSER", "u", "on", ">pw", "~*", "+@all", "-hincrby")
    error = fails(connect, url_as(server, "u", "pw"), *command)
    assert isinstance(error, BackendPermissionError)
    assert not error.retryable
    assert error.code == "NOPERM"
    assert (error.denied, error.rule) == ("hincrby", "+hincrby")
    assert "may not run 'hincrby'" in str(error)
    assert "add the ACL rule +hincrby (ACL SETUSER u +hincrby)" in str(error)
    # In a script the ACL refusal arrives as a plain ERR reply, not as NoPermissionError.
    cause = rx.ResponseError if command[0] == "EVAL" else rx.NoPermissionError
    assert type(error.__cause__) is cause


@pytest.mark.parametrize(
    "command",
    [("SET", "elsewhere", "v"), ("EVAL", "return redis.call('set', 'elsewhere', 'v')", 0)],
    ids=["plain", "script"],
)
def test_a_key_the_acl_refuses_gets_the_key_pattern_rule(
    server: RedisServer, connect: Connect, command: tuple[Any, ...]
) -> None:
    admin(server).execute_command("ACL", "SETUSER", "k", "on", ">pw", "~qtasks:*", "+@all")
    error = fails(connect, url_as(server, "k", "pw"), *command)
    assert isinstance(error, BackendPermissionError)
    assert not error.retryable
    assert (error.denied, error.rule) == (None, "~qtasks:*")
    assert "may not access a key" in str(error)


def test_a_database_the_acl_refuses_is_said(valkey: RedisServer, connect: Connect) -> None:
    server = valkey  # per-database ACLs are Valkey's (Redis 7.0 has none)
    admin(server).execute_command("ACL", "SETUSER", "d", "on", ">pw", "~*", "+@all", "db=0")
    error = fails(connect, url_as(server, "d", "pw", db=1), "PING")
    assert isinstance(error, BackendPermissionError)
    assert "may not use the database of the URL" in str(error)


def test_a_missing_password_is_an_auth_error(server: RedisServer, connect: Connect) -> None:
    password = "s3cr3t-" + secrets.token_hex(8)
    admin(server).config_set("requirepass", password)
    error = fails(connect, server.url, "PING")
    assert isinstance(error, BackendAuthError)
    assert not error.retryable
    assert error.code == "NOAUTH"
    assert "requires a password" in str(error)
    assert password not in str(error)


@pytest.mark.parametrize(
    ("user", "right_password"),
    [("", False), ("default", False), ("nobody", True)],
    ids=["password-only", "default-user", "unknown-user"],
)
def test_refused_credentials_are_an_auth_error_that_shows_no_password(
    server: RedisServer, connect: Connect, user: str, right_password: bool
) -> None:
    password = "s3cr3t-" + secrets.token_hex(8)
    wrong = "wrong-" + secrets.token_hex(8)
    admin(server).config_set("requirepass", password)
    error = fails(connect, url_as(server, user, password if right_password else wrong), "PING")
    assert isinstance(error, BackendAuthError)
    assert not error.retryable
    assert error.code == "WRONGPASS"
    assert "check the credentials in the Redis URL" in str(error)
    for secret in (password, wrong):
        assert secret not in str(error)
        assert secret not in repr(error)


# -- bad data: not retried ------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("HGET", "{key}", "f"), ("EVAL", "return redis.call('hget', KEYS[1], 'f')", 1, "{key}")],
    ids=["plain", "script"],
)
def test_a_key_of_the_wrong_type_is_a_data_error(
    redis_server: RedisServer, connect: Connect, command: tuple[Any, ...]
) -> None:
    key = f"errors:wrongtype:{secrets.token_hex(4)}"
    shared = admin(redis_server)
    shared.set(key, "x")
    try:
        error = fails(connect, redis_server.url, *(key if a == "{key}" else a for a in command))
    finally:
        shared.delete(key)
    assert isinstance(error, BackendDataError)
    assert not error.retryable
    assert error.code == "WRONGTYPE"
    assert "wrong kind of value" in str(error)


def test_a_scripts_own_error_reply_is_a_data_error(
    redis_server: RedisServer, connect: Connect
) -> None:
    script = "return redis.error_reply('BADREC the record of t1 is not JSON')"
    error = fails(connect, redis_server.url, "EVAL", script, 0)
    assert isinstance(error, BackendDataError)
    assert error.code == "BADREC"
    assert "the record of t1 is not JSON" in str(error)


# -- texts of servers not run here ----------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected", "says"),
    [
        # Redis 6 wraps errors raised by redis.call as "Error running script".
        (
            "ERR Error running script (call to f_0123abcd): @user_script:13: @user_script: "
            "13: NOPERM User u has no permissions to run the 'hincrby' command",
            BackendPermissionError,
            "+hincrby",
        ),
        (
            "ERR Error running script (call to f_0123abcd): @user_script:1: @user_script: 1: "
            "-OOM command not allowed when used memory > 'maxmemory'.",
            BackendOutOfMemoryError,
            "maxmemory",
        ),
        # Redis 7.0 names no command in a script, Redis 7.2 no key.
        (
            "ERR The user executing the script can't run this command or subcommand "
            "script: 104a, on @user_script:1.",
            BackendPermissionError,
            "ACL LOG",
        ),
        (
            "NOPERM this user has no permissions to access one of the keys used as arguments",
            BackendPermissionError,
            "~qtasks:*",
        ),
        ("LOADING Redis is loading the dataset in memory", BackendUnavailableError, "LOADING"),
        (
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to "
            "persist to disk.",
            BackendUnavailableError,
            "persist to disk",
        ),
        ("ERR invalid password", BackendAuthError, "check the credentials"),
        (
            "ERR wrong number of arguments for 'auth' command",
            BackendAuthError,
            "no username",
        ),
    ],
)
def test_the_error_texts_of_other_servers(
    reply: str, expected: type[BackendError], says: str
) -> None:
    # What both clients do with an error reply: redis-py's own table of codes.
    error = backend_error(error_from_reply(reply))
    assert type(error) is expected
    assert says in str(error)


def test_no_url_credentials_survive_in_a_message() -> None:
    error = backend_error(OSError("cannot open redis://u:hunter2@db:6379/0 (password=hunter2)"))
    assert isinstance(error, BackendUnavailableError)
    assert "hunter2" not in str(error)


# -- what mapped() leaves alone -------------------------------------------------------


def test_a_plugins_oserror_outside_mapped_stays_an_oserror(redis_url: str) -> None:
    class DiskFull(OSError):
        pass

    def plugin() -> None:
        raise DiskFull("disk full")

    @mapped("store")
    async def store(client: aioredis.Redis) -> None:
        await client.set("errors:stored", "1")

    async def finish() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await store(client)
            plugin()  # after the backend call, outside mapped(): the plugin's own error
        finally:
            await client.aclose()

    with pytest.raises(DiskFull) as info:
        asyncio.run(finish())
    assert not isinstance(info.value, BackendError)


def test_a_sync_block_maps_too() -> None:
    with pytest.raises(BackendUnavailableError) as info, mapped("PING"):
        redis.Redis(port=free_port()).ping()
    assert isinstance(info.value.__cause__, rx.ConnectionError)
    assert "(running PING)" in str(info.value)


@pytest.mark.parametrize(
    "raised", [TypeError("bug"), KeyError("field"), ValueError("bad"), RuntimeError("x")]
)
def test_mapped_leaves_programming_errors_alone(raised: Exception) -> None:
    async def main() -> None:
        async with mapped("claim"):
            raise raised

    with pytest.raises(type(raised)) as info:
        asyncio.run(main())
    assert info.value is raised
    with pytest.raises(type(raised)), mapped():
        raise raised


def test_mapped_leaves_cancellation_and_mapped_errors_alone() -> None:
    already = BackendUnavailableError("cannot reach Redis")

    @mapped("claim")
    async def fails_mapped() -> None:
        raise already

    @mapped("claim")
    async def is_cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(BackendUnavailableError) as info:
        asyncio.run(fails_mapped())
    assert info.value is already
    assert info.value.__cause__ is None
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(is_cancelled())


def test_mapped_decorates_async_functions_only() -> None:
    def sync() -> None: ...

    with pytest.raises(TypeError, match="async functions"):
        mapped()(sync)  # type: ignore[arg-type]
