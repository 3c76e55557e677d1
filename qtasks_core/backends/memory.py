"""The in-memory backend: one process, no server; for embedding and unit tests.

It keeps the Redis backend's semantics (priority then FIFO, leases, delayed retries,
blocking waits) with a lock and futures, so it serves several event loops at once
(the app's sync edge runs its own loop in a thread).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fnmatch
import heapq
import itertools
import json
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..errors import BackendDataError
from ..history import BUCKET
from ..keys import (
    DEFAULT_QUEUE,
    HISTORY_SPAN,
    HISTORY_TTL,
    PRIORITY_MAX,
    PRIORITY_MIN,
    PRIORITY_SCALE,
    SCHEDULES_NAMESPACE,
)
from ..schemas import ATTEMPT_HISTORY_MAX, StatusChange, TaskStatus
from .base import (
    FINAL_STATUSES,
    AbortResult,
    BackendStats,
    ChangeSink,
    Claimed,
    Renewed,
    RequeueResult,
    Ticked,
)

_KNOWN = frozenset(TaskStatus)

#: How long a task's event stream is kept after its last progress, and after its end
#: when its record is kept without a TTL (``EXPIRE events:<uuid> 86400`` in
#: progress.lua and lib.lua's ``signal_done``).
_EVENTS_TTL = 86400.0

log = logging.getLogger("qtasks.backend")


class _Signal:
    """Wakes coroutines waiting on any loop, from any thread."""

    def __init__(self) -> None:
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def add(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append((loop, future))
        return future

    def join(self, future: asyncio.Future[None]) -> None:
        """Wake ``future`` too (a waiter of several signals)."""
        self._waiters.append((future.get_loop(), future))

    def discard(self, future: asyncio.Future[None]) -> None:
        self._waiters = [(lp, f) for lp, f in self._waiters if f is not future]

    def idle(self) -> bool:
        """Whether no one waits on it (it can be let go)."""
        return not self._waiters

    def fire(self, count: int | None = None) -> None:
        woken = self._waiters if count is None else self._waiters[:count]
        self._waiters = [] if count is None else self._waiters[count:]
        for loop, future in woken:
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _number(value: str | None, default: int) -> int:
    """A count read from a record; not a number reads as ``default`` (Lua's
    ``tonumber(x) or default``)."""
    try:
        return int(float(value or default))
    except ValueError:
        return default


def _only(record: dict[str, str], fields: Sequence[str] | None) -> dict[str, str] | None:
    """``record`` as ``get_many(fields=...)`` gives it: its uuid and those of ``fields``
    it has; ``None`` when it has none of them (as the Redis backend reads it)."""
    if fields is None:
        return record
    picked = {f: record[f] for f in fields if f in record and f != "uuid"}
    return {"uuid": record["uuid"], **picked} if picked else None


def _unfit(record: dict[str, str] | None) -> str | None:
    """What is wrong with a record about to be queued again, or ``None`` (the same
    checks as ``lib.lua``'s ``unfit``)."""
    if record is None:
        return "no task record (deleted, expired or never written)"
    status = record.get("status")
    if status not in _KNOWN:
        return f"the task record has an unknown status: {status or '(none)'}"
    if not record.get("task_name"):
        return "the task record has no task_name"
    try:
        priority = float(record.get("priority", ""))
    except ValueError:
        priority = math.nan
    if not (priority.is_integer() and PRIORITY_MIN <= priority <= PRIORITY_MAX):
        return f"the task record has a bad priority: {record.get('priority') or '(none)'}"
    return None


def _error_type(error: str) -> str:
    """The exception type of an ``error`` field ("Type: message")."""
    kind, colon, _ = error.partition(":")
    return kind.strip() if colon else error


def _finish_reason(status: str, fields: dict[str, str], aborted: bool) -> str:
    """The reason a finish's change names (as finish.lua): a cancel says whether it was
    aborted; an error or a retry, its exception type (``error`` is "Type: message")."""
    if status == "cancel":
        return "aborted" if aborted else "cancelled"
    error = fields.get("error")
    return "" if error is None else _error_type(error)


def _stamp(value: str | None) -> float | None:
    """A time field of a record as a number (``None``: unset or not a number)."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _with_attempt(record: dict[str, str], entry: dict[str, Any]) -> str:
    """The record's ``history`` with ``entry`` added, as JSON (as lib.lua's
    ``with_attempt``): at most ``ATTEMPT_HISTORY_MAX`` entries, the oldest dropped; a
    field that is not a JSON array is replaced."""
    try:
        history = json.loads(record.get("history") or "[]")
    except (ValueError, RecursionError):
        history = []
    if not isinstance(history, list):
        history = []
    entry = {k: v for k, v in entry.items() if v is not None}
    history.append(entry)
    try:
        return json.dumps(history[-ATTEMPT_HISTORY_MAX:], allow_nan=False)
    except ValueError:
        # What it held does not encode again (a number too large for a double).
        return json.dumps([entry])


def _attempt(record: dict[str, str], now: float, reason: str, **more: Any) -> dict[str, Any]:
    """The attempt that just ended, from the record that ran it (a history entry)."""
    return {
        "attempt": _number(record.get("attempts"), 0),
        "worker": record.get("worker") or None,
        "started_at": _stamp(record.get("started_at")),
        "finished_at": round(now, 3),
        "reason": reason,
        **more,
    }


def _stream_id(text: str) -> tuple[int, int]:
    """A stream id (``"ms-seq"``; ``"ms"`` reads as ``ms-0``) as a comparable pair."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _with_first(args: str, first: str) -> str:
    """The JSON array ``args`` with the JSON value ``first`` put in front."""
    return f"[{first}]" if args in ("[]", "") else f"[{first},{args[1:]}"


@dataclass(slots=True)
class _Workflow:
    nodes: dict[str, dict[str, Any]]
    left: dict[str, int] = field(default_factory=dict)
    results: dict[str, dict[int, str]] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)


class MemoryBackend:
    """Tasks in this process's memory; gone when it exits."""

    location = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._records: dict[str, dict[str, str]] = {}
        #: One heap per queue; an entry whose uuid is not in _queued (cancelled, or
        #: claimed by uuid) is skipped when popped.
        self._queues: dict[str, list[tuple[int, str]]] = {}
        #: Queued tasks: uuid -> their queue.
        self._queued: dict[str, str] = {}
        self._running: dict[str, float] = {}
        self._scheduled: dict[str, float] = {}
        self._finals: Counter[str] = Counter()
        self._dead: dict[str, dict[str, str]] = {}
        self._config: dict[str, dict[str, str]] = {}
        self._cursors: dict[str, dict[str, str]] = {}
        self._status: dict[str, tuple[str, float]] = {}
        self._work: dict[str, _Signal] = {}
        self._done: dict[str, _Signal] = {}
        #: The task list's indexes of finished tasks ("final:<status>", "name:<task>"):
        #: (when it ended in ms, uuid), sorted as Redis sorts a zset; and uuid -> when.
        self._index: dict[str, list[tuple[float, str]]] = {}
        self._index_at: dict[str, dict[str, float]] = {}
        #: unique_key -> the task holding it.
        self._unique: dict[str, str] = {}
        #: Limits (as lib.lua keeps them): running tasks of a limited name -> their
        #: lease deadline; tasks waiting for a slot; starts per rate window.
        self._slots: dict[str, dict[str, float]] = {}
        self._parked: dict[str, list[str]] = {}
        self._rates: dict[tuple[str, int], int] = {}
        self._limits: dict[str, dict[str, int]] = {}
        #: Running workflows (as lib.lua's workflow helpers keep them in Redis).
        self._workflows: dict[str, _Workflow] = {}
        #: Each task's events (progress, and its end once watched), and their waiters.
        self._events: dict[str, list[tuple[str, str, str]]] = {}
        self._event_signals: dict[str, _Signal] = {}
        self._event_ids = itertools.count(1)
        #: Changes to the schedules added at run time, and the schedulers waiting.
        self._schedule_version = 0
        self._schedule_changes = _Signal()
        #: Status changes (set_feed). `_feed` is the one check a status write pays while
        #: neither a sink nor a stream is set. The sink's changes wait in `_pending`
        #: until the call that made them ends; the stream (ids as Redis gives them,
        #: kept as comparable pairs) takes each change in the step that made it.
        self._feed = False
        self._sink: ChangeSink | None = None
        self._events_max = 0
        self._pending: list[StatusChange] = []
        self._stream: deque[tuple[tuple[int, int], StatusChange]] = deque(maxlen=0)
        self._stream_last = (0, 0)
        self._stream_signal = _Signal()
        #: The history of finished tasks (history_add): bucket -> figure -> count, and
        #: when each hour of it expires (as one Redis hash per hour would).
        self._history: dict[int, dict[str, int]] = {}
        self._history_until: dict[int, float] = {}
        #: The dashboard's audit log, newest first (the ``audit`` list in Redis).
        self._audit: deque[str] = deque()
        #: What expires, as Redis expires it (see _expire_at): per family, the data its
        #: keys are in, and key -> when it expires. Records ("task"; a task's done token
        #: is a field of its record), event streams, unique keys let go at unique_until,
        #: rate windows, worker heartbeats and the trees of ended workflows.
        self._expiring: dict[str, dict[Any, Any]] = {
            "task": self._records,
            "events": self._events,
            "unique": self._unique,
            "rate": self._rates,
            "worker": self._status,
            "workflow": self._workflows,
        }
        self._until: dict[str, dict[Any, float]] = {kind: {} for kind in self._expiring}
        self._expires: dict[str, float] = self._until["task"]
        #: (when, family, key), the soonest first: the only entries _expire looks at. An
        #: entry may be stale (its key renewed, persisted or deleted since): it is
        #: checked against _until when it falls due.
        self._deadlines: list[tuple[float, str, Any]] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    # -- status changes (as lib.lua's ``changed``) -------------------------------------------

    def set_feed(self, sink: ChangeSink | None, events_max: int) -> None:
        """Send each call's status changes to ``sink`` and keep the last ``events_max``
        on the stream :meth:`status_events` reads; neither: nothing is collected."""
        with self._lock:
            self._sink = sink
            self._events_max = max(0, events_max)
            self._feed = sink is not None or self._events_max > 0
            self._stream = deque(self._stream, maxlen=self._events_max)

    async def audit_add(self, entry: str, keep: int) -> None:
        """Put ``entry`` first on the audit log and keep the newest ``keep``."""
        with self._lock:
            self._audit.appendleft(entry)
            while len(self._audit) > keep:
                self._audit.pop()

    async def audit_read(self, count: int) -> list[str]:
        """The newest ``count`` entries of the audit log, newest first."""
        with self._lock:
            return list(itertools.islice(self._audit, count))

    async def status_events(
        self, after: str, timeout: float, count: int = 100
    ) -> list[StatusChange]:
        """Changes on the stream after the id ``after`` (``"0"``: from the oldest kept),
        at most ``count``; waits up to ``timeout`` seconds for one when there are none."""
        seen = _stream_id(after)
        with self._lock:
            found = self._stream_after(seen, count)
            if found:
                return found
            future = self._stream_signal.add()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, max(timeout, 0.0))
        finally:
            with self._lock:
                self._stream_signal.discard(future)  # timed out or cancelled
        with self._lock:
            return self._stream_after(seen, count)

    def _stream_after(self, seen: tuple[int, int], count: int) -> list[StatusChange]:
        start = bisect.bisect_right(self._stream, seen, key=lambda entry: entry[0])
        return [change for _, change in itertools.islice(self._stream, start, start + count)]

    async def status_events_last(self) -> str:
        """The id of the newest change on the stream (``"0-0"``: none)."""
        with self._lock:
            if not self._stream:
                return "0-0"
            ms, seq = self._stream[-1][0]
            return f"{ms}-{seq}"

    async def history_add(self, buckets: dict[int, dict[str, int]]) -> float:
        with self._lock:
            now = time.time()
            for bucket, figures in buckets.items():
                added = {name: n for name, n in figures.items() if n}
                if not added:
                    continue  # Redis keeps no hash field for nothing
                kept = self._history.setdefault(bucket, {})
                for name, n in added.items():
                    kept[name] = kept.get(name, 0) + n
                # As Redis expires an hour's hash HISTORY_TTL after its last write.
                hour = bucket - bucket % HISTORY_SPAN
                self._history_until[hour] = now + HISTORY_TTL
            expired = [h for h, until in self._history_until.items() if until <= now]
            if expired:
                for hour in expired:
                    del self._history_until[hour]
                self._history = {
                    b: f
                    for b, f in self._history.items()
                    if b - b % HISTORY_SPAN in self._history_until
                }
            return now

    async def history_read(self, since: float, step: int = BUCKET) -> dict[int, dict[str, int]]:
        with self._lock:
            now = time.time()
            out: dict[int, dict[str, int]] = {}
            for bucket, figures in self._history.items():
                if self._history_until.get(bucket - bucket % HISTORY_SPAN, 0) <= now:
                    continue
                at = bucket - bucket % step
                if at >= since:
                    kept = out.setdefault(at, {})
                    for name, n in figures.items():
                        kept[name] = kept.get(name, 0) + n
            return out

    def _note(
        self,
        uuid: str,
        previous: str,
        status: str,
        reason: str,
        now: float,
        attempt: str | None = None,
        worker: str | None = None,
    ) -> None:
        """One status change, under the lock; callers check ``_feed`` first. The name,
        queue, attempt and worker are the record's as just written (unless given)."""
        record = self._records.get(uuid) or {}
        change = StatusChange.from_row(
            (
                uuid,
                record.get("task_name", ""),
                record.get("queue", ""),
                previous,
                status,
                reason,
                str(int(now * 1000)),
                record.get("attempts", "") if attempt is None else attempt,
                record.get("worker", "") if worker is None else worker,
            )
        )
        if self._sink is not None:
            self._pending.append(change)
        if self._events_max > 0:
            # Ids as XADD makes them: the clock's ms, a sequence within one ms, never
            # going back when the clock does.
            ms = int(time.time() * 1000)
            last_ms, seq = self._stream_last
            key = self._stream_last = (ms, 0) if ms > last_ms else (last_ms, seq + 1)
            self._stream.append((key, replace(change, id=f"{key[0]}-{key[1]}")))
            self._stream_signal.fire()

    def _drain(self) -> list[StatusChange]:
        """The changes the ending call noted, for its sink; under the lock (another
        call's changes must not join them)."""
        changes, self._pending = self._pending, []
        return changes

    async def _tell(self, changes: list[StatusChange]) -> None:
        """Hand a call's changes to the sink, outside the lock."""
        sink = self._sink
        if sink is None:
            return
        try:
            await sink(changes)
        except Exception:
            # The changes are made already: a failing sink must not fail the call.
            log.exception("the status change sink failed (%d changes)", len(changes))

    def _waiting_as(self, uuid: str, record: dict[str, str]) -> str:
        """The status a change names for a task leaving its wait: one of status new
        waits delayed, parked over a limit, or in its queue. Before it is unqueued."""
        status = record.get("status", "")
        if status != "new":
            return status
        if uuid in self._scheduled:
            return "delayed"
        if uuid in self._parked.get(record.get("task_name", ""), ()):
            return "parked"
        return "new"

    def _signal(self, queue: str) -> _Signal:
        return self._work.setdefault(queue, _Signal())

    def _push(self, uuid: str, priority: int, queue: str) -> None:
        heap = self._queues.setdefault(queue, [])
        heapq.heappush(heap, (priority * PRIORITY_SCALE + next(self._seq), uuid))
        self._queued[uuid] = queue
        # Every waiter of the queue: one process, and a waiter of several queues
        # must not take a wake-up meant for another's.
        self._signal(queue).fire()

    def _requeue(
        self, uuid: str, now: float, previous: str, why: str, queued_at: float | None = None
    ) -> None:
        """Queue a checked task again (as lib.lua's ``requeue``); its change names
        ``previous`` and ``why``."""
        record = self._records[uuid]
        self._free_slot(uuid, record, now)
        queued = now if queued_at is None else min(queued_at, now)
        record.update(status="new", updated_at=f"{now:.3f}", enqueued_at=f"{queued:.3f}")
        for name in ("claim", "eta", "solo", "started_at", "finished_at"):
            record.pop(name, None)
        if self._feed:
            self._note(uuid, previous, "new", why, now)
        self._push(uuid, int(float(record["priority"])), record.get("queue", DEFAULT_QUEUE))

    def _cancel(
        self,
        uuid: str,
        record: dict[str, str],
        reason: str,
        now: float,
        why: str,
        ttl: float | None = None,
    ) -> None:
        """End a task that never ran ``cancel`` (as lib.lua's ``cancel``): out of its queue
        and of the delayed tasks, its waiters woken, its record kept ``ttl`` seconds
        (else its own ``ttl``). Its change says ``why`` (``reason`` is the record's)."""
        previous = self._waiting_as(uuid, record) if self._feed else ""
        self._queued.pop(uuid, None)  # its heap entry is skipped when popped
        self._scheduled.pop(uuid, None)
        record.update(status="cancel", cancel_reason=reason, updated_at=f"{now:.3f}")
        if self._feed:
            self._note(uuid, previous, "cancel", why, now)
        self._finals["cancel"] += 1
        if ttl is None and record.get("ttl"):
            ttl = float(record["ttl"])
        self._signal_done(uuid, now, ttl)

    def _unpark(self, name: str, count: int, now: float) -> None:
        parked = self._parked.get(name, [])
        while count > 0 and parked:
            uuid = parked.pop(0)
            record = self._records.get(uuid)
            bad = _unfit(record)
            if bad and record is not None:
                self._bury(uuid, f"malformed parked task: {bad}", "", now)
            elif record is not None and record.get("status") == "new":
                self._requeue(uuid, now, "parked", "")
                count -= 1

    def _free_slot(self, uuid: str, record: dict[str, str], now: float) -> None:
        """A limited task left its slot (ended, retrying, handed back, recovered)."""
        if record.pop("slot", None) is None:
            return
        name = record.get("task_name", "")
        if self._slots.get(name, {}).pop(uuid, None) is not None:
            self._unpark(name, 1, now)

    def _expire_at(self, kind: str, key: Any, at: float) -> None:
        """Let ``key`` of the family ``kind`` expire at ``at`` (as EXPIRE: a later call
        moves it, either way). A time that only moves on pushes nothing: the key's
        entry, once due, is pushed back to the new time, so a renewal (a heartbeat, a
        progress) costs no heap entry."""
        until = self._until[kind]
        before = until.get(key)
        until[key] = at
        if before is None or at < before:
            heapq.heappush(self._deadlines, (at, kind, key))

    def _expire(self, now: float | None = None) -> None:
        """Drop what expired by ``now``, as Redis would have: lazily, at the next call
        that could see it, looking only at the entries that fell due (never a scan)."""
        if now is None:
            now = time.time()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, kind, key = heapq.heappop(deadlines)
            until = self._until[kind]
            at = until.get(key)
            if at is None:
                continue  # persisted or deleted since
            if at > now:
                heapq.heappush(deadlines, (at, kind, key))  # renewed since
                continue
            del until[key]
            self._expiring[kind].pop(key, None)

    def _holds(self, uuid: str, token: str) -> dict[str, str] | None:
        """The record, if ``token`` is its current claim."""
        record = self._records.get(uuid)
        return record if record is not None and record.get("claim") == token else None

    def _bury(self, uuid: str, reason: str, raw: str, now: float, why: str = "malformed") -> None:
        """Set a task aside as a dead letter (as lib.lua's ``bury``); its change says
        ``why``."""
        self._dead[uuid] = {"reason": reason, "raw": raw, "at": f"{now:.3f}"}
        self._running.pop(uuid, None)
        record = self._records.get(uuid)
        if record is not None:
            previous = record.get("status", "")
            self._free_slot(uuid, record, now)
            record.update(status="error", traceback=reason, updated_at=f"{now:.3f}")
            record.pop("claim", None)
            if self._feed:
                self._note(uuid, previous, "dead", why, now)
            self._finals["error"] += 1
            # Kept without a TTL: a dead letter stays until it is requeued or deleted.
            self._expires.pop(uuid, None)
            self._signal_done(uuid, now)
        elif self._feed:
            self._note(uuid, "", "dead", why, now)

    async def enqueue(
        self, uuid: str, record: dict[str, str], priority: int
    ) -> float | Literal[False] | str:
        with self._lock:
            now = time.time()
            if self._deadlines and self._deadlines[0][0] <= now:
                self._expire(now)  # an expired record's uuid is free again
            written = self._write(uuid, record, priority, now)
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        if isinstance(written, str):
            return written
        # At the precision the record keeps: the caller's copy reads the same.
        return float(f"{now:.6f}") if written else False

    async def enqueue_many(self, items: list[tuple[str, dict[str, str], int]]) -> int:
        written = 0
        with self._lock:
            now = time.time()
            self._expire(now)
            for uuid, given, priority in items:
                written += self._write(uuid, given, priority, now) is True
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return written

    def _unique_holder(self, key: str, now: float) -> str | None:
        """The task holding ``key`` (as ``lib.lua``'s ``unique_holder``)."""
        holder = self._unique.get(key)
        record = None if holder is None else self._records.get(holder)
        if record is None:
            return None
        if record.get("status") not in FINAL_STATUSES:
            return holder
        return holder if float(record.get("unique_until") or 0) > now else None

    def _write(self, uuid: str, given: dict[str, str], priority: int, now: float) -> bool | str:
        """One new task (as ``lib.lua``'s ``write_task``); under the lock. Returns
        whether it was written, or the uuid of the task that holds its unique key."""
        if uuid in self._records:
            return False
        record = dict(given)
        if "unique_key" in record:
            holder = self._unique_holder(record["unique_key"], now)
            if holder is not None and holder != uuid:
                return holder
            # No expiry while the task lives (SET drops the TTL of a key let go).
            self._unique[record["unique_key"]] = uuid
            self._until["unique"].pop(record["unique_key"], None)
            unique_for = float(record.pop("unique_for", 0) or 0) / 1000
            if unique_for > 0:
                record["unique_until"] = f"{now + unique_for:.3f}"
        due_in = float(record.pop("due_in", 0) or 0) / 1000
        if "expires_in" in record:
            expires = now + float(record.pop("expires_in") or 0) / 1000
            record["expires"] = f"{expires:.3f}"
        # Created on the backend's clock, like every other time of the record.
        record["created_at"] = record["updated_at"] = f"{now:.6f}"
        self._records[uuid] = record
        queue = record.get("queue", DEFAULT_QUEUE)
        if due_in > 0:
            record["eta"] = f"{now + due_in:.3f}"
            self._scheduled[uuid] = now + due_in
            self._signal(queue).fire()  # an idle worker sleeps until it is due
        else:
            record["enqueued_at"] = f"{now:.3f}"
            self._push(uuid, priority, queue)
        if self._feed:
            # Not yet run, by no worker (as write_task says it, whatever the fields).
            self._note(uuid, "", "delayed" if due_in > 0 else "new", "", now, "0", "")
        return True

    async def cursor(self, schedule: str) -> dict[str, str]:
        with self._lock:
            return dict(self._cursors.get(schedule, {}))

    async def tick(
        self,
        schedule: str,
        expected: int | None,
        new_next: int,
        fired: int | None,
        task: tuple[str, dict[str, str], int] | None,
        definition: str | None = None,
    ) -> tuple[Ticked, int]:
        with self._lock:
            now = time.time()
            now_ms = int(now * 1000)
            self._expire(now)
            stored = self._config.get(SCHEDULES_NAMESPACE, {}).get(schedule)
            if definition is not None and stored != definition:
                return "stale", now_ms
            cursor = self._cursors.setdefault(schedule, {})
            if cursor.get("next", "") != ("" if expected is None else str(expected)):
                return "lost", now_ms
            if fired is not None and task is not None:
                if fired > now_ms:
                    return "lost", now_ms
                uuid, record, priority = task
                self._write(uuid, record, priority, now)
                cursor["last"] = str(fired)
            cursor["next"] = str(new_next)
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return "moved", now_ms

    async def save_schedule(self, name: str, definition: str | None) -> bool:
        with self._lock:
            stored = self._config.setdefault(SCHEDULES_NAMESPACE, {})
            had = stored.get(name)
            if definition is None:
                if had is None:
                    return False
                del stored[name]
            elif had == definition:
                return True
            else:
                stored[name] = definition
                self._cursors.get(name, {}).pop("next", None)
            self._schedule_version += 1
            self._schedule_changes.fire()
            return had is not None

    async def wait_schedules(self, after: str, timeout: float) -> str:
        with self._lock:
            if str(self._schedule_version) != after:
                return str(self._schedule_version)
            future = self._schedule_changes.add()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, max(timeout, 0.0))
        finally:
            with self._lock:
                self._schedule_changes.discard(future)  # timed out or cancelled
        with self._lock:
            return str(self._schedule_version)

    async def claim(
        self,
        n: int,
        worker_id: str,
        lease: float,
        max_attempts: int,
        *,
        only: str | None = None,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        turn: int = 0,
        limits: str = "",
        alone: bool = False,
    ) -> Claimed:
        out = Claimed()
        now = time.time()
        with self._lock:
            self._limits = json.loads(limits) if limits else {}
            self._expire(now)
            for uuid, due in [(u, d) for u, d in self._scheduled.items() if d <= now]:
                del self._scheduled[uuid]
                record = self._records.get(uuid)
                bad = _unfit(record)
                if bad:
                    self._bury(uuid, f"malformed delayed task: {bad}", "", now)
                    out.dead.append(uuid)
                elif record is not None and record["status"] in ("retry", "new"):
                    # A retry, or a task sent with a delay (or over a rate limit); queued
                    # as of falling due.
                    previous = "retry" if record["status"] == "retry" else "delayed"
                    self._requeue(uuid, now, previous, "", queued_at=due)
            for uuid in [u for u, dl in self._running.items() if dl <= now]:
                del self._running[uuid]
                record = self._records.get(uuid)
                bad = _unfit(record)
                if bad:
                    self._bury(uuid, f"malformed running task: {bad}", "", now)
                    out.dead.append(uuid)
                elif record is not None and record["status"] == "process":
                    # Poison (see claim.lua): only a death while it ran alone is its own.
                    deaths = _number(record.get("deaths"), 0)
                    if "solo" in record:
                        deaths += 1
                        record["deaths"] = str(deaths)
                    else:
                        record["suspect"] = "1"
                    if max_attempts > 0 and deaths >= max_attempts:
                        reason = (
                            f"set aside after its worker process died {deaths} times while it "
                            "ran alone (it kills its process: os._exit, a crash or the OOM "
                            "killer?)"
                        )
                        self._bury(uuid, reason, "", now, "poison")
                        out.dead.append(uuid)
                    else:
                        # The attempt its worker left is kept (the requeue clears its start).
                        ended = _attempt(record, now, "lease_expired")
                        self._requeue(uuid, now, "process", "lease_expired")
                        record["history"] = _with_attempt(record, ended)
                        out.recovered.append(uuid)
            for name, limit in self._limits.items():
                # Parked tasks with slots free: queued again (see claim.lua).
                if "c" in limit and self._parked.get(name):
                    held = sum(1 for d in self._slots.get(name, {}).values() if d > now)
                    self._unpark(name, limit["c"] - held, now)
            skipped: list[tuple[str, int, str]] = []
            if only is not None:
                if self._queued.pop(only, None) is not None:  # its heap entry is skipped
                    self._take(only, worker_id, lease, now, out, None)
            else:
                # One task from each queue in turn, starting with queues[turn]: as the
                # Lua claim does.
                served = list(queues) or [DEFAULT_QUEUE]
                first = turn % len(served)
                live = served[first:] + served[:first]
                isolated = False  # a suspect was claimed alone: nothing joins it
                while len(out.tasks) < n and live and not isolated:
                    for name in list(live):
                        if len(out.tasks) >= n or isolated:
                            break
                        popped = self._pop(name)
                        if popped is None:
                            live.remove(name)
                            continue
                        score, uuid = popped
                        self._take(
                            uuid, worker_id, lease, now, out, skipped, alone and not out.tasks,
                            place=(name, score),
                        )  # fmt: skip
                        isolated = len(out.tasks) == 1 and out.tasks[0]["solo"] == "1"
            for name, score, uuid in skipped:
                # Back where it was, with its place in the queue (as claim.lua does).
                heapq.heappush(self._queues.setdefault(name, []), (score, uuid))
                self._queued[uuid] = name
                self._signal(name).fire()
            if self._scheduled:
                out.next_due = max(0.0, min(self._scheduled.values()) - now)
            if self._running:
                out.next_lease_end = max(0.0, min(self._running.values()) - now)
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return out

    def _pop(self, queue: str) -> tuple[int, str] | None:
        """The first entry of ``queue`` (its score and uuid), taken out of it."""
        heap = self._queues.get(queue)
        while heap:
            score, uuid = heapq.heappop(heap)
            if self._queued.get(uuid) == queue:
                del self._queued[uuid]
                return score, uuid
        return None

    def _take(
        self,
        uuid: str,
        worker_id: str,
        lease: float,
        now: float,
        out: Claimed,
        skipped: list[tuple[str, int, str]] | None,
        alone: bool = False,
        place: tuple[str, int] = ("", 0),
    ) -> None:
        """Claim the popped task ``uuid`` into ``out``; a suspect goes into ``skipped``
        with its ``place`` (queue and score) unless this claim can run it ``alone``
        (``skipped`` None: eager mode, no isolation)."""
        record = self._records.get(uuid)
        bad = _unfit(record)
        if bad:
            raw = json.dumps(record)[:2000] if record is not None else ""
            self._bury(uuid, f"malformed message: {bad}", raw, now)
            out.dead.append(uuid)
            return
        assert record is not None
        if record["status"] != "new":
            return  # cancelled or finished meanwhile: not to be run
        try:
            expired = float(record.get("expires") or math.inf) <= now
        except ValueError:
            expired = False
        if expired:
            self._cancel(uuid, record, "expired", now, "expired")
            return
        if "abort" in record:
            # Aborted while it ran, then handed back or recovered: it does not start again.
            self._cancel(uuid, record, record["abort"], now, "aborted")
            return
        solo = False
        if "suspect" in record and skipped is not None:
            if not alone:
                skipped.append((*place, uuid))
                out.suspects = True
                return
            solo = True
        name = record["task_name"]
        limit = self._limits.get(name)
        if limit:
            slots = self._slots.setdefault(name, {})
            if "c" in limit:
                freed = []
                for held, deadline in list(slots.items()):
                    if deadline > now:
                        continue
                    lease_end = self._running.get(held)
                    if lease_end is not None and lease_end > now:
                        slots[held] = lease_end  # renewed after an outage: still held
                    else:
                        del slots[held]  # a killed worker's slot: its lease ran out
                        freed.append(held)
                self._unpark(name, len(freed), now)
                if len(slots) >= limit["c"]:
                    self._parked.setdefault(name, []).append(uuid)
                    if self._feed:
                        self._note(uuid, "new", "parked", "concurrency_limit", now)
                    return
            if "r" in limit:
                window = int(now * 1000) // limit["p"]
                key = (name, window)
                used = self._rates[key] = self._rates.get(key, 0) + 1
                if used == 1:
                    # A window's count expires two windows on (claim.lua's PEXPIRE).
                    self._expire_at("rate", key, now + limit["p"] * 2 / 1000)
                if used > limit["r"]:
                    self._scheduled[uuid] = (window + 1) * limit["p"] / 1000
                    if self._feed:
                        self._note(uuid, "new", "delayed", "rate_limit", now)
                    return
            if "c" in limit:
                slots[uuid] = now + lease
                record["slot"] = "1"
        attempts = _number(record.get("attempts"), 0) + 1
        token = str(next(self._seq))
        record.update(
            status="process",
            worker=worker_id,
            attempts=str(attempts),
            claim=token,
            updated_at=f"{now:.3f}",
            started_at=f"{now:.3f}",
            finished_at="",
        )
        if solo:
            record["solo"] = "1"
        self._running[uuid] = now + lease
        if self._feed:
            self._note(uuid, "new", "process", "", now)
        out.tasks.append(
            {
                "uuid": uuid,
                "task_name": record["task_name"],
                "priority": record["priority"],
                "args": record.get("args", "[]"),
                "kwargs": record.get("kwargs", "{}"),
                "created_at": record.get("created_at", "0"),
                "attempts": str(attempts),
                "extra": record.get("extra", "{}"),
                "retry": record.get("retry", ""),
                "queue": record.get("queue", ""),
                "token": token,
                "solo": "1" if solo else "",
            }
        )

    async def wake(self, worker_id: str) -> None:
        with self._lock:
            for signal in self._work.values():
                signal.fire()

    async def wait_for_work(
        self, timeout: float, worker_id: str = "", queues: Sequence[str] = (DEFAULT_QUEUE,)
    ) -> None:
        served = list(queues) or [DEFAULT_QUEUE]
        with self._lock:
            if any(q in served for q in self._queued.values()):
                return
            # One future, woken by whichever of the queues gets work first.
            future = self._signal(served[0]).add()
            for name in served[1:]:
                self._signal(name).join(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                for name in served:
                    self._signal(name).discard(future)

    async def extend(self, claims: dict[str, str], lease: float) -> Renewed:
        deadline = time.time() + lease
        renewed = Renewed()
        with self._lock:
            for uuid, token in claims.items():
                record = self._holds(uuid, token)
                if record is None:
                    renewed.lost.append(uuid)
                elif uuid in self._running:
                    self._running[uuid] = deadline
                    if "slot" in record:
                        self._slots.setdefault(record["task_name"], {})[uuid] = deadline
                    if "abort" in record:
                        renewed.aborted[uuid] = record["abort"]
        return renewed

    async def abort(self, uuid: str, reason: str, ttl: float | None) -> AbortResult:
        with self._lock:
            self._expire()
            record = self._records.get(uuid)
            if record is None:
                return "unknown"
            status = record.get("status")
            result: AbortResult = "ended"
            if status in ("new", "retry"):
                self._cancel(uuid, record, reason, time.time(), "aborted", ttl)
                result = "cancelled"
            elif status == "process" and record.get("workflow") == "1":
                self._wf_abort(uuid, reason)
                result = "cancelled"
            elif status == "process":
                record["abort"] = reason  # no change yet: its finish will say aborted
                result = "aborting"
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return result

    def _signal_done(self, uuid: str, now: float, ttl: float | None = None) -> None:
        """A task reached its final status (as lib.lua's ``signal_done``): its record,
        done token included, expires in ``ttl`` seconds (``None``: kept), its waiters
        wake, the task list indexes it, its unique key is let go (or kept until its
        ``unique_until``), a watched task's end goes onto its event stream, and its
        workflow moves on."""
        record = self._records.get(uuid, {})
        if ttl is not None:
            self._expire_at("task", uuid, now + ttl)
        record["_done"] = "1"
        at = float(record.get("updated_at") or now) * 1000
        # About one end in 32 (by its ms) trims the indexes of the entries that ended
        # more than its ttl before it, as index_final: the reader drops the others whose
        # record is gone.
        horizon = at - ttl * 1000 if ttl is not None and ttl > 0 and round(at) % 32 == 0 else None
        for index in (f"final:{record.get('status')}", f"name:{record.get('task_name')}"):
            self._unindex(index, uuid)  # a requeued dead letter that ended again moves up
            bisect.insort(self._index.setdefault(index, []), (at, uuid))
            self._index_at.setdefault(index, {})[uuid] = at
            if horizon is not None:
                self._trim(index, horizon)
        unique = record.get("unique_key")
        if unique is not None and self._unique.get(unique) == uuid:
            try:
                until = float(record.get("unique_until") or 0)
            except ValueError:
                until = 0.0
            if until > now:
                self._expire_at("unique", unique, until)
            else:
                del self._unique[unique]
                self._until["unique"].pop(unique, None)
        if "watched" in record or "progress" in record:
            visible = {k: v for k, v in record.items() if k != "_done"}
            self._add_event(uuid, "final", json.dumps({"uuid": uuid, **visible}))
            kept = ttl if ttl is not None and ttl > 0 else _EVENTS_TTL
            self._expire_at("events", uuid, now + kept)
        signal = self._done.pop(uuid, None)
        if signal is not None:
            signal.fire()
        if "wfn" in record:
            self._member_ended(uuid, record)

    def _add_event(self, uuid: str, kind: str, data: str) -> None:
        events = self._events.setdefault(uuid, [])
        events.append((f"{next(self._event_ids)}-0", kind, data))
        del events[:-100]
        signal = self._event_signals.pop(uuid, None)
        if signal is not None:
            signal.fire()

    async def progress(self, uuid: str, data: str, token: str = "") -> bool:
        with self._lock:
            now = time.time()
            self._expire(now)
            record = self._records.get(uuid)
            if record is None or record.get("status") != "process":
                return False
            if token and record.get("claim") != token:
                return False  # another claim runs it now (see progress.lua)
            record["progress"] = data
            self._add_event(uuid, "progress", data)
            self._expire_at("events", uuid, now + _EVENTS_TTL)
            return True

    async def watch_start(self, uuid: str) -> str:
        with self._lock:
            self._expire()
            record = self._records.get(uuid)
            if record is None:
                return ""
            status = record.get("status", "")
            if status not in FINAL_STATUSES:
                record["watched"] = "1"
            return status

    async def events(self, uuid: str, after: str, timeout: float) -> list[tuple[str, str, str]]:
        def newer() -> list[tuple[str, str, str]]:
            self._expire()
            seen = int(after.partition("-")[0] or 0)
            return [e for e in self._events.get(uuid, []) if int(e[0].partition("-")[0]) > seen]

        with self._lock:
            found = newer()
            if found:
                return found
            future = self._event_signals.setdefault(uuid, _Signal()).add()
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            with self._lock:
                signal = self._event_signals.get(uuid)
                if signal is not None:
                    signal.discard(future)
                    if signal.idle():
                        del self._event_signals[uuid]
        with self._lock:
            return newer()

    # -- workflows (the same steps as lib.lua's; see there) ------------------------------

    async def workflow_nodes(self, workflow_id: str) -> dict[str, str]:
        with self._lock:
            self._expire()
            state = self._workflows.get(workflow_id)
            if state is None:
                return {}
            return {path: json.dumps(node) for path, node in state.nodes.items()}

    async def start_workflow(
        self, workflow_id: str, record: dict[str, str], nodes: dict[str, str]
    ) -> bool:
        with self._lock:
            now = time.time()
            self._expire(now)
            if workflow_id in self._records:
                return False
            self._records[workflow_id] = dict(record)
            if self._feed:
                self._note(workflow_id, "", "process", "", now)
            self._workflows[workflow_id] = _Workflow(
                {path: json.loads(text) for path, text in nodes.items()}
            )
            self._wf_start(workflow_id, "r", None, now)
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return True

    def _wf_start(self, wf: str, path: str, given: str | None, now: float) -> None:
        state = self._workflows[wf]
        node = state.nodes[path]
        if node["k"] == "t":
            fields = dict(node["f"])
            uuid = f"{wf}:{path}"
            if given is not None and not node.get("i"):
                fields["args"] = _with_first(fields.get("args", "[]"), given)
                size = len(fields["args"].encode()) + len(fields.get("kwargs", "").encode())
                if node.get("m") and size > node["m"]:
                    step = {
                        "wfn": path,
                        "task_name": fields.get("task_name", ""),
                        "status": "error",
                    }
                    why = (
                        f"its arguments with the result before it take {size} bytes as JSON, "
                        f"over max_payload={node['m']}; store large results elsewhere and "
                        "pass a key"
                    )
                    if path == "e":
                        # An ended workflow's on_error: not queued, and said so (as
                        # lib.lua's start_node), never ended twice.
                        own = self._records.get(wf)
                        if own is not None and "traceback" in own:
                            own["traceback"] += f"\non_error was not queued: {why}"
                        return
                    self._wf_fail(wf, uuid, step, why, now)
                    return
            fields.update(wf=wf, wfn=path)
            if self._write(uuid, fields, int(node["p"]), now) is True:
                state.live.add(uuid)
        elif node["k"] == "c":
            self._wf_start(wf, f"{path}.0", given, now)
        elif node["n"] == 0:
            self._wf_node_done(wf, path, "[]", now)
        else:
            state.left[path] = node["n"]
            for i in range(node["n"]):
                self._wf_start(wf, f"{path}.{i}", given, now)

    def _wf_node_done(self, wf: str, path: str, result: str, now: float) -> None:
        if path == "r":
            self._wf_end(wf, {"status": "success", "returning": result}, now, "")
            return
        state = self._workflows[wf]
        parent, _, index = path.rpartition(".")
        i, up = int(index), state.nodes[parent]
        if up["k"] == "c":
            if i + 1 < up["n"]:
                self._wf_start(wf, f"{parent}.{i + 1}", result, now)
            else:
                self._wf_node_done(wf, parent, result, now)
            return
        results = state.results.setdefault(parent, {})
        if i in results:
            return  # this member ended before (a requeued dead letter): counted once
        results[i] = result
        state.left[parent] -= 1
        if state.left[parent] == 0:
            joined = "[" + ",".join(results[j] for j in range(up["n"])) + "]"
            self._wf_node_done(wf, parent, joined, now)

    def _wf_end(self, wf: str, fields: dict[str, str], now: float, why: str) -> None:
        record = self._records[wf]
        record.update(fields, updated_at=f"{now:.3f}")
        if self._feed:
            self._note(wf, "process", fields["status"], why, now)
        self._finals[fields["status"]] += 1
        ttl = float(record["ttl"]) if record.get("ttl") else None
        self._signal_done(wf, now, ttl)
        if ttl is not None:
            # Its tree goes with it (wf_end expires wf:<id> and its live set).
            self._expire_at("workflow", wf, now + ttl)

    def _member_ended(self, uuid: str, record: dict[str, str]) -> None:
        wf = record["wf"]
        state = self._workflows.get(wf)
        workflow = self._records.get(wf)
        if state is None or workflow is None:
            return
        state.live.discard(uuid)
        if workflow.get("status") != "process" or record["wfn"] in state.ended:
            return
        state.ended.add(record["wfn"])  # a member counts once (see lib.lua)
        now = time.time()
        if record.get("status") == "success":
            self._wf_node_done(wf, record["wfn"], record.get("returning", "null"), now)
            return
        why = record.get("traceback") or record.get("cancel_reason") or ""
        slot = self._wf_settling(state, record["wfn"])
        if slot is not None:
            error = {
                "error": why,
                "status": record.get("status", ""),
                "uuid": uuid,
                "task_name": record.get("task_name", ""),
            }
            self._wf_node_done(wf, slot, json.dumps(error), now)
            return
        self._wf_fail(wf, uuid, record, why, now)

    def _wf_fail(self, wf: str, uuid: str, record: dict[str, str], why: str, now: float) -> None:
        """As lib.lua's ``wf_fail``: the workflow ends error naming the member, its
        queued members are cancelled, its on_error step queued."""
        state = self._workflows[wf]
        message = (
            f"workflow member {record['wfn']} ({record.get('task_name')}, {uuid}) ended "
            f"{record.get('status')}" + (f": {why}" if why else "")
        )
        self._wf_end(
            wf,
            {"status": "error", "traceback": message, "failed_member": uuid},
            now,
            "member_failed",
        )
        self._wf_stop_members(state, f"workflow {wf} failed", now, abort_running=False)
        if "e" in state.nodes:
            info = {
                "workflow": wf,
                "member": uuid,
                "task_name": record.get("task_name", ""),
                "status": record.get("status", ""),
                "error": why,
            }
            self._wf_start(wf, "e", json.dumps(info), now)

    def _wf_abort(self, wf: str, reason: str) -> None:
        """As lib.lua's ``wf_abort``; under the lock."""
        now = time.time()
        self._wf_end(wf, {"status": "cancel", "cancel_reason": reason}, now, "aborted")
        state = self._workflows.get(wf)
        if state is not None:
            self._wf_stop_members(state, reason, now, abort_running=True)

    def _wf_stop_members(
        self, state: _Workflow, reason: str, now: float, *, abort_running: bool
    ) -> None:
        """As lib.lua's ``wf_stop_members``: a workflow that ended early cancels its
        members still waiting and, with ``abort_running``, asks those running to stop."""
        for member in sorted(state.live):
            record = self._records.get(member)
            if record is None:
                continue
            if record.get("status") in ("new", "retry"):
                state.live.discard(member)
                why = "aborted" if abort_running else "workflow_failed"
                self._cancel(member, record, reason, now, why)
            elif record.get("status") == "process" and abort_running:
                record["abort"] = reason

    @staticmethod
    def _wf_settling(state: _Workflow, path: str) -> str | None:
        """The child of the nearest settling group above ``path`` that holds it."""
        child = path
        while "." in child:
            parent = child.rpartition(".")[0]
            node = state.nodes[parent]
            if node["k"] == "g" and node.get("s"):
                return child
            child = parent
        return None

    def _unindex(self, index: str, uuid: str) -> None:
        at = self._index_at.get(index, {}).pop(uuid, None)
        if at is not None:
            entries = self._index[index]
            del entries[bisect.bisect_left(entries, (at, uuid))]

    def _trim(self, index: str, horizon: float) -> None:
        """Drop the entries of ``index`` that ended before ``horizon`` (ms), as
        ``ZREMRANGEBYSCORE index -inf (horizon``."""
        entries = self._index[index]
        cut = bisect.bisect_left(entries, (horizon, ""))
        if cut:
            at_of = self._index_at[index]
            for _, uuid in entries[:cut]:
                at_of.pop(uuid, None)
            del entries[:cut]

    async def finish(
        self,
        uuid: str,
        token: str,
        fields: dict[str, str],
        ttl: float | None,
        delay: float | None,
    ) -> bool:
        with self._lock:
            record = self._holds(uuid, token)
            if record is None:
                return False
            if record["status"] != "process":
                return True  # written already by this claim: a repeat changes nothing
            now = time.time()
            aborted = self._feed and "abort" in record
            if delay is not None and fields.get("status") == "retry":
                # The attempt that ended is kept: the next one overwrites these fields.
                error = fields.get("error") or None
                ended = _attempt(
                    record,
                    now,
                    "retry" if error is None else _error_type(error),
                    error=error,
                    delay=round(delay, 3),
                )
                record["history"] = _with_attempt(record, ended)
            record.update(fields)
            record["updated_at"] = record["finished_at"] = f"{now:.3f}"
            self._running.pop(uuid, None)
            if record.pop("solo", None) is not None:
                # A suspect that ran alone and lived: it did not kill its worker.
                record.pop("suspect", None)
                record.pop("deaths", None)
            self._free_slot(uuid, record, now)
            if self._feed:
                # After the slot's parked task is queued again, as finish.lua tells it.
                status = fields.get("status", "")
                reason = _finish_reason(status, fields, aborted)
                self._note(uuid, "process", status, reason, now)
            if delay is not None:
                self._scheduled[uuid] = now + delay
                self._signal(record.get("queue", DEFAULT_QUEUE)).fire()
            else:
                self._finals[fields["status"]] += 1
                self._signal_done(uuid, now, ttl)
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return True

    async def release(self, claims: dict[str, str]) -> list[str]:
        out = []
        now = time.time()
        with self._lock:
            for uuid, token in claims.items():
                record = self._holds(uuid, token)
                if (
                    record is not None
                    and record["status"] == "process"
                    and not _unfit(record)
                    and self._running.pop(uuid, None) is not None
                ):
                    # Handed back unrun: this delivery does not count towards the limit.
                    record["attempts"] = str(max(0, _number(record.get("attempts"), 1) - 1))
                    self._requeue(uuid, now, "process", "released")
                    out.append(uuid)
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return out

    async def get(self, uuid: str) -> dict[str, str] | None:
        with self._lock:
            self._expire()
            record = self._records.get(uuid)
            return None if record is None else self._visible(uuid, record)

    @staticmethod
    def _visible(uuid: str, record: dict[str, str]) -> dict[str, str]:
        """A record as a reader sees it: without the bookkeeping fields."""
        hidden = ("_done", "claim")
        return {"uuid": uuid, **{k: v for k, v in record.items() if k not in hidden}}

    async def index_page(
        self,
        index: str,
        after: tuple[float, str] | None,
        limit: int,
        fields: Sequence[str] | None = None,
    ) -> list[tuple[str, float, dict[str, str] | None]]:
        kind, _, name = index.partition(":")
        with self._lock:
            self._expire()
            if kind in ("final", "name") and name:
                entries = self._index.get(index, [])
                # Newest first; the cursor's place is found by bisection, as in a zset.
                end = len(entries) if after is None else bisect.bisect_left(entries, after)
                rows: Iterable[tuple[str, float]] = (
                    (entries[i][1], entries[i][0]) for i in range(end - 1, -1, -1)
                )
            elif kind == "queue" and name:
                heap = self._queues.get(name, [])
                order = sorted((float(sc), u) for sc, u in heap if self._queued.get(u) == name)
                rows = [(u, sc) for sc, u in order]
            elif index == "workflows":
                started = sorted(
                    ((float(self._records[w].get("created_at") or 0) * 1000, w)
                     for w in self._workflows if w in self._records),
                    reverse=True,
                )  # fmt: skip
                rows = [(w, at) for at, w in started]
                if after is not None:
                    at_cursor = (after[0], after[1])
                    rows = [(w, at) for w, at in rows if (at, w) < at_cursor]
            elif index in ("running", "scheduled"):
                live = self._running if index == "running" else self._scheduled
                rows = [(u, at * 1000) for at, u in sorted((at, u) for u, at in live.items())]
            else:
                raise ValueError(f"unknown task index {index!r}")
            if after is not None and kind not in ("final", "name", "workflows"):
                score, last = after
                rows = [(u, sc) for u, sc in rows if sc > score or (sc == score and u > last)]
            page: list[tuple[str, float, dict[str, str] | None]] = []
            gone = []
            for uuid, score in rows:
                record = self._records.get(uuid)
                if record is None:
                    gone.append(uuid)  # expired or deleted: its entry goes too
                shown = None if record is None else _only(self._visible(uuid, record), fields)
                page.append((uuid, score, shown))
                if len(page) >= limit:
                    break
            if kind in ("final", "name"):
                for uuid in gone:
                    self._unindex(index, uuid)
            return page

    async def get_many(
        self, uuids: Sequence[str], fields: Sequence[str] | None = None
    ) -> list[dict[str, str] | None]:
        with self._lock:
            self._expire()
            records = [(u, self._records.get(u)) for u in uuids]
            return [None if r is None else _only(self._visible(u, r), fields) for u, r in records]

    async def get_all(self, limit: int) -> list[dict[str, str]]:
        with self._lock:
            self._expire()
            uuids = list(self._records)[:limit]
        return [r for u in uuids if (r := await self.get(u)) is not None]

    async def wait_done(
        self, uuid: str, timeout: float, marked: bool = False
    ) -> dict[str, str] | bool:
        # Every waiter here is woken by the end itself: nothing to mark.
        with self._lock:
            self._expire()
            record = self._records.get(uuid)
            if record is not None and record.get("_done"):
                return True
            future = self._done.setdefault(uuid, _Signal()).add()
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            with self._lock:
                signal = self._done.get(uuid)
                if signal is not None:
                    signal.discard(future)
                    if signal.idle():
                        del self._done[uuid]
            return False

    async def update(
        self,
        uuid: str,
        fields: dict[str, str],
        ttl: float | None = None,
        token: str | None = None,
    ) -> bool:
        status = fields.get("status")
        if status is not None and status != "cancel":
            raise BackendDataError(f"only status cancel can be set this way, not {status}")
        with self._lock:
            now = time.time()
            self._expire(now)
            record = self._records.get(uuid)
            if record is None or (token is not None and record.get("claim") != token):
                return False
            previous = ""
            if status == "cancel":
                if record["status"] not in ("new", "retry"):
                    return False
                previous = self._waiting_as(uuid, record) if self._feed else ""
                self._scheduled.pop(uuid, None)
                self._queued.pop(uuid, None)  # the heap entry is skipped when popped
            record.update(fields)
            if "updated_at" not in fields:
                record["updated_at"] = f"{now:.3f}"
            if status == "cancel":
                if self._feed:
                    self._note(uuid, previous, "cancel", "cancelled", now)
                self._finals["cancel"] += 1
                self._signal_done(uuid, now, ttl)
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return True

    async def dead_letter(self, uuid: str, token: str, reason: str, raw: str) -> bool:
        with self._lock:
            record = self._holds(uuid, token)
            if record is None or record["status"] != "process":
                return False
            self._bury(uuid, reason, raw, time.time(), "malformed")
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return True

    async def dead_letters(
        self, after: tuple[float, str] | None = None, limit: int | None = None
    ) -> list[dict[str, str]]:
        with self._lock:
            # Newest first, ties by uuid, as the Redis zset orders them.
            order = sorted(((float(i["at"]), u) for u, i in self._dead.items()), reverse=True)
            if after is not None:
                order = [(at, u) for at, u in order if (at, u) < after]
            return [{**self._dead[u], "uuid": u} for _, u in order[:limit]]

    async def dead_count(self) -> int:
        with self._lock:
            return len(self._dead)

    async def requeue_dead(self, uuid: str) -> RequeueResult:
        with self._lock:
            if uuid not in self._dead:
                return "not-dead"
            if uuid in self._queued or uuid in self._running or uuid in self._scheduled:
                return "not-dead"
            record = self._records.get(uuid)
            if _unfit(record):
                return "no-record"
            assert record is not None
            for name in (
                "_done",
                "traceback",
                "returning",
                "worker",
                "expires",
                "abort",
                "suspect",
                "deaths",
            ):
                record.pop(name, None)
            record["attempts"] = "0"
            self._expires.pop(uuid, None)
            self._requeue(uuid, time.time(), "dead", "requeued")
            del self._dead[uuid]
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return "requeued"

    async def delete_dead(self, uuid: str) -> bool:
        with self._lock:
            if self._dead.pop(uuid, None) is None:
                return False
            if self._feed:
                self._note(uuid, "dead", "deleted", "", time.time())
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return True

    async def migrate_keys(self) -> tuple[int, list[str]]:
        return 0, []  # nothing outlives the process: no keys of an older version

    async def stats(self) -> BackendStats:
        with self._lock:
            queued: dict[int, int] = {}
            per_queue: dict[str, dict[int, int]] = {DEFAULT_QUEUE: {}}
            for name, heap in self._queues.items():
                depth = per_queue.setdefault(name, {})
                for score, uuid in heap:
                    if self._queued.get(uuid) == name:
                        priority = score // PRIORITY_SCALE
                        queued[priority] = queued.get(priority, 0) + 1
                        depth[priority] = depth.get(priority, 0) + 1
            now = time.time()
            self._expire(now)
            workers = []
            for status, until in self._status.values():
                info = json.loads(status)
                if until > now and isinstance(info, dict):
                    workers.append(info)
            live = {
                "new": len(self._queued),
                "process": len(self._running),
                "retry": len(self._scheduled),
            }
            return BackendStats(
                queued=queued,
                queues=per_queue,
                scheduled=len(self._scheduled),
                running=len(self._running),
                counts={k: v for k, v in {**live, **self._finals}.items() if v},
                workers=workers,
                dead=len(self._dead),
            )

    async def flush_all(self) -> None:
        with self._lock:
            self._records.clear()
            self._queues.clear()
            self._queued.clear()
            self._running.clear()
            self._scheduled.clear()
            self._finals.clear()
            self._dead.clear()
            self._config.clear()
            self._cursors.clear()
            self._status.clear()
            self._index.clear()
            self._index_at.clear()
            self._unique.clear()
            self._slots.clear()
            self._parked.clear()
            self._rates.clear()
            self._workflows.clear()
            self._events.clear()
            for until in self._until.values():
                until.clear()
            self._deadlines.clear()
            self._stream.clear()  # the app's keys, the stream among them, are gone
            self._history.clear()
            self._history_until.clear()
            self._audit.clear()

    async def purge_queue(
        self, queue: str, reason: str = "purged", ttl: float | None = None
    ) -> int:
        with self._lock:
            now = time.time()
            purged = [u for u, q in self._queued.items() if q == queue]
            for uuid in purged:
                del self._queued[uuid]
                record = self._records[uuid]
                record.update(status="cancel", cancel_reason=reason, updated_at=f"{now:.3f}")
                if self._feed:
                    self._note(uuid, "new", "cancel", "purged", now)
                self._finals["cancel"] += 1
                own = ttl
                if own is None and record.get("ttl"):
                    own = float(record["ttl"])  # as lib.lua's cancel: the record's own
                self._signal_done(uuid, now, own)
            self._queues.pop(queue, None)
            changes = self._pending and self._drain()
        if changes:
            await self._tell(changes)
        return len(purged)

    async def delete_finished(self) -> int:
        with self._lock:
            finished = [
                u
                for u, r in self._records.items()
                if r.get("status") in FINAL_STATUSES and u not in self._dead
            ]
            for uuid in finished:
                del self._records[uuid]
                self._expires.pop(uuid, None)
            return len(finished)

    async def config_set(self, name: str, key: str, value: str) -> None:
        with self._lock:
            self._config.setdefault(name, {})[key] = value

    async def config_get(self, name: str, key: str) -> str | None:
        with self._lock:
            return self._config.get(name, {}).get(key)

    async def config_delete(self, name: str, key: str) -> bool:
        with self._lock:
            return self._config.get(name, {}).pop(key, None) is not None

    async def config_get_all(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._config.get(name, {}))

    async def config_get_match(self, name: str, pattern: str) -> dict[str, str]:
        with self._lock:
            items = self._config.get(name, {}).items()
            return {k: v for k, v in items if fnmatch.fnmatchcase(k, pattern)}

    async def set_status(self, worker_id: str, status: str, ttl: float) -> None:
        with self._lock:
            until = time.time() + ttl
            self._status[worker_id] = (status, until)
            # The heartbeat key's PX: a worker that stops beating is gone from the stats.
            self._expire_at("worker", worker_id, until)

    async def clear_status(self, worker_id: str) -> None:
        with self._lock:
            self._status.pop(worker_id, None)
            self._until["worker"].pop(worker_id, None)
