"""Errors of the QTasks runtime.

::

    QTasksError
    ├── TaskNotFoundError (also KeyError)         no task registered under that name
    ├── TaskSerializationError (also TypeError)   arguments or result are not JSON-able
    ├── TaskTimeoutError (also TimeoutError)      a wait for a result ran out; keeps uuid
    ├── TaskOptionError (also ValueError)         a bad priority, payload, option …
    │   └── RetriedAlready                        retry(once=True): sent again already
    ├── TaskExitError                             a task raised SystemExit/KeyboardInterrupt
    ├── TaskCancel                                raised by ``ctx.cancel()`` in a task
    ├── TaskPluginTriggerError                    raised by ``ctx.plugin_error()`` in a task
    └── BackendError                              whatever the backend (Redis) raised
        │                                                              retryable
        ├── BackendUnavailableError (also ConnectionError)             yes
        │       refused, reset or closed connection; LOADING, BUSY, maxclients
        ├── BackendTimeoutError (also TimeoutError)                    yes
        │       no reply in time
        ├── BackendOutOfMemoryError                                    yes
        │       OOM: used memory > maxmemory under noeviction; queued tasks are kept
        ├── BackendReadOnlyError                                       yes
        │       READONLY: the URL points at a replica, or a failover is under way
        ├── BackendPermissionError                                     no
        │       NOPERM: the ACL user may not run a command or touch a key; names it
        ├── BackendAuthError                                           no
        │       WRONGPASS, NOAUTH: wrong or missing credentials (never shown)
        └── BackendDataError                                           no
                WRONGTYPE, a script's ``error_reply``, any other error reply

The backend's own errors (redis-py's, and the ``OSError`` of its sockets) never leave
it: :func:`qtasks_core.backends._errors.backend_error` maps each into one of the
``BackendError`` classes, keeping the original as ``__cause__``. So ``except
BackendError`` catches every backend failure and nothing else: a plugin's own
``OSError`` is not taken for an outage. ``retryable`` says whether waiting and trying
the same call again can succeed with nobody changing anything; only the outage-like
errors also derive from the builtin ``ConnectionError``/``TimeoutError``, so that
``except ConnectionError`` in user code does not catch a refused password or bad data.

Plugin contract errors live in :mod:`qtasks_hooks` (``PluginReturnError`` …).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .schemas import Task


class QTasksError(Exception):
    """Base of every error raised by the QTasks runtime."""


class TaskNotFoundError(QTasksError, KeyError):
    """No task is registered under this name in this worker or app."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not found"


class TaskSerializationError(QTasksError, TypeError):
    """A task's arguments (or its result) cannot be serialized to JSON."""


class TaskOptionError(QTasksError, ValueError):
    """A task option or an ``add_task`` argument is out of range."""


class RetriedAlready(TaskOptionError):
    """``retry(uuid, once=True)`` met a task that was sent again already: ``retried_as``
    is the task it was sent again as."""

    def __init__(self, uuid: str, retried_as: str) -> None:
        super().__init__(f"task {uuid} was sent again already, as {retried_as}")
        self.uuid = uuid
        self.retried_as = retried_as


class TaskTimeoutError(QTasksError, TimeoutError):
    """A wait for a task's final state ran out; the task itself goes on.

    ``uuid`` is the task's id (wait again with ``app.wait(uuid)``); ``task`` is its
    last seen state, or ``None`` if it could not be read. ``no_worker`` is the task's
    queue when the task was still ``new`` and no live worker served that queue when
    the wait ran out (the message then says so), else ``None``.
    """

    def __init__(
        self,
        uuid: str,
        timeout: float,
        task: Task | None = None,
        *,
        no_worker: str | None = None,
        backend: str | None = None,
    ) -> None:
        status = task.status if task is not None else "unknown"
        if no_worker is None:
            advice = "it is still queued or running: wait again with app.wait(uuid)"
        else:
            where = f" on {backend}" if backend else ""
            advice = (
                f"no live worker serves its queue {no_worker!r}{where}: start one "
                f"(qtasks worker -A module:app"
                + ("" if no_worker == "default" else f" -Q {no_worker}")
                + "), or point the worker at the same server as this process (the same "
                "QTASKS_REDIS_URL, or the same QTASKS_HOME for the embedded server)"
            )
        super().__init__(
            f"task {uuid} did not finish within {timeout:g}s (status: {status}); {advice}"
        )
        self.uuid = uuid
        self.timeout = timeout
        self.task = task
        self.no_worker = no_worker


class TaskCancel(QTasksError):
    """Raised by ``ctx.cancel(reason)``: the task ends with status ``cancel``."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class TaskPluginTriggerError(QTasksError):
    """Raised by ``ctx.plugin_error(...)``: handled by ``task_executor_run_task_trigger_error``.

    Plugins see the keyword arguments given to ``plugin_error`` in ``extra``.
    """

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra


class TaskExitError(QTasksError):
    """A task raised ``SystemExit`` or ``KeyboardInterrupt``: that task fails, its worker
    and the tasks running beside it go on."""


# -- backend errors --------------------------------------------------------------------


class BackendError(QTasksError):
    """The backend (Redis) failed a call: the base of every backend error, never raised
    itself.

    ``retryable`` tells a caller whether to back off and try again (an outage, a full
    or read-only server: it may pass) or to give up (a refused password or command, bad
    data: the same call fails the same way until someone changes something). ``code``
    is the Redis error code (``OOM``, ``WRONGTYPE`` …) when the server sent one, and
    ``command`` what QTasks was running, when the caller said.
    """

    #: Whether the same call may succeed later without anyone changing anything.
    retryable: ClassVar[bool] = False

    def __init__(
        self, message: str, *, code: str | None = None, command: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.command = command


class BackendUnavailableError(BackendError, ConnectionError):
    """Redis cannot be reached or cannot serve for now: the connection was refused,
    reset or closed, or the server is loading its data (``LOADING``), running a long
    script (``BUSY``), at ``maxclients``, unable to persist (``MISCONF``) or just lost
    its scripts (``NOSCRIPT``, a restart)."""

    retryable: ClassVar[bool] = True


class BackendTimeoutError(BackendError, TimeoutError):
    """Redis sent no reply in time (a connection or a command)."""

    retryable: ClassVar[bool] = True


class BackendOutOfMemoryError(BackendError):
    """``OOM``: Redis refuses writes because its used memory exceeds ``maxmemory`` (under
    the ``noeviction`` policy). Reads still work and queued tasks are kept; writes
    succeed again once memory is freed or ``maxmemory`` raised."""

    retryable: ClassVar[bool] = True


class BackendReadOnlyError(BackendError):
    """``READONLY``: the server is a read-only replica. The URL points at a replica, or a
    failover is under way (then the primary comes back, and the call with it)."""

    retryable: ClassVar[bool] = True


class BackendPermissionError(BackendError):
    """``NOPERM``: the Redis ACL user may not run a command, or touch a key or channel.

    ``denied`` is the refused command as Redis names it (``hincrby``, ``config|get``),
    or ``None`` for a key or channel; ``rule`` is the ACL rule that allows it
    (``+hincrby``, ``~qtasks:*``). Retrying does not help: the user's rules must change.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        command: str | None = None,
        denied: str | None = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(message, code=code, command=command)
        self.denied = denied
        self.rule = rule


class BackendAuthError(BackendError):
    """``WRONGPASS``, ``NOAUTH``: Redis refused the credentials of the URL, or wants
    some. The message never contains a password."""


class BackendDataError(BackendError):
    """An error reply that neither an outage nor a refused login or command explains:
    ``WRONGTYPE`` (a key holding the wrong kind of value), a script's own
    ``error_reply``, a Lua runtime error, any other error reply.

    Errors raised inside a Lua script are not a class of their own: where an error
    arose (in ``HGET`` or in a script calling it) does not change what a caller does
    about it, and Redis 7 and Valkey send the same code from both. A ``WRONGTYPE`` is
    ``BackendDataError`` either way, a ``NOPERM`` in a script is a
    :class:`BackendPermissionError`, an ``OOM`` one a :class:`BackendOutOfMemoryError`;
    ``code`` and the message (``… in a script``) keep the detail.
    """
