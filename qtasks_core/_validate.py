"""Checks of what producers pass in, run before anything is connected or written.

Each check returns the value it accepts and raises :class:`~.errors.TaskOptionError`
with one line that names the bad value and says what is allowed. The app calls them
at its edge (``add_task``, ``send_task``, ``add_tasks`` and their async twins) so that
a bad call leaves Redis untouched.
"""

from __future__ import annotations

import math
import re
import reprlib
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .errors import TaskOptionError
from .keys import PRIORITY_MAX, PRIORITY_MIN

#: Longest app name: it is part of every Redis key of the app.
APP_NAME_MAX: Final = 128
#: Longest task name: it is stored in every record and printed in logs.
TASK_NAME_MAX: Final = 512

_APP_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]+")
_APP_NAME_CHAR: Final = re.compile(r"[^A-Za-z0-9_.\-]")
#: Control characters and the line and paragraph separators that ``splitlines`` breaks
#: on (a task name must print on one log line), and lone surrogates (not UTF-8).
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Zl", "Zp", "Cs"})

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def _shown(value: object) -> str:
    """A short one-line ``repr`` of ``value`` for an error message."""
    return _repr.repr(value).replace("\n", "\\n")


def lone_surrogate(text: str) -> int | None:
    """The position of the first lone surrogate in ``text``, or ``None``.

    A lone surrogate (``"\\ud800"``, what ``os.fsdecode`` makes of bytes that are not
    UTF-8) is a ``str`` that cannot be encoded as UTF-8, so Redis (and JSON) cannot
    store it.
    """
    if text.isascii():  # the common case, without building the encoded bytes
        return None
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_app_name(name: object) -> str:
    """``name`` if it is a valid app name: 1 to 128 ASCII letters, digits, ``_ . -``.

    The name becomes the key prefix ``qtasks:<name>:`` and part of the SCAN patterns
    that ``flush_all`` uses, so a ``:`` or a glob character (``* ? [``) would let one
    app's flush delete another app's keys.
    """
    if isinstance(name, str) and len(name) <= APP_NAME_MAX and _APP_NAME.fullmatch(name):
        return name
    rule = (
        "an app name is 1 to 128 characters: ASCII letters, digits, '_', '.' and '-' "
        "(it is part of every Redis key of the app)"
    )
    if not isinstance(name, str) or not name:
        raise TaskOptionError(f"app name {_shown(name)} is not valid: {rule}")
    if len(name) > APP_NAME_MAX:
        raise TaskOptionError(f"app name {_shown(name)} is {len(name)} characters long: {rule}")
    bad = _APP_NAME_CHAR.search(name)
    assert bad is not None
    raise TaskOptionError(f"app name {_shown(name)} contains {bad.group()!r}: {rule}")


def check_task_name(name: object) -> str:
    """``name`` if it is a valid task name: a non-empty ``str`` of at most 512
    characters, printable on one line (no control characters)."""
    if isinstance(name, str) and 0 < len(name) <= TASK_NAME_MAX:
        # isprintable() is the fast path; it also refuses harmless characters (a
        # no-break space), so only a refusal is looked at character by character.
        if name.isprintable():
            return name
        bad = next((c for c in name if unicodedata.category(c) in _REFUSED_CATEGORIES), None)
        if bad is None:
            return name
        raise TaskOptionError(
            f"task name {_shown(name)} contains {bad!r} (a control character, line "
            "separator or lone surrogate); a task name must be text that prints on one line"
        )
    if isinstance(name, str) and name:
        raise TaskOptionError(
            f"task name {_shown(name)} is {len(name)} characters long, over "
            f"{TASK_NAME_MAX}; use a short name"
        )
    raise TaskOptionError(
        f"task name must be a non-empty str (the name a task was registered under), "
        f"got {_shown(name)}"
    )


def check_priority(priority: object) -> int:
    """``priority`` if it is an ``int`` (not a ``bool``) within
    ``PRIORITY_MIN..PRIORITY_MAX``."""
    # bool is an int subclass: True would queue silently at priority 1.
    if (
        isinstance(priority, int)
        and not isinstance(priority, bool)
        and PRIORITY_MIN <= priority <= PRIORITY_MAX
    ):
        return priority
    raise TaskOptionError(
        f"priority must be an int in [{PRIORITY_MIN}, {PRIORITY_MAX}] "
        f"(lower runs first), got {_shown(priority)}"
    )


#: Longest queue name: it is part of the queue's Redis keys.
QUEUE_NAME_MAX: Final = 128
_QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]+")


def check_queue(name: object, what: str = "queue name") -> str:
    """``name`` if it is a valid queue name: 1 to 128 ASCII letters, digits, ``_ . -``
    (no spaces, ``:`` or glob characters, which would break the queue's keys).

    :param what: the field the name came from, for the error (a schedule's name
        follows the same rule).
    """
    if isinstance(name, str) and len(name) <= QUEUE_NAME_MAX and _QUEUE_NAME.fullmatch(name):
        return name
    rule = (
        f"a {what} is 1 to 128 characters: ASCII letters, digits, '_', '.' and '-' "
        "(it is part of Redis keys)"
    )
    if isinstance(name, str) and name and len(name) <= QUEUE_NAME_MAX:
        bad = _APP_NAME_CHAR.search(name)
        assert bad is not None
        raise TaskOptionError(
            f"{what} {_shown(name)} contains {bad.group()!r} at position {bad.start()}: {rule}"
        )
    raise TaskOptionError(f"{what} {_shown(name)} is not valid: {rule}")


def _seconds(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    raise TaskOptionError(
        f"{what} must be a finite number of seconds >= 0 or a timedelta, got {_shown(value)}"
    )


def _until(moment: object, what: str) -> float:
    """Seconds from now until the timezone-aware datetime ``moment`` (0 if past)."""
    assert isinstance(moment, datetime)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TaskOptionError(
            f"{what}={moment!r} is a naive datetime: give it a timezone "
            f"(datetime.now(timezone.utc) + ..., or .replace(tzinfo=ZoneInfo('Europe/Berlin')))"
        )
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def check_delay(delay: object, eta: object) -> float | None:
    """Seconds until a task is due, from ``delay`` (seconds or ``timedelta``) or
    ``eta`` (a timezone-aware ``datetime``); not both."""
    if delay is not None and eta is not None:
        raise TaskOptionError("give delay= or eta=, not both")
    if eta is not None:
        if not isinstance(eta, datetime):
            raise TaskOptionError(f"eta must be a timezone-aware datetime, got {_shown(eta)}")
        return _until(eta, "eta")
    return _seconds(delay, "delay")


def check_expires(expires: object) -> float | None:
    """Seconds from now after which a task not started never runs: ``expires`` as
    seconds, ``timedelta`` or a timezone-aware ``datetime``."""
    if isinstance(expires, datetime):
        return _until(expires, "expires")
    return _seconds(expires, "expires")


def check_timeout(timeout: object) -> float | None:
    """``timeout`` as a float if it is ``None`` or a finite number of seconds ``>= 0``
    (an ``int`` or a ``float``, not a ``bool``)."""
    if timeout is None:
        return None
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        try:
            seconds = float(timeout)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
        # NaN compares false with everything, so a NaN deadline is never reached:
        # refuse it (and infinities, and negatives) before the task is written.
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    raise TaskOptionError(
        f"timeout must be None (do not wait) or a finite number of seconds >= 0, "
        f"got {_shown(timeout)}"
    )


def check_args(args: object, task_name: str) -> tuple[Any, ...]:
    """The positional arguments as a tuple; refuses what is not a sequence of them."""
    if type(args) is tuple:
        return args
    # A str, bytes or dict is iterable, but as arguments it is surely a mistake:
    # "abc" would become three arguments, a dict its keys.
    if isinstance(args, str | bytes | bytearray | Mapping) or not isinstance(args, Iterable):
        raise TaskOptionError(
            f"args of task {task_name!r} must be a list or tuple of arguments, "
            f"got {type(args).__name__} {_shown(args)}; wrap one value: args=[value]"
        )
    return tuple(args)


def check_kwargs(kwargs: object, task_name: str) -> dict[str, Any]:
    """The keyword arguments as a dict with ``str`` keys (``None`` is ``{}``)."""
    if kwargs is None:
        return {}
    if type(kwargs) is not dict and not isinstance(kwargs, Mapping):
        raise TaskOptionError(
            f"kwargs of task {task_name!r} must be a dict of str to value, "
            f"got {type(kwargs).__name__} {_shown(kwargs)}"
        )
    for key in kwargs:
        if type(key) is not str and not isinstance(key, str):
            raise TaskOptionError(
                f"kwargs of task {task_name!r} must have str keys (they become the "
                f"task's keyword arguments), got the key {_shown(key)}"
            )
    return dict(kwargs)


def check_batch_call(call: object, index: int) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """One item of ``add_tasks``: ``(task_name, args)`` or ``(task_name, args, kwargs)``."""
    if not isinstance(call, tuple | list) or not 2 <= len(call) <= 3:
        raise TaskOptionError(
            f"add_tasks item {index} must be (task_name, args) or "
            f"(task_name, args, kwargs), got {_shown(call)}"
        )
    task_name = check_task_name(call[0])
    kwargs = check_kwargs(call[2], task_name) if len(call) == 3 else {}
    return task_name, check_args(call[1], task_name), kwargs


def check_unique_key(key: object) -> str:
    """A ``unique_key``: a non-empty string of at most 512 characters, valid as UTF-8
    (it is part of a Redis key)."""
    if isinstance(key, str) and 0 < len(key) <= 512:
        if (at := lone_surrogate(key)) is None:
            return key
        raise TaskOptionError(
            f"unique_key {_shown(key)} holds a lone surrogate {key[at]!r} at position {at}: "
            "it is not valid Unicode and cannot be stored; pass valid text"
        )
    raise TaskOptionError(
        f"unique_key must be a non-empty string of at most 512 characters, got {_shown(key)}"
    )


def check_unique_for(value: object) -> float:
    """``unique_for``: seconds (or a ``timedelta``) greater than 0."""
    seconds = _seconds(value, "unique_for")
    if not seconds:
        raise TaskOptionError(f"unique_for must be more than 0 seconds, got {_shown(value)}")
    return seconds


_RATE_PERIODS = {"s": 1000, "m": 60_000, "h": 3_600_000}


def check_concurrency_limit(value: object) -> int:
    """``concurrency_limit``: a whole number >= 1."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise TaskOptionError(f"concurrency_limit must be a whole number >= 1, got {_shown(value)}")


def parse_rate_limit(value: object) -> tuple[int, int]:
    """``rate_limit`` (``"100/m"``, ``"20/s"``, ``"5/h"``) as (count, period in ms)."""
    if isinstance(value, str):
        count, sep, unit = value.strip().partition("/")
        if sep and count.strip().isdigit() and int(count) >= 1 and unit.strip() in _RATE_PERIODS:
            return int(count), _RATE_PERIODS[unit.strip()]
    raise TaskOptionError(
        f"rate_limit must be a count per second, minute or hour such as '100/m' or "
        f"'20/s', got {_shown(value)}"
    )


def page_cursor(before: str | None, returned_by: str) -> tuple[float, str] | None:
    """A page's cursor (``<score>:<uuid>``, as ``returned_by`` returned it in ``next``),
    or ``None`` for the first page; anything else is refused naming the call."""
    if before is None:
        return None
    score, sep, uuid = str(before).partition(":")
    try:
        value = float(score)
    except ValueError:
        value = math.nan
    if not sep or not uuid or not math.isfinite(value):
        raise TaskOptionError(
            f"before must be a cursor that {returned_by} returned as next, not {before!r}"
        )
    return value, uuid
