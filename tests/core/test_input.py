"""A producer's bad input is refused with one line, before anything is written.

On real Redis and on the in-memory backend; plus the app-name rule, the isolation of
apps with similar names, and the URLs printed with their passwords masked.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from qtasks_core import (
    QueueTasks,
    Stats,
    TaskOptionError,
    TaskSerializationError,
    TaskTimeoutError,
    hookimpl,
)
from qtasks_core._urls import mask_url
from qtasks_core.keys import PRIORITY_MAX, PRIORITY_MIN, escape_glob
from tests.support import free_port


def assert_nothing_written(app: QueueTasks) -> None:
    stats = Stats(app).inspect()
    assert stats.queued == {}
    assert stats.status_counts.get("new", 0) == 0


def assert_one_line(exc: BaseException, *fragments: str) -> None:
    message = str(exc)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture
def unreachable() -> Iterator[QueueTasks]:
    """An app whose Redis does not answer: a call that connects fails with BackendError."""
    app = QueueTasks(
        f"unreachable-{os.getpid()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        load_entry_points=False,
    )
    yield app
    app.stop()


# -- timeout ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timeout", [math.nan, math.inf, -math.inf, -1, -0.5, "abc", "10", True, False, 10**400]
)
def test_a_bad_timeout_is_refused_and_nothing_is_written(app: QueueTasks, timeout: Any) -> None:
    with pytest.raises(TaskOptionError) as info:
        app.add_task("x", timeout=timeout)
    assert_one_line(info.value, "timeout must be None", "finite number of seconds >= 0")
    assert_nothing_written(app)


def test_a_zero_or_integer_timeout_is_a_wait(app: QueueTasks) -> None:
    @app.task
    def echo(value: int) -> int:
        return value

    with app.running_worker():
        assert app.add_task("echo", 1, timeout=10).returning == 1
    # No worker: a zero timeout checks once and says the task is still queued.
    with pytest.raises(TaskTimeoutError):
        app.add_task("echo", 2, timeout=0)


# -- priority --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "priority", [True, False, 1.0, "1", 2**63, PRIORITY_MAX + 1, PRIORITY_MIN - 1]
)
def test_a_bad_priority_is_refused_and_nothing_is_written(app: QueueTasks, priority: Any) -> None:
    with pytest.raises(TaskOptionError) as info:
        app.add_task("x", priority=priority)
    assert_one_line(info.value, "priority must be an int in", repr(priority)[:20])
    assert_nothing_written(app)


def test_the_priority_limits_themselves_are_accepted(app: QueueTasks) -> None:
    low = app.add_task("x", priority=PRIORITY_MIN)
    high = app.add_task("x", priority=PRIORITY_MAX)
    assert (low.priority, high.priority) == (PRIORITY_MIN, PRIORITY_MAX)


def test_a_plugin_that_sets_a_bool_priority_is_refused(app: QueueTasks) -> None:
    class SetsTrue:
        @hookimpl
        def qtasks_add_task_before_broker(self, priority: int) -> Any:
            return {"priority": True}

    app.add_plugin(SetsTrue())
    with pytest.raises(TaskOptionError) as info:
        app.add_task("x", priority=3)
    assert_one_line(info.value, "priority must be an int", "got True")
    assert_nothing_written(app)


# -- task name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_name", "problem"),
    [
        (None, "must be a non-empty str"),
        ("", "must be a non-empty str"),
        (42, "must be a non-empty str"),
        (b"x", "must be a non-empty str"),
        ("two\nlines", "contains '\\n'"),
        ("nul\x00", "contains '\\x00'"),
        ("esc\x1b[31m", "contains '\\x1b'"),
        ("tab\there", "contains '\\t'"),
        ("sep\u2028", "contains '\\u2028'"),
        ("half\ud800", "contains '\\ud800'"),
        ("x" * 513, "513 characters long, over 512"),
    ],
)
def test_a_bad_task_name_is_refused_on_one_line(
    app: QueueTasks, task_name: Any, problem: str
) -> None:
    with pytest.raises(TaskOptionError) as info:
        app.add_task(task_name)
    assert_one_line(info.value, "task name", problem)
    assert_nothing_written(app)


def test_unusual_but_printable_task_names_are_accepted(app: QueueTasks) -> None:
    for name in ["emails.send", "Send email", "задача", "x" * 512, "no\u00a0break"]:
        assert app.add_task(name).task_name == name


def test_a_plugin_that_sets_a_bad_task_name_is_refused(app: QueueTasks) -> None:
    class Renames:
        @hookimpl
        def qtasks_add_task_before_broker(self, task_name: str) -> Any:
            return {"task_name": "bad\nname"}

    app.add_plugin(Renames())
    with pytest.raises(TaskOptionError) as info:
        app.add_task("x")
    assert_one_line(info.value, "task name 'bad\\nname' contains '\\n'")
    assert_nothing_written(app)


# -- arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((math.nan,), {}, "argument 0 of task 'x' (float)"),
        ((1, math.inf), {}, "argument 1 of task 'x' (float)"),
        ((), {"x": [1, -math.inf]}, "argument 'x' of task 'x' (list)"),
        ((), {"deep": {"a": {"b": [math.nan]}}}, "argument 'deep' of task 'x' (dict)"),
    ],
)
def test_nan_and_infinity_arguments_are_refused_naming_the_argument(
    app: QueueTasks, args: tuple[Any, ...], kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(TaskSerializationError) as info:
        app.send_task("x", args, kwargs)
    assert_one_line(info.value, named, "NaN or an infinity")
    assert_nothing_written(app)


def test_strings_that_spell_nan_and_infinity_are_ordinary_arguments(app: QueueTasks) -> None:
    task = app.add_task("x", "NaN", "-Infinity", note="Infinity and NaN", n=1.5)
    found = app.get(task.uuid)
    assert found is not None
    assert found.args == ("NaN", "-Infinity")
    assert found.kwargs == {"note": "Infinity and NaN", "n": 1.5}


def test_a_task_returning_nan_ends_error_and_writes_no_nan(app: QueueTasks) -> None:
    @app.task
    def ratio() -> float:
        return math.nan

    with app.running_worker():
        task = app.add_task("ratio", timeout=10)
    assert task.status == "error"
    assert task.returning is None
    assert "the result of task 'ratio' holds NaN or an infinity" in (task.traceback or "")


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ("abc", None, "args of task 'x' must be a list or tuple"),
        (b"abc", None, "args of task 'x' must be a list or tuple"),
        ({"a": 1}, None, "args of task 'x' must be a list or tuple"),
        (5, None, "args of task 'x' must be a list or tuple"),
        ((), [("a", 1)], "kwargs of task 'x' must be a dict"),
        ((), {1: "a"}, "kwargs of task 'x' must have str keys"),
    ],
)
def test_send_task_refuses_argument_containers_of_the_wrong_kind(
    app: QueueTasks, args: Any, kwargs: Any, problem: str
) -> None:
    with pytest.raises(TaskOptionError) as info:
        app.send_task("x", args, kwargs)
    assert_one_line(info.value, problem)
    assert_nothing_written(app)


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("x", "add_tasks item 1 must be (task_name, args)"),
        (("x",), "add_tasks item 1 must be (task_name, args)"),
        (("x", (), {}, "extra"), "add_tasks item 1 must be (task_name, args)"),
        ((None, ()), "task name must be a non-empty str"),
        (("x", "abc"), "args of task 'x' must be a list or tuple"),
        (("x", (), [1]), "kwargs of task 'x' must be a dict"),
        (("x", (math.nan,)), "argument 0 of task 'x' (float) holds NaN"),
    ],
)
def test_add_tasks_refuses_a_bad_item_and_writes_none_of_its_chunk(
    app: QueueTasks, item: Any, problem: str
) -> None:
    with pytest.raises((TaskOptionError, TaskSerializationError)) as info:
        app.add_tasks([("x", (1,)), item, ("x", (2,))])
    assert_one_line(info.value, problem)
    assert_nothing_written(app)


def test_an_empty_add_tasks_is_an_empty_list(app: QueueTasks) -> None:
    assert app.add_tasks([]) == []


# -- lone surrogates -------------------------------------------------------------------
# A lone surrogate ("\ud800", what os.fsdecode makes of bytes that are not UTF-8) is a
# str that Redis and JSON cannot store: refused where it enters, naming where it is.

_SURROGATES: dict[str, tuple[Callable[[QueueTasks], Any], tuple[str, ...]]] = {
    "task name": (
        lambda app: app.add_task("half\ud800"),
        ("task name 'half\\ud800' contains '\\ud800'", "lone surrogate"),
    ),
    "queue": (
        lambda app: app.send_task("x", queue="q\ud800"),
        ("queue name 'q\\ud800' contains '\\ud800' at position 1",),
    ),
    "unique_key": (
        lambda app: app.send_task("x", unique_key="order-\ud800"),
        ("unique_key 'order-\\ud800'", "lone surrogate '\\ud800' at position 6"),
    ),
    "argument": (
        lambda app: app.add_task("x", "ok", "bad\udc80"),
        ("argument 1 of task 'x' (str)", "lone surrogate '\\udc80' at position 3"),
    ),
    "nested keyword argument": (
        lambda app: app.send_task("x", (), {"a": {"b": ["ok", "\udfff"]}}),
        ("argument 'a' of task 'x' (dict)", "'\\udfff' at position 0 of ['b'][1]"),
    ),
    "keyword argument name": (
        lambda app: app.send_task("x", (), {"n\ud800": 1}),
        ("keyword argument name of task 'x'", "at position 1 of the key 'n\\ud800'"),
    ),
    "add_tasks item": (
        lambda app: app.add_tasks([("x", (1,)), ("x", ("\ud800",))]),
        ("argument 0 of task 'x' (str)", "lone surrogate '\\ud800' at position 0"),
    ),
    "workflow step": (
        lambda app: app.start_workflow(app.signature("x", ["\ud800"])),
        ("argument 0 of task 'x' (str)", "lone surrogate '\\ud800'"),
    ),
    "workflow name": (
        lambda app: app.start_workflow(app.signature("x"), name="wf\ud800"),
        ("task name 'wf\\ud800' contains '\\ud800'",),
    ),
    "schedule name": (
        lambda app: app.add_schedule("nightly\ud800", "x", every=60),
        ("schedule name 'nightly\\ud800' contains '\\ud800' at position 7",),
    ),
    "schedule argument": (
        lambda app: app.add_schedule("nightly", "x", every=60, kwargs={"to": "\ud800"}),
        ("kwargs of schedule 'nightly'", "'\\ud800' at position 0 of ['to']"),
    ),
}


@pytest.mark.parametrize("call", list(_SURROGATES), ids=list(_SURROGATES))
def test_a_lone_surrogate_is_refused_naming_where_it_is(app: QueueTasks, call: str) -> None:
    act, fragments = _SURROGATES[call]
    with pytest.raises((TaskOptionError, TaskSerializationError)) as info:
        act(app)
    assert_one_line(info.value, *fragments)
    # The message itself is printable: the surrogate is shown as its escape.
    str(info.value).encode()
    assert_nothing_written(app)
    assert app.list_workflows().tasks == []
    assert app.schedules() == []


def test_a_task_returning_a_lone_surrogate_ends_error_and_the_worker_goes_on(
    app: QueueTasks,
) -> None:
    @app.task
    def listing() -> dict[str, list[str]]:
        return {"files": ["ok.txt", "caf\udce9.txt"]}

    @app.task
    def echo(value: int) -> int:
        return value

    with app.running_worker():
        task = app.add_task("listing", timeout=10)
        after = app.add_task("echo", 7, timeout=10)
    assert task.status == "error"
    assert task.returning is None
    assert (
        "the result of task 'listing' holds a lone surrogate '\\udce9' at position 3 of "
        "['files'][1]" in (task.traceback or "")
    )
    assert after.status == "success" and after.returning == 7


@pytest.mark.parametrize(
    "call",
    [
        lambda app: app.get("\ud800"),
        lambda app: app.abort("\ud800"),
        lambda app: app.abort("some-task", "why\ud800"),
        lambda app: app.remove_schedule("nightly\ud800"),
    ],
    ids=["get", "abort", "abort reason", "remove_schedule"],
)
def test_a_lone_surrogate_anywhere_else_is_refused_before_it_reaches_redis(
    redis_app: QueueTasks, call: Callable[[QueueTasks], Any]
) -> None:
    # The fields without a check of their own: the Redis client cannot encode the
    # text, and the backend says so as the caller's error, not as its own failure.
    with pytest.raises(TaskOptionError) as info:
        call(redis_app)
    assert_one_line(info.value, "(running ", ") holds a lone surrogate '\\ud800'")


def test_text_outside_the_basic_plane_is_ordinary_text(app: QueueTasks) -> None:
    # A surrogate pair is no lone surrogate: emoji and rare scripts pass.
    task = app.send_task("x", ["\U0001f600"], {"k": "\U00020000"}, unique_key="\U0001f600")
    found = app.get(task.uuid)
    assert found is not None
    assert found.args == ("\U0001f600",) and found.kwargs == {"k": "\U00020000"}


# -- every entry point -----------------------------------------------------------------


def _entry_points(app: QueueTasks) -> dict[str, Callable[..., Any]]:
    """Each producer call, made with ``priority=True`` (run to completion)."""

    @app.task
    def handled() -> None:
        return None

    return {
        "add_task": lambda: app.add_task("x", priority=True),
        "send_task": lambda: app.send_task("x", priority=True),
        "add_tasks": lambda: app.add_tasks([("x", ())], priority=True),
        "handle.add_task": lambda: handled.add_task(priority=True),
        "add_task_async": lambda: asyncio.run(app.add_task_async("x", priority=True)),
        "send_task_async": lambda: asyncio.run(app.send_task_async("x", priority=True)),
        "add_tasks_async": lambda: asyncio.run(app.add_tasks_async([("x", ())], priority=True)),
        "handle.add_task_async": lambda: asyncio.run(handled.add_task_async(priority=True)),
    }


@pytest.mark.parametrize(
    "entry",
    [
        "add_task",
        "send_task",
        "add_tasks",
        "handle.add_task",
        "add_task_async",
        "send_task_async",
        "add_tasks_async",
        "handle.add_task_async",
    ],
)
def test_every_producer_call_checks_its_input(app: QueueTasks, entry: str) -> None:
    with pytest.raises(TaskOptionError) as info:
        _entry_points(app)[entry]()
    assert_one_line(info.value, "priority must be an int", "got True")
    assert_nothing_written(app)


_BAD_CALLS: dict[str, Callable[[QueueTasks], Any]] = {
    "nan timeout": lambda app: app.add_task("x", timeout=math.nan),
    "bool priority": lambda app: app.add_task("x", priority=True),
    "no task name": lambda app: app.add_task(None),
    "str args": lambda app: app.send_task("x", "abc"),
    "short batch item": lambda app: app.add_tasks([("x",), ("x", ())]),
    "batch priority": lambda app: app.add_tasks([("x", ())], priority=10_000),
    "async negative timeout": lambda app: asyncio.run(app.send_task_async("x", timeout=-1)),
}


@pytest.mark.parametrize("call", list(_BAD_CALLS.values()), ids=list(_BAD_CALLS))
def test_a_bad_call_is_refused_before_connecting(
    unreachable: QueueTasks, call: Callable[[QueueTasks], Any]
) -> None:
    # Had the app connected first, the error would be the unreachable Redis.
    with pytest.raises(TaskOptionError):
        call(unreachable)


# -- app names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["QueueTasks", "test-123-4", "prod.eu", "prod_eu", "A1", "x" * 128, "-.-"]
)
def test_valid_app_names(name: str) -> None:
    app = QueueTasks(name, redis_url="memory://", load_entry_points=False)
    assert app.name == name
    app.stop()


def test_the_default_app_name_is_valid() -> None:
    app = QueueTasks(redis_url="memory://", load_entry_points=False)
    assert app.name == "QueueTasks"
    app.stop()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("prod:eu", "contains ':'"),
        ("*", "contains '*'"),
        ("prod?", "contains '?'"),
        ("a[b]", "contains '['"),
        ("back\\slash", "contains '\\\\'"),
        ("two words", "contains ' '"),
        ("café", "contains 'é'"),
        ("line\nbreak", "contains '\\n'"),
        ("", "is not valid"),
        (None, "is not valid"),
        ("x" * 129, "129 characters long"),
    ],
)
def test_invalid_app_names_are_refused_saying_what_is_allowed(name: Any, problem: str) -> None:
    with pytest.raises(TaskOptionError) as info:
        QueueTasks(name, redis_url="memory://", load_entry_points=False)
    assert_one_line(info.value, "app name", problem, "ASCII letters, digits, '_', '.' and '-'")


def test_flush_all_leaves_apps_with_similar_names_alone(redis_url: str) -> None:
    base = f"prod{os.getpid()}"
    apps = {
        name: QueueTasks(name, redis_url=redis_url, load_entry_points=False)
        for name in (base, f"{base}.eu", f"{base}-eu", f"{base}eu")
    }
    try:
        tasks = {name: app.add_task("x") for name, app in apps.items()}
        apps[base].flush_all()
        assert apps[base].get(tasks[base].uuid) is None
        for name in (f"{base}.eu", f"{base}-eu", f"{base}eu"):
            assert apps[name].get(tasks[name].uuid) is not None, name
            assert Stats(apps[name]).inspect().queued == {0: 1}, name
    finally:
        for app in apps.values():
            app.flush_all()
            app.stop()


def test_escape_glob_makes_a_scan_pattern_match_only_its_prefix(redis_url: str) -> None:
    assert escape_glob(r"a*b?c[d]e\f") == r"a\*b\?c\[d\]e\\f"
    prefix = f"glob{os.getpid()}*[x]?\\:"
    lookalike = f"glob{os.getpid()}ZZxY:k"  # what the pattern matches unescaped
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.set(prefix + "k", 1)
        client.set(lookalike, 1)
        assert lookalike in set(client.scan_iter(match=prefix + "*"))
        assert set(client.scan_iter(match=escape_glob(prefix) + "*")) == {prefix + "k"}
    finally:
        client.delete(prefix + "k", lookalike)
        client.close()


# -- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secrets", "shown"),
    [
        ("redis://:s3cret@db.example:6379/0", ["s3cret"], "redis://:***@db.example:6379/0"),
        ("redis://alice:s3cret@db.example/2", ["s3cret"], "redis://alice:***@db.example/2"),
        ("rediss://u:s3cret@[::1]:6380/0", ["s3cret"], "rediss://u:***@[::1]:6380/0"),
        # Unencoded '#', '/', '?' and '@' in the password: the last '@' ends it.
        ("redis://:pa#ss@db.example:6379/0", ["pa#ss", "ss@"], "redis://:***@db.example:6379/0"),
        ("redis://:pa/ss@db.example:6379/0", ["pa/ss", "ss@"], "redis://:***@db.example:6379/0"),
        ("redis://:pa?ss@db.example:6379/0", ["pa?ss", "ss@"], "redis://:***@db.example:6379/0"),
        ("redis://:p@ss@db.example:6379/0", ["p@ss", "ss@"], "redis://:***@db.example:6379/0"),
        ("redis://u:a/b?c#d@db.example/0", ["a/b", "c#d"], "redis://u:***@db.example/0"),
        # Query parameters, alone or with other options around them.
        ("redis://db.example:6379/0?password=s3cret", ["s3cret"], "?password=***"),
        ("redis://db.example/0?db=1&password=s3&cret&ssl=0", ["s3", "cret"], "&ssl=0"),
        ("redis://db.example/0?password=s3#cret", ["s3", "cret"], "?password=***"),
        ("unix:///tmp/redis.sock?db=0&password=s3cret", ["s3cret"], "/tmp/redis.sock?db=0"),
        (
            "redis://db.example/0?username=me@example.com&password=s3cret",
            ["s3cret"],
            "username=me@example.com&password=***",
        ),
        # Multi-host URLs, with a sentinel password as well.
        (
            "redis+sentinel://:s3cret@h1:26379,h2:26380/mymaster",
            ["s3cret"],
            "redis+sentinel://:***@h1:26379,h2:26380/mymaster",
        ),
        (
            "redis+sentinel://:s3cret@h1:1,h2:2/mymaster?sentinel_password=t0ps3cret",
            ["s3cret", "t0ps3cret"],
            "h1:1,h2:2/mymaster?sentinel_password=***",
        ),
        (
            "redis+cluster://user:s3cret@n1:7000,n2:7001,n3:7002/0",
            ["s3cret"],
            "redis+cluster://user:***@n1:7000,n2:7001,n3:7002/0",
        ),
        ("unix://:s3cret@/tmp/redis.sock?db=0", ["s3cret"], "@/tmp/redis.sock?db=0"),
    ],
)
def test_mask_url_hides_every_form_of_password(url: str, secrets: list[str], shown: str) -> None:
    masked = mask_url(url)
    for secret in secrets:
        assert secret not in masked, masked
    assert shown in masked, masked


@pytest.mark.parametrize(
    "url",
    [
        "redis://db.example:6379/0",
        "redis://alice@db.example:6379/0",
        "redis+sentinel://h1:1,h2:2/mymaster?db=1",
        "unix:///tmp/redis.sock",
        "memory",
    ],
)
def test_mask_url_leaves_urls_without_password_unchanged(url: str) -> None:
    assert mask_url(url) == url


@pytest.mark.parametrize(
    ("userinfo", "problem"),
    [
        (":S3CR#ET", "the password in the Redis URL redis://:***@127.0.0.1:"),
        (":S3CR/ET", "holds an unencoded '/': percent-encode it ('/' as %2F)"),
        (":S3CR?ET", "holds an unencoded '?': percent-encode it ('?' as %3F)"),
        (":S3CR%ET", "holds an unencoded '%': percent-encode it ('%' as %25)"),
        ("al#ce:S3CRET", "the user name in the Redis URL"),
    ],
)
def test_an_unencoded_character_in_a_url_password_is_a_one_line_error(
    userinfo: str, problem: str
) -> None:
    # Unreachable: had the app parsed the URL some other way and connected, the error
    # would be the refused connection.
    url = f"redis://{userinfo}@127.0.0.1:{free_port()}/0"
    app = QueueTasks(f"url-{os.getpid()}", redis_url=url, load_entry_points=False)
    with pytest.raises(TaskOptionError) as info:
        app.add_task("x")
    assert_one_line(info.value, problem, "percent-encode")
    assert "S3CR" not in str(info.value)
    app.stop()


def test_a_hash_after_the_host_is_a_one_line_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?password=s3#cret"
    app = QueueTasks(f"url-{os.getpid()}", redis_url=url, load_entry_points=False)
    with pytest.raises(TaskOptionError) as info:
        app.add_task("x")
    assert_one_line(info.value, "holds a '#', where a URL ends", "%23", "?password=***")
    assert "cret" not in str(info.value)
    app.stop()
