"""``app.config``: the app's settings, from code or ``QTASKS_*`` environment variables.

The original QTasks' ``QueueConfig``, with its names where they still mean something::

    app = QueueTasks("demo")
    app.config.task_default_priority = 5   # tasks declared without a priority
    app.config.result_ttl = 3600           # finished tasks readable for an hour

    # or, before the app is created: QTASKS_TASK_DEFAULT_PRIORITY=5 QTASKS_RESULT_TTL=3600

========================== ================================ ==============================
setting                    default                          takes effect
========================== ================================ ==============================
task_default_priority      0                                each enqueue (tasks declared
                                                            without ``priority=``)
result_ttl                 86400 (``none``: kept forever)   each record written after it
logs_default_level_server  unset (logging left alone)       at once: ``qtasks.worker``,
                                                            ``.starter``, ``.schedules``,
                                                            ``.tasks``, ``.task``, ``.supervisor``
logs_default_level_client  unset (logging left alone)       at once: ``qtasks.app``,
                                                            ``.broker``, ``.storage``,
                                                            ``.backend``, ``.embedded``,
                                                            ``.plugins``
events                     false                            at once: every status change
                                                            also goes onto the app's
                                                            event stream (``app.events()``)
events_max                 10000                            at once: entries the stream
                                                            keeps (about)
delete_finished_tasks      false                            at once: ``true`` keeps
                                                            finished records
                                                            :data:`FINISHED_TTL` seconds
                                                            at most (``result_ttl``);
                                                            ``false`` restores the TTL
========================== ================================ ==============================

The environment is read once, when the app is created: ``QTASKS_<SETTING>`` in any case,
its value validated as the setting's type, the word ``none`` standing for no value. A
setting of the original that no longer exists is refused, as an attribute or as a
variable, with what replaced it (:data:`REMOVED`); so is a misspelled one.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from ._validate import check_priority
from .errors import TaskOptionError
from .keys import EVENTS_MAX

__all__ = ["FINISHED_TTL", "REMOVED", "QueueConfig"]

ENV_PREFIX: Final = "QTASKS_"

#: The result TTL that ``delete_finished_tasks = True`` sets: the shortest that still lets
#: every waiter read the result. ``wait`` and ``add_task(timeout=)`` read the record
#: right after the final status (Redis wakes them in the same step that writes it), so
#: a second would do on a healthy connection; a minute also covers a waiter that was
#: reconnecting (backoff after a blip) or an ``app.get`` right after the task ended.
FINISHED_TTL: Final = 60.0

#: The original's settings that no longer exist, and what to write instead.
REMOVED: Final[dict[str, str]] = {
    "max_tasks_process": (
        "tasks run at once per worker are its concurrency: `qtasks worker --concurrency N`, "
        "`app.run_forever(num_workers=N)` or `app.worker(concurrency=N)`"
    ),
    "running_older_tasks": (
        "recovery is always on: a task whose worker died is claimed again once its lease "
        "runs out (`qtasks worker --lease SECONDS`), and tasks of live workers never run twice"
    ),
    "task_default_decode": (
        "the original never used it either: give `decode=` to each task (`@app.task(decode=f)`)"
    ),
    "global_config_status_ttl": (
        "a worker's liveness record lasts as long as its lease and is renewed by its "
        "heartbeat: `qtasks worker --lease SECONDS`"
    ),
    "global_config_status_set_periodic": (
        "a worker's liveness record is renewed with its leases, well within "
        "`qtasks worker --lease SECONDS`"
    ),
    "logs_format": (
        "QTasks installs no log handler: `qtasks worker --log-format text|json`, or "
        "`logging.basicConfig(format=...)` in your program"
    ),
    "result_time_interval": (
        "results are waited on without polling (Redis wakes the waiter when the task ends): "
        "there is nothing to set"
    ),
    "result_statuses_end": (
        "the final statuses are fixed (success, error, cancel; `Task.is_finished`)"
    ),
    "environ_prefix": "the prefix of the environment variables is always QTASKS_",
}

#: ``QTASKS_*`` variables read elsewhere (never taken for a misspelled setting).
_OTHER_ENV: Final = frozenset(
    {"REDIS_URL", "PLUGINS", "DISABLE_PLUGINS", "HOME", "INPUT", "CORRUPT", "TEST_REDIS_URL"}
)

#: The loggers each ``logs_default_level_*`` setting levels (children follow).
LOGGERS: Final[dict[str, tuple[str, ...]]] = {
    "logs_default_level_server": (
        "qtasks.worker",
        "qtasks.tasks",
        "qtasks.starter",
        "qtasks.schedules",
        "qtasks.task",
        "qtasks.supervisor",
    ),
    "logs_default_level_client": (
        "qtasks.app",
        "qtasks.broker",
        "qtasks.storage",
        "qtasks.backend",
        "qtasks.embedded",
        "qtasks.plugins",
    ),
}


def _removed(name: str, where: str) -> TaskOptionError:
    return TaskOptionError(
        f"{where} was a setting of the original QTasks that no longer exists: {REMOVED[name]}"
    )


class QueueConfig(BaseModel):
    """The app's settings (``app.config``); see the module docstring.

    :param task_default_priority: the priority of tasks declared without one (lower
        runs first); read at each enqueue.
    :param result_ttl: seconds a finished task's record stays readable (``None``:
        forever); applies to records written from then on, in the process that writes
        them (the worker's, for results).
    :param logs_default_level_server: / :param logs_default_level_client: a level
        (``"INFO"``, ``"debug"``, ``logging.INFO``) set on the worker-side / the
        caller-side loggers (see :data:`LOGGERS`); ``None`` leaves logging alone.
    :param delete_finished_tasks: the original's switch, "keep no finished records":
        ``True`` lowers ``result_ttl`` to :data:`FINISHED_TTL` (a shorter TTL stays),
        ``False`` puts back the TTL it replaced. Setting ``result_ttl`` afterwards is
        a choice of its own: it turns this back to ``False``.
    """

    # A plain model that reads its variables itself (_from_environment): the
    # pydantic-settings package it used to be cost ~0.1 s of every app's import (dotenv,
    # argparse and every source provider) for six flat fields.
    model_config = ConfigDict(validate_assignment=True, validate_default=True, extra="forbid")

    task_default_priority: int = 0
    result_ttl: float | None = Field(default=86400.0, gt=0)
    logs_default_level_server: int | None = None
    logs_default_level_client: int | None = None
    events: bool = False
    events_max: int = Field(default=EVENTS_MAX, ge=1)
    delete_finished_tasks: bool = False

    _listeners: list[Callable[[str, Any], None]] = PrivateAttr(default_factory=list)
    #: The TTL ``delete_finished_tasks = True`` replaced, put back by ``False``.
    _kept_ttl: float | None = PrivateAttr(default=None)

    def __init__(self, **values: Any) -> None:
        for name in values:
            self._check_name(name, f"QueueConfig({name}=...)")
        _check_environment()
        super().__init__(**{**_from_environment(), **values})
        if self.delete_finished_tasks:
            self._kept_ttl = self.result_ttl
            # Past this class's __setattr__, which takes a TTL set after the switch for
            # the user's own and turns the switch off.
            BaseModel.__setattr__(self, "result_ttl", _shortest(self.result_ttl))

    @field_validator("task_default_priority")
    @classmethod
    def _priority(cls, value: int) -> int:
        return check_priority(value)

    @field_validator("logs_default_level_server", "logs_default_level_client", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
            levels = logging.getLevelNamesMapping()
            level = levels.get(value.strip().upper())
            if level is None:
                raise ValueError(
                    f"{value!r} is not a logging level: write one of "
                    f"{', '.join(n for n in levels if n not in ('WARN', 'FATAL', 'NOTSET'))} "
                    "(or its number)"
                )
            return level
        return value

    @classmethod
    def _check_name(cls, name: str, where: str) -> None:
        if name in cls.model_fields:
            return
        if name in REMOVED:
            raise _removed(name, where)
        close = difflib.get_close_matches(name, [*cls.model_fields, *REMOVED], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TaskOptionError(
            f"{where}: no setting {name!r}{hint}; the settings are {', '.join(cls.model_fields)}"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
            return
        self._check_name(name, f"app.config.{name}")
        deleting = self.delete_finished_tasks
        super().__setattr__(name, value)
        changed = [name]
        if name == "delete_finished_tasks" and self.delete_finished_tasks != deleting:
            if self.delete_finished_tasks:
                self._kept_ttl = self.result_ttl
                super().__setattr__("result_ttl", _shortest(self.result_ttl))
            else:
                super().__setattr__("result_ttl", self._kept_ttl)
            changed.append("result_ttl")
        elif name == "result_ttl" and deleting:
            # A TTL set by hand after the switch is the user's latest word: reading the
            # switch back must not claim records are dropped while they are kept.
            super().__setattr__("delete_finished_tasks", False)
            changed.append("delete_finished_tasks")
        # Each component that uses a setting applies it where it acts (the storage's
        # TTL, the loggers): a value set at run time takes effect without a restart.
        for setting in changed:
            for listener in self._listeners:
                listener(setting, getattr(self, setting))

    def __getattr__(self, name: str) -> Any:
        # Reading a removed setting must say what replaced it, as setting it does.
        if name in REMOVED:
            raise AttributeError(str(_removed(name, f"app.config.{name}")))
        return super().__getattr__(name)  # type: ignore[misc]

    def subscribe(self, listener: Callable[[str, Any], None]) -> None:
        """Call ``listener(name, value)`` after each setting changed at run time."""
        self._listeners.append(listener)

    def apply_logging(self) -> None:
        """Set the configured levels on the loggers (both settings; unset ones are left
        alone)."""
        for name in LOGGERS:
            level = getattr(self, name)
            if level is not None:
                set_level(name, level)


def _shortest(ttl: float | None) -> float:
    """The result TTL of ``delete_finished_tasks``: :data:`FINISHED_TTL`, or ``ttl`` if
    it is already shorter (the switch never keeps records longer)."""
    return FINISHED_TTL if ttl is None else min(ttl, FINISHED_TTL)


def set_level(setting: str, level: int | None) -> None:
    """Set ``level`` (``None``: back to inheriting) on the loggers of ``setting``."""
    for logger in LOGGERS[setting]:
        logging.getLogger(logger).setLevel(logging.NOTSET if level is None else level)


def _from_environment() -> dict[str, Any]:
    """The settings set by ``QTASKS_<SETTING>`` variables (in any case), as the text the
    fields validate (``"none"``: ``None``); values given in code win over these."""
    variables = {f"{ENV_PREFIX}{name}".upper(): name for name in QueueConfig.model_fields}
    found: dict[str, Any] = {}
    for variable, value in os.environ.items():
        name = variables.get(variable.upper())
        if name is not None:
            found[name] = None if value == "none" else value
    return found


def _check_environment() -> None:
    """Refuse a removed or misspelled setting found among the ``QTASKS_*`` variables:
    only the known names are read, so these would be ignored."""
    known = [name.upper() for name in QueueConfig.model_fields]
    for variable in os.environ:
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        rest = variable[len(ENV_PREFIX) :].upper()
        if rest in known or rest in _OTHER_ENV:
            continue
        if rest.lower() in REMOVED:
            raise _removed(rest.lower(), f"the environment variable {variable}")
        close = difflib.get_close_matches(rest, known, n=1, cutoff=0.8)
        if close:
            raise TaskOptionError(
                f"the environment variable {variable} names no setting; did you mean "
                f"{ENV_PREFIX}{close[0]}?"
            )
