"""Small shared helpers: awaiting trigger results, JSON, records."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from inspect import isawaitable
from typing import Any, TypeVar

from pydantic_core import PydanticSerializationError, to_json

from .errors import TaskSerializationError
from .schemas import Task

T = TypeVar("T")

log = logging.getLogger("qtasks.plugins")


async def fired(value: T | Awaitable[T]) -> T:
    """The result of ``pm.hook.<trigger>(...)``, awaited when an async impl ran."""
    if value is None:  # the common case: no impl replaced anything
        return value
    if isawaitable(value):
        return await value
    return value


async def lifecycle(fire: Callable[[], object], trigger: str) -> None:
    """Fire a start/stop trigger. A plugin failing there is logged (its note names the
    plugin), never fatal: an observer of "started" must not stop a worker."""
    try:
        await fired(fire())
    except Exception:
        log.exception("a plugin failed in trigger %s; going on", trigger)


def dumps(value: Any, *, what: str = "value") -> str:
    """JSON text for ``value`` (pydantic models, dates and UUIDs included).

    Raises :class:`TaskSerializationError` naming ``what`` when it cannot be encoded;
    nothing is ever pickled.
    """
    try:
        return to_json(value).decode()
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise TaskSerializationError(
            f"{what} cannot be serialized to JSON: {exc}. Pass JSON-compatible values "
            "(str, int, float, bool, None, list, dict, pydantic models, datetimes)"
        ) from None


def dumps_call(args: tuple[Any, ...], kwargs: dict[str, Any], task_name: str) -> tuple[str, str]:
    """JSON for a task's arguments; the error names the argument that fails."""
    try:
        return to_json(list(args)).decode(), to_json(kwargs).decode()
    except (PydanticSerializationError, TypeError, ValueError):
        pass
    for index, value in enumerate(args):
        dumps(value, what=f"argument {index} of task {task_name!r} ({type(value).__name__})")
    for name, value in kwargs.items():
        dumps(value, what=f"argument {name!r} of task {task_name!r} ({type(value).__name__})")
    raise TaskSerializationError(f"the arguments of task {task_name!r} cannot be serialized")


def loads(raw: str | None, default: Any = None) -> Any:
    """Data read back from the backend: JSON only."""
    return default if not raw else json.loads(raw)


def task_from_record(record: dict[str, str]) -> Task:
    """The caller's view of a stored record; a malformed field (a poison message set
    aside by a worker) reads as its default and is named in ``extra["malformed"]``."""
    malformed: list[str] = []

    def field(name: str, default: Any, kind: type) -> Any:
        try:
            value = loads(record.get(name), default)
        except ValueError:
            value = default
        if not isinstance(value, kind):
            malformed.append(name)
            return default
        return value

    def number(name: str, default: float = 0) -> float:
        try:
            return float(record.get(name) or default)
        except ValueError:
            malformed.append(name)
            return default

    retry = record.get("retry")
    extra = field("extra", {}, dict)
    task = Task(
        status=record.get("status", "new"),
        uuid=record["uuid"],
        priority=int(number("priority")),
        task_name=record.get("task_name", ""),
        args=tuple(field("args", [], list)),
        kwargs=field("kwargs", {}, dict),
        created_at=datetime.fromtimestamp(number("created_at"), tz=UTC),
        updated_at=datetime.fromtimestamp(number("updated_at"), tz=UTC),
        returning=field("returning", None, object),
        traceback=record.get("traceback") or None,
        attempts=int(number("attempts")),
        retry=int(retry) if retry and retry.isdigit() else None,
        cancel_reason=record.get("cancel_reason") or None,
        worker=record.get("worker") or None,
        extra={**extra, "malformed": malformed} if malformed else extra,
    )
    return task
