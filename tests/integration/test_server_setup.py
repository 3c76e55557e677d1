"""What a user learns when pointing QTasks at a server: a password with special
characters in the URL, and a ``maxmemory-policy`` that can evict QTasks' keys.

Real servers, each the test's own, configured as a user would.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from typer.testing import CliRunner

from qtasks_core import QueueTasks
from qtasks_core.cli import cli
from tests.conftest import RedisServer

#: Every character that a URL parser reads as a delimiter, and the escape character.
SPECIAL = "p#a@s/s?w%rd:x&y=z"


def run_one_task(url: str, name: str) -> int:
    """Enqueue a task on ``url`` and run it with a worker; its result."""
    app = QueueTasks(name, redis_url=url, load_entry_points=False)

    @app.task
    def double(value: int) -> int:
        return value * 2

    try:
        with app.running_worker():
            task = app.add_task("double", 21, timeout=20)
        assert task.status == "success", task.traceback
        return int(task.returning)
    finally:
        app.stop()


# -- passwords -------------------------------------------------------------------------


def test_a_percent_encoded_password_with_special_characters_works(server: RedisServer) -> None:
    redis.Redis.from_url(server.url).config_set("requirepass", SPECIAL)
    url = f"redis://:{quote(SPECIAL, safe='')}@127.0.0.1:{server.port}/0"
    assert run_one_task(url, f"pw-{os.getpid()}") == 42


def test_an_at_sign_and_a_colon_need_no_encoding(server: RedisServer) -> None:
    # The userinfo ends at its last '@' and the password begins after its first ':'.
    redis.Redis.from_url(server.url).config_set("requirepass", "a@b:c")
    assert run_one_task(f"redis://:a@b:c@127.0.0.1:{server.port}/0", f"at-{os.getpid()}") == 42


def test_the_worker_cli_says_an_unencoded_password_on_one_line(
    server: RedisServer, sample_env: dict[str, str]
) -> None:
    redis.Redis.from_url(server.url).config_set("requirepass", SPECIAL)
    url = f"redis://:{SPECIAL}@127.0.0.1:{server.port}/0"
    result = CliRunner().invoke(
        cli, ["worker", "-A", "apps.sample:app", "--redis-url", url, "--burst"]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("qtasks: error: the password in the Redis URL redis://:***@")
    assert "percent-encode it ('#' as %23)" in lines[0]
    assert "w%rd" not in lines[0]


# -- eviction --------------------------------------------------------------------------


def started_app_warnings(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings of the ``qtasks`` loggers while an app starts on ``url``."""
    app = QueueTasks(f"evict-{os.getpid()}", redis_url=url, load_entry_points=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qtasks"):
        app.start()
        app.add_task("x")  # starting is all it takes; the app works on
    app.stop()
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("qtasks") and r.levelno >= logging.WARNING
    ]


def test_a_server_that_can_evict_any_key_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    evicting = RedisServer(tmp_path, "--maxmemory-policy", "allkeys-lru")
    evicting.start()
    try:
        warnings = started_app_warnings(evicting.url, caplog)
    finally:
        evicting.stop()
    assert len(warnings) == 1, warnings
    assert f"Redis at {evicting.url} has maxmemory-policy allkeys-lru" in warnings[0]
    assert "CONFIG SET maxmemory-policy noeviction" in warnings[0]
    assert "redis.conf" in warnings[0]


@pytest.mark.parametrize(
    ("policy", "warned"),
    [
        ("noeviction", False),
        ("volatile-lru", False),
        ("volatile-ttl", False),
        ("allkeys-lfu", True),
        ("allkeys-random", True),
    ],
)
def test_only_a_policy_that_can_evict_keys_without_a_ttl_is_warned_about(
    server: RedisServer, caplog: pytest.LogCaptureFixture, policy: str, warned: bool
) -> None:
    redis.Redis.from_url(server.url).config_set("maxmemory-policy", policy)
    warnings = started_app_warnings(server.url, caplog)
    assert [policy in w for w in warnings] == ([True] if warned else [])


def test_a_user_who_may_not_read_the_config_starts_without_a_word(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As on a managed service: CONFIG is not for the application's user.
    evicting = RedisServer(tmp_path, "--maxmemory-policy", "allkeys-lru")
    evicting.start()
    try:
        admin = redis.Redis.from_url(evicting.url)
        admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-config")
        url = f"redis://app:pw@127.0.0.1:{evicting.port}/0"
        assert started_app_warnings(url, caplog) == []
        assert run_one_task(url, f"noconfig-{os.getpid()}") == 42
    finally:
        evicting.stop()
