"""The backend's edge for errors: whatever Redis or a socket raised leaves as a
:class:`~qtasks_core.errors.BackendError` (the hierarchy is drawn in
:mod:`qtasks_core.errors`).

Two calls, for the backends to wrap their Redis calls in::

    @mapped("enqueue")
    async def enqueue(self, ...): ...        # a decorator for async methods

    async with mapped("claim"):              # or a block (``with`` works too)
        ...

    except redis.exceptions.RedisError as exc:
        raise backend_error(exc, command="claim") from exc   # or by hand

Only the errors of the client and its sockets are mapped (redis-py's ``RedisError``,
``OSError`` with its ``ConnectionError``/``TimeoutError``, ``EOFError``): a
``TypeError`` or ``KeyError`` of our own code stays what it is, and so does
cancellation. A ``BackendError`` already mapped passes unchanged. A
``UnicodeEncodeError`` (a lone surrogate the client cannot send) is the caller's
input, not the backend's failure: it becomes a ``TaskOptionError``.

What arrives, and how it is told apart (redis-py 8.1 with Valkey 9; the lean
connection in ``_resp.py`` parses error replies with redis-py's own table, so both
clients raise the same classes):

- Error replies become ``ResponseError`` subclasses by code (``OOM`` ->
  ``OutOfMemoryError``, ``READONLY`` -> ``ReadOnlyError``, ``NOPERM`` ->
  ``NoPermissionError`` …); redis-py cuts the code off the text and keeps it as
  ``status_code`` (redis-py >= 6; older ones drop it, so the class tells). Codes it has
  no class for (``WRONGTYPE``, ``BUSY``, ``MISCONF``, a script's ``error_reply``)
  arrive as a plain ``ResponseError`` with the code still at the head of the text.
- An error inside a script keeps its code on Redis 7 and Valkey (``OOM … script: on
  @user_script:1.``), with two exceptions that only the text shows: a command the ACL
  refuses arrives as ``ERR ACL failure in script: User u has no permissions to run
  the 'hincrby' command …`` (a plain ``ResponseError``, not ``NoPermissionError``),
  and Redis 6 wraps every error as ``ERR Error running script (call to f_…):
  @user_script:1: … -OOM …``. A key outside the user's patterns given in ``KEYS`` is
  refused before the script runs, so that one is a true ``NOPERM``.
- ``ERR max number of clients reached`` and ``LOADING`` are ``ConnectionError``
  subclasses in redis-py; ``WRONGPASS`` and ``NOAUTH`` are ``AuthenticationError``,
  also a ``ConnectionError``: so the auth checks come before the connection ones.
- Socket failures arrive wrapped by either client as redis-py's ``ConnectionError`` or
  ``TimeoutError``; a bare ``OSError``/``EOFError``/``TimeoutError`` only when one
  escapes them.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

from ..errors import (
    BackendAuthError,
    BackendDataError,
    BackendError,
    BackendOutOfMemoryError,
    BackendPermissionError,
    BackendReadOnlyError,
    BackendTimeoutError,
    BackendUnavailableError,
    TaskOptionError,
)

__all__ = ["backend_error", "mapped", "rx"]

P = ParamSpec("P")
T = TypeVar("T")


class _Deferred:
    """A module imported when one of its names is first read (then kept at hand)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)
        return value


if TYPE_CHECKING:
    from redis import exceptions as rx
else:
    # redis-py's exceptions, for the backends to catch (``except rx.ResponseError``):
    # they are read when an error is met, by when a connection has loaded the client,
    # so that importing the backends loads no client.
    rx = _Deferred("redis.exceptions")


def _is_client_error(exc: BaseException) -> bool:
    """Whether :func:`mapped` converts ``exc``: the client's errors and its sockets',
    nothing of ours. (``asyncio.TimeoutError`` and ``socket.timeout`` are the builtin
    ``TimeoutError``, an ``OSError``; ``asyncio.IncompleteReadError`` is an
    ``EOFError``.)"""
    if isinstance(exc, BackendError):
        return False
    return isinstance(exc, OSError | EOFError | rx.RedisError)


@functools.cache
def _class_codes() -> tuple[tuple[type[rx.RedisError], str], ...]:
    """The code of the redis-py classes, for redis-py releases without ``status_code``."""
    return (
        (rx.OutOfMemoryError, "OOM"),
        (rx.ReadOnlyError, "READONLY"),
        (rx.NoPermissionError, "NOPERM"),
        (rx.BusyLoadingError, "LOADING"),
        (rx.NoScriptError, "NOSCRIPT"),
        (rx.ExecAbortError, "EXECABORT"),
    )


@functools.cache
def _auth_classes() -> tuple[type[rx.RedisError], ...]:
    """Refused credentials (older redis-py releases have no ExternalAuthProviderError)."""
    return (
        rx.AuthenticationError,
        rx.AuthenticationWrongNumberOfArgsError,
        getattr(rx, "ExternalAuthProviderError", rx.AuthenticationError),
    )


#: Error codes after which the server serves again by itself: an outage.
_UNAVAILABLE_CODES: Final = frozenset(
    {"LOADING", "BUSY", "MISCONF", "NOSCRIPT", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN",
     "NOREPLICAS", "MOVED", "ASK"}
)  # fmt: skip

_LEADING_CODE: Final = re.compile(r"([A-Z][A-Z0-9_]+)(?: |$)")
#: A code inside a script's error (Redis 6 puts ``-OOM`` after the script position).
_EMBEDDED_CODE: Final = re.compile(
    r"(?:^|[\s:])-?(OOM|READONLY|NOPERM|WRONGTYPE|NOAUTH|WRONGPASS|LOADING|BUSY|MISCONF"
    r"|NOREPLICAS|MASTERDOWN)(?= |$)"
)
_IN_SCRIPT: Final = re.compile(r"@user_script|@user_function|Error running script|in script")
#: An ACL refusal inside a script: Redis 7.2+ and Valkey (``ACL failure in script:``),
#: Redis 7.0 and 6 (``The user executing the script can't run this command …``).
_ACL_IN_SCRIPT: Final = re.compile(
    r"ACL failure in script|no permissions|user executing the script can't", re.I
)
_DENIED_COMMAND: Final = re.compile(r"no permissions to run the '([^']+)' command", re.I)
_DENIED_USER: Final = re.compile(r"\bUser (\S+) has no permissions", re.I)
#: "access a key", "… the 'k' key", "… one of the keys …", "… at least one of the keys …".
_DENIED_KEY: Final = re.compile(r"access (?:a|the '[^']*'|(?:at least )?one of the) keys?\b", re.I)
#: Valkey 9's per-database ACL (``db=0,1``): the URL's database is not among them.
_DENIED_DB: Final = re.compile(r"access database\b", re.I)
#: Secrets a text could carry: the user:password part of a URL, ``password=...``.
_URL_CREDENTIALS: Final = re.compile(r"(\w+://)[^@/\s]*@")
_PASSWORD_VALUE: Final = re.compile(r"(password\s*[=:]\s*)\S+", re.I)

#: The ACL rule that allows the keys QTasks uses (``qtasks:<app>:…``, see ``keys.py``).
_KEYS_RULE: Final = "~qtasks:*"


# -- mapping -------------------------------------------------------------------------------


def backend_error(exc: BaseException, *, command: str | None = None) -> BackendError:
    """The :class:`~qtasks_core.errors.BackendError` for what the backend met.

    :param exc: what redis-py or a socket raised (a ``BackendError`` is returned as it
        is; raise it without ``from`` then).
    :param command: what QTasks was running (``"EVALSHA enqueue"``, ``"HGET"``), named
        in the message and kept as ``command``.
    :returns: an error of the class that says what to do (``retryable`` or not), whose
        one-line message names the Redis error code, the command when known, and the
        fix; never a password. The caller raises it ``from exc``.
    """
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, rx.RedisError):
        return _from_redis(exc, command)
    if isinstance(exc, TimeoutError):
        return BackendTimeoutError(
            f"Redis sent no reply in time{_running(command)}: {_text(exc)}", command=command
        )
    if isinstance(exc, OSError | EOFError):
        return BackendUnavailableError(
            f"cannot reach Redis{_running(command)}: {_text(exc)}", command=command
        )
    return BackendDataError(f"the backend failed{_running(command)}: {_text(exc)}", command=command)


def _from_redis(exc: rx.RedisError, command: str | None) -> BackendError:
    code, text = _reply(exc)
    in_script = _IN_SCRIPT.search(text) is not None
    if code in (None, "ERR") and in_script:
        if _ACL_IN_SCRIPT.search(text):
            code = "NOPERM"
        elif found := _EMBEDDED_CODE.search(text):
            code = found.group(1)
    where = _running(command, in_script)
    if code == "OOM":
        return BackendOutOfMemoryError(
            f"OOM: Redis is out of memory{where}: used memory > 'maxmemory' under the "
            "noeviction policy; raise maxmemory or free memory (queued tasks are kept)",
            code=code,
            command=command,
        )
    if code == "READONLY":
        return BackendReadOnlyError(
            f"READONLY: Redis refused a write{where}: the server is a read-only replica; "
            "point the URL at the primary (or wait, if a failover is under way)",
            code=code,
            command=command,
        )
    if code == "NOPERM" or isinstance(exc, rx.AuthorizationError):
        return _permission(text, where, command)
    if code in ("WRONGPASS", "NOAUTH") or isinstance(exc, _auth_classes()):
        return _auth(code, text, where, command)
    if code in _UNAVAILABLE_CODES:
        return BackendUnavailableError(
            f"{code}: {_UNAVAILABLE_WHY.get(code, text)}{where}", code=code, command=command
        )
    if isinstance(exc, rx.TimeoutError):
        return BackendTimeoutError(
            f"Redis sent no reply in time{where}: {text}", code=code, command=command
        )
    if isinstance(exc, rx.ConnectionError | rx.InvalidResponse):
        if "max number of clients" in text:  # an error reply, a ConnectionError
            return BackendUnavailableError(
                f"ERR {text}{where}: Redis is at maxclients; raise maxclients or close "
                "other clients",
                code=code,
                command=command,
            )
        return BackendUnavailableError(
            f"cannot reach Redis{where}: {text}", code=code, command=command
        )
    if code == "WRONGTYPE":
        return BackendDataError(
            f"WRONGTYPE: a key holds the wrong kind of value{where}: another program (or "
            "another QTasks version) wrote a key under the app's prefix",
            code=code,
            command=command,
        )
    head = f"{code}: " if code else ""
    return BackendDataError(f"{head}{text}{where}", code=code, command=command)


_UNAVAILABLE_WHY: Final = {
    "LOADING": "Redis is loading its data into memory; it serves again once loaded",
    "BUSY": "Redis is busy running a script; it serves again when the script ends",
    "MOVED": "another cluster node serves the app's keys now; the next call goes there",
    "ASK": "the app's keys are moving between cluster nodes; the next call waits",
    "NOSCRIPT": "Redis lost its scripts (a restart or SCRIPT FLUSH); the next call loads "
    "them again",
}


def _permission(text: str, where: str, command: str | None) -> BackendPermissionError:
    user_found = _DENIED_USER.search(text)
    user = user_found.group(1) if user_found else None
    who = f"the Redis user {user}" if user else "the Redis user of the URL"
    setuser = f"ACL SETUSER {user or '<user>'}"
    if found := _DENIED_COMMAND.search(text):
        denied = found.group(1)
        rule = f"+{denied}"
        message = f"{who} may not run '{denied}'{where}: add the ACL rule {rule}"
    elif _DENIED_KEY.search(text):
        denied, rule = None, _KEYS_RULE
        message = f"{who} may not access a key QTasks uses{where}: add the ACL rule {rule}"
    elif _DENIED_DB.search(text):
        return BackendPermissionError(
            f"NOPERM: {who} may not use the database of the URL{where}: add the ACL rule "
            f"db=<n> with that database, or alldbs ({setuser} db=<n>)",
            code="NOPERM",
            command=command,
        )
    else:  # Redis 6 and 7.0 in a script: "can't run this command or subcommand", no name
        return BackendPermissionError(
            f"NOPERM: {who} was refused a command{where} ({text}); ACL LOG names it: "
            f"allow it with {setuser} +<command>",
            code="NOPERM",
            command=command,
        )
    return BackendPermissionError(
        f"NOPERM: {message} ({setuser} {rule})",
        code="NOPERM",
        command=command,
        denied=denied,
        rule=rule,
    )


def _auth(code: str | None, text: str, where: str, command: str | None) -> BackendAuthError:
    # Never the server's text nor the URL: a fixed sentence per case holds no secret.
    lowered = text.lower()
    if code == "NOAUTH":
        message = (
            f"NOAUTH: Redis requires a password and the URL gives none{where}: add it, as "
            "redis://:PASSWORD@host:port/0 (or USER:PASSWORD for an ACL user)"
        )
    elif "no password is set" in lowered or "without any password configured" in lowered:
        message = (
            f"ERR: the URL gives a password but Redis has none set{where}: remove it from the URL"
        )
    elif "wrong number of arguments" in lowered:
        message = (
            f"ERR: Redis takes no username (a server before 6.0 has no ACL users){where}: "
            "keep only the password in the URL"
        )
    else:
        code = code or "ERR"
        message = (
            f"{code}: Redis refused the username or password of the URL, or the user is "
            f"disabled{where}: check the credentials in the Redis URL (with special "
            "characters percent-encoded, '%' as %25)"
        )
    return BackendAuthError(message, code=code, command=command)


# -- texts ---------------------------------------------------------------------------------


def _reply(exc: rx.RedisError) -> tuple[str | None, str]:
    """The Redis error code of ``exc`` (if it came from an error reply) and its text
    without the code, on one line and without secrets."""
    text = _text(exc)
    code: str | None = getattr(exc, "status_code", None)
    if code is None:
        for cls, class_code in _class_codes():
            if isinstance(exc, cls):
                return class_code, text
        # A code redis-py has no class for stays at the head of the text.
        if isinstance(exc, rx.ResponseError) and (found := _LEADING_CODE.match(text)):
            return found.group(1), text[found.end() :]
    return code, text


def _text(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    return _PASSWORD_VALUE.sub(r"\1***", text)


def _running(command: str | None, in_script: bool = False) -> str:
    if command and in_script:
        return f" (running {command}, in a script)"
    if command:
        return f" (running {command})"
    return " (in a script)" if in_script else ""


# -- the helper ----------------------------------------------------------------------------


class _Mapping:
    """A block (``with``/``async with``) or an async-function decorator that raises
    :func:`backend_error` for the client's errors; see :func:`mapped`."""

    __slots__ = ("command",)

    def __init__(self, command: str | None) -> None:
        self.command = command

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        if _is_client_error(exc):
            raise backend_error(exc, command=self.command) from exc
        if isinstance(exc, UnicodeEncodeError):
            raise _unstorable(exc, self.command) from None

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(typ, exc, tb)

    def __call__(self, func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"mapped() decorates async functions, not {func!r}")
        command = self.command

        # A plain try/except: the only cost on the hot path is one more coroutine frame.
        @functools.wraps(func)
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await func(*args, **kwargs)
            except Exception as exc:
                if _is_client_error(exc):
                    raise backend_error(exc, command=command) from exc
                if isinstance(exc, UnicodeEncodeError):
                    raise _unstorable(exc, command) from None
                raise

        return call


def _unstorable(exc: UnicodeEncodeError, command: str | None) -> TaskOptionError:
    """The caller's error for text the client could not encode to send: a lone
    surrogate. The producer's checks refuse one in every field they know by name,
    before anything is written; this catches the rest (a task id, a reason)."""
    where = f" (running {command})" if command else ""
    # No position: the text encoded may be a key built around the caller's value.
    char = exc.object[exc.start] if isinstance(exc.object, str) else "?"
    return TaskOptionError(
        f"a value given{where} holds a lone surrogate {char!r}: it is not valid Unicode "
        "and cannot be sent to Redis; pass valid text"
    )


_UNNAMED: Final = _Mapping(None)


def mapped(command: str | None = None) -> _Mapping:
    """Map the client's errors raised inside into :func:`backend_error`.

    Use it as ``with mapped(): ...``, ``async with mapped("claim"): ...`` or as the
    decorator ``@mapped("enqueue")`` of an async method. Only redis-py's
    ``RedisError``, ``OSError`` (so ``ConnectionError``, ``TimeoutError``) and
    ``EOFError`` are converted, raised ``from`` the original; a ``BackendError``,
    cancellation and every other exception pass unchanged.

    :param command: what the block runs, named in the error's message.
    """
    return _UNNAMED if command is None else _Mapping(command)
