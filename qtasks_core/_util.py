"""Small shared helpers: awaiting trigger results, JSON, records."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from inspect import isawaitable
from typing import Any, NoReturn, TypeVar

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_json

from ._validate import lone_surrogate
from .errors import TaskSerializationError
from .schemas import Attempt, Task

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


class _NonFinite(Exception):
    """Raised by :func:`_has_non_finite` on the first NaN or infinity it meets."""


def _refuse_constant(name: str) -> NoReturn:
    raise _NonFinite(name)


def _has_non_finite(data: str) -> bool:
    """Whether JSON from ``to_json`` holds NaN or an infinity (which it writes as the
    non-standard ``NaN`` / ``Infinity`` that strict parsers reject).

    The substring test keeps the common case to a scan of the text (on ``str``: a
    test on ``bytes`` costs several times more); only text that holds those letters,
    perhaps inside a string, is parsed to tell which it is.
    """
    if "NaN" not in data and "Infinity" not in data:
        return False
    try:
        json.loads(data, parse_constant=_refuse_constant)
    except _NonFinite:
        return True
    return False


#: How deep :func:`_find_surrogate` looks: deeper than any argument anyone writes.
_SURROGATE_DEPTH = 64


def _find_surrogate(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Where the first lone surrogate in ``value`` is, for an error message (``None``
    when there is none, or it hides in what is not a str, list, tuple, set or dict).

    Run only once encoding failed, so the common case never walks the value.
    """
    if isinstance(value, str):
        at = lone_surrogate(value)
        if at is None:
            return None
        inside = f" of {path}" if path else ""
        return f"a lone surrogate {value[at]!r} at position {at}{inside}"
    if depth >= _SURROGATE_DEPTH:
        return None
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str) and (at := lone_surrogate(key)) is not None:
                return f"a lone surrogate {key[at]!r} at position {at} of the key {key!r}" + (
                    f" in {path}" if path else ""
                )
        items = value.items()
    elif isinstance(value, list | tuple | set | frozenset):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _find_surrogate(item, f"{path}[{key!r}]", depth + 1)
        if found is not None:
            return found
    return None


def dumps(value: Any, *, what: str = "value") -> str:
    """Strict JSON text for ``value`` (pydantic models, dates and UUIDs included).

    Raises :class:`TaskSerializationError` naming ``what`` when it cannot be encoded
    (a lone surrogate is named with its position) or holds NaN or an infinity;
    nothing is ever pickled.
    """
    try:
        data = to_json(value).decode()
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        if (surrogate := _find_surrogate(value)) is not None:
            raise TaskSerializationError(
                f"{what} holds {surrogate}: it is not valid Unicode and cannot be "
                "stored as UTF-8; pass valid text"
            ) from None
        raise TaskSerializationError(
            f"{what} cannot be serialized to JSON: {exc}. Pass JSON-compatible values "
            "(str, int, float, bool, None, list, dict, pydantic models, datetimes)"
        ) from None
    if _has_non_finite(data):
        raise TaskSerializationError(
            f"{what} holds NaN or an infinity, which JSON cannot represent; "
            "pass None or a string (e.g. 'nan') instead"
        )
    return data


def dumps_call(args: tuple[Any, ...], kwargs: dict[str, Any], task_name: str) -> tuple[str, str]:
    """Strict JSON for a task's arguments; the error names the argument that fails."""
    try:
        encoded_args, encoded_kwargs = to_json(list(args)).decode(), to_json(kwargs).decode()
    except (PydanticSerializationError, TypeError, ValueError):
        pass
    else:
        if not _has_non_finite(encoded_args) and not _has_non_finite(encoded_kwargs):
            return encoded_args, encoded_kwargs
    # Encode one by one, so that the error names the argument that fails.
    for index, value in enumerate(args):
        dumps(value, what=f"argument {index} of task {task_name!r} ({type(value).__name__})")
    for name, value in kwargs.items():
        dumps(value, what=f"argument {name!r} of task {task_name!r} ({type(value).__name__})")
    # Every value encodes alone: the fault is in a name.
    dumps(kwargs, what=f"a keyword argument name of task {task_name!r}")
    raise TaskSerializationError(f"the arguments of task {task_name!r} cannot be serialized")


def loads(raw: str | None, default: Any = None) -> Any:
    """Data read back from the backend: JSON only."""
    if not raw:
        return default
    # A task without arguments or extras (most of them) is read without the parser.
    if raw == "[]":
        return []
    if raw == "{}":
        return {}
    return json.loads(raw)


def task_from_record(record: dict[str, str]) -> Task:
    """The caller's view of a stored record; a malformed field (a poison message set
    aside by a worker) reads as its default and is named in ``extra["malformed"]``."""
    malformed: list[str] = []

    def field(name: str, default: Any, kind: type) -> Any:
        try:
            value = loads(record.get(name), default)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
            malformed.append(name)
            return default
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

    def moment(name: str) -> datetime | None:
        return datetime.fromtimestamp(number(name), tz=UTC) if record.get(name) else None

    retry = record.get("retry")
    extra = field("extra", {}, dict)
    history = _history(field("history", [], list)) if record.get("history") else ()
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
        queue=record.get("queue") or "default",
        eta=moment("eta"),
        expires=moment("expires"),
        enqueued_at=moment("enqueued_at"),
        started_at=moment("started_at"),
        finished_at=moment("finished_at"),
        extra={**extra, "malformed": malformed} if malformed else extra,
        progress=field("progress", None, dict) if record.get("progress") else None,
        failed_member=record.get("failed_member") or None,
        is_workflow=record.get("workflow") == "1",
        workflow=record.get("wf") or None,
        workflow_path=record.get("wfn") or None,
        history=history,
        retried_from=record.get("retried_from") or None,
        retried_as=record.get("retried_as") or None,
    )
    return task


def _history(entries: list[Any]) -> tuple[Attempt, ...]:
    """The attempts of a record's ``history`` (see :class:`Attempt`). An entry that is
    not one (someone wrote the field) is skipped: a task stays readable whatever its
    history holds."""
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        try:
            out.append(Attempt.model_validate(entry))
        except ValidationError:
            continue
    return tuple(out)
