"""The in-memory backend: one process, no server; for embedding and unit tests.

It keeps the Redis backend's semantics (priority then FIFO, leases, delayed retries,
blocking waits) with a lock and futures, so it serves several event loops at once
(the app's sync edge runs its own loop in a thread).
"""

from __future__ import annotations

import asyncio
import fnmatch
import heapq
import itertools
import json
import threading
import time
from collections import Counter

from ..keys import PRIORITY_SCALE
from .base import BackendStats, Claimed

_FINAL = ("success", "error", "cancel")


class _Signal:
    """Wakes coroutines waiting on any loop, from any thread."""

    def __init__(self) -> None:
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def add(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append((loop, future))
        return future

    def discard(self, future: asyncio.Future[None]) -> None:
        self._waiters = [(lp, f) for lp, f in self._waiters if f is not future]

    def fire(self, count: int | None = None) -> None:
        woken = self._waiters if count is None else self._waiters[:count]
        self._waiters = [] if count is None else self._waiters[count:]
        for loop, future in woken:
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class MemoryBackend:
    """Tasks in this process's memory; gone when it exits."""

    location = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._records: dict[str, dict[str, str]] = {}
        self._expires: dict[str, float] = {}
        self._queue: list[tuple[int, str]] = []
        self._queued: set[str] = set()
        self._running: dict[str, float] = {}
        self._scheduled: dict[str, float] = {}
        self._counts: Counter[str] = Counter()
        self._dead: dict[str, dict[str, str]] = {}
        self._config: dict[str, dict[str, str]] = {}
        self._status: dict[str, tuple[str, float]] = {}
        self._work = _Signal()
        self._done: dict[str, _Signal] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    def _push(self, uuid: str, priority: int) -> None:
        heapq.heappush(self._queue, (priority * PRIORITY_SCALE + next(self._seq), uuid))
        self._queued.add(uuid)

    def _requeue(self, uuid: str, from_status: str) -> None:
        record = self._records[uuid]
        record.update(status="new", updated_at=f"{time.time():.3f}")
        self._counts[from_status] -= 1
        self._counts["new"] += 1
        self._push(uuid, int(record["priority"]))

    def _expire(self) -> None:
        now = time.time()
        for uuid in [u for u, at in self._expires.items() if at <= now]:
            self._records.pop(uuid, None)
            self._expires.pop(uuid, None)

    async def enqueue(self, uuid: str, record: dict[str, str], priority: int) -> None:
        with self._lock:
            self._records[uuid] = dict(record)
            self._counts["new"] += 1
            self._push(uuid, priority)
        self._work.fire(1)

    async def enqueue_many(self, items: list[tuple[str, dict[str, str], int]]) -> None:
        for uuid, record, priority in items:
            await self.enqueue(uuid, record, priority)

    async def claim(self, n: int, worker_id: str, lease: float, max_attempts: int) -> Claimed:
        out = Claimed()
        now = time.time()
        with self._lock:
            self._expire()
            for uuid in [u for u, due in self._scheduled.items() if due <= now]:
                del self._scheduled[uuid]
                if uuid in self._records:
                    self._requeue(uuid, "retry")
            for uuid in [u for u, dl in self._running.items() if dl <= now]:
                del self._running[uuid]
                record = self._records.get(uuid)
                if record is None:
                    continue
                if max_attempts > 0 and int(record.get("attempts", 0)) >= max_attempts:
                    reason = (
                        f"set aside after {record['attempts']} deliveries: "
                        "its worker died each time"
                    )
                    record.update(status="error", traceback=reason)
                    self._counts["process"] -= 1
                    self._counts["error"] += 1
                    self._dead[uuid] = {"reason": reason, "at": f"{now:.3f}"}
                    self._signal_done(uuid)
                    out.dead.append(uuid)
                else:
                    self._requeue(uuid, "process")
                    out.recovered.append(uuid)
            while self._queue and len(out.tasks) < n:
                _, uuid = heapq.heappop(self._queue)
                self._queued.discard(uuid)
                record = self._records.get(uuid)
                if record is None or record.get("status") != "new":
                    continue
                attempts = int(record.get("attempts", 0)) + 1
                record.update(
                    status="process",
                    worker=worker_id,
                    attempts=str(attempts),
                    updated_at=f"{now:.3f}",
                )
                self._running[uuid] = now + lease
                self._counts["new"] -= 1
                self._counts["process"] += 1
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
                    }
                )
            if self._scheduled:
                out.next_due = max(0.0, min(self._scheduled.values()) - now)
            if self._running:
                out.next_lease_end = max(0.0, min(self._running.values()) - now)
        return out

    async def wake(self, worker_id: str) -> None:
        self._work.fire()

    async def wait_for_work(self, timeout: float, worker_id: str = "") -> None:
        with self._lock:
            if self._queue:
                return
            future = self._work.add()
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            with self._lock:
                self._work.discard(future)

    async def extend(self, worker_id: str, uuids: list[str], lease: float) -> None:
        deadline = time.time() + lease
        with self._lock:
            for uuid in uuids:
                record = self._records.get(uuid)
                if uuid in self._running and record and record.get("worker") == worker_id:
                    self._running[uuid] = deadline

    def _signal_done(self, uuid: str) -> None:
        self._records.get(uuid, {})["_done"] = "1"
        signal = self._done.pop(uuid, None)
        if signal is not None:
            signal.fire()

    async def finish(
        self, uuid: str, fields: dict[str, str], ttl: float | None, delay: float | None
    ) -> None:
        with self._lock:
            record = self._records.get(uuid)
            if record is None:
                return
            self._counts[record["status"]] -= 1
            self._counts[fields["status"]] += 1
            record.update(fields)
            self._running.pop(uuid, None)
            if delay is not None:
                self._scheduled[uuid] = time.time() + delay
            else:
                if ttl is not None:
                    self._expires[uuid] = time.time() + ttl
                self._signal_done(uuid)
        if delay is not None:
            self._work.fire()

    async def release(self, uuids: list[str], worker_id: str = "") -> list[str]:
        out = []
        with self._lock:
            for uuid in uuids:
                record = self._records.get(uuid)
                if record and record.get("worker") == worker_id and self._running.pop(uuid, None):
                    record["attempts"] = str(int(record.get("attempts", 1)) - 1)
                    self._requeue(uuid, "process")
                    out.append(uuid)
        self._work.fire()
        return out

    async def get(self, uuid: str) -> dict[str, str] | None:
        with self._lock:
            self._expire()
            record = self._records.get(uuid)
            if record is None:
                return None
            return {"uuid": uuid, **{k: v for k, v in record.items() if k != "_done"}}

    async def get_all(self, limit: int) -> list[dict[str, str]]:
        with self._lock:
            self._expire()
            uuids = list(self._records)[:limit]
        return [r for u in uuids if (r := await self.get(u)) is not None]

    async def wait_done(self, uuid: str, timeout: float) -> dict[str, str] | bool:
        with self._lock:
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
            return False

    async def update(self, uuid: str, fields: dict[str, str], ttl: float | None = None) -> bool:
        with self._lock:
            record = self._records.get(uuid)
            if record is None:
                return False
            prev, status = record["status"], fields.get("status")
            if status == "cancel":
                if prev not in ("new", "retry"):
                    return False
                self._scheduled.pop(uuid, None)
                self._queued.discard(uuid)  # the heap entry is skipped when popped
            record.update(fields)
            if status and status != prev:
                self._counts[prev] -= 1
                self._counts[status] += 1
                if status in _FINAL:
                    if ttl is not None:
                        self._expires[uuid] = time.time() + ttl
                    self._signal_done(uuid)
            return True

    async def dead_letter(self, uuid: str, reason: str, raw: str) -> None:
        with self._lock:
            self._dead[uuid] = {"reason": reason, "raw": raw, "at": f"{time.time():.3f}"}
            self._running.pop(uuid, None)

    async def dead_letters(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"uuid": u, **info} for u, info in self._dead.items()]

    async def requeue_dead(self, uuid: str) -> bool:
        with self._lock:
            record = self._records.get(uuid)
            if record is None or self._dead.pop(uuid, None) is None:
                return False
            record.pop("_done", None)
            record.pop("traceback", None)
            record["attempts"] = "0"
            self._expires.pop(uuid, None)
            self._requeue(uuid, record["status"])
        self._work.fire()
        return True

    async def stats(self) -> BackendStats:
        with self._lock:
            queued: dict[int, int] = {}
            for score, uuid in self._queue:
                if uuid in self._queued:
                    priority = score // PRIORITY_SCALE
                    queued[priority] = queued.get(priority, 0) + 1
            now = time.time()
            workers = [json.loads(s) for s, until in self._status.values() if until > now]
            return BackendStats(
                queued=queued,
                scheduled=len(self._scheduled),
                running=len(self._running),
                counts={k: v for k, v in self._counts.items() if v},
                workers=workers,
                dead=len(self._dead),
            )

    async def flush_all(self) -> None:
        with self._lock:
            self._records.clear()
            self._expires.clear()
            self._queue.clear()
            self._queued.clear()
            self._running.clear()
            self._scheduled.clear()
            self._counts.clear()
            self._dead.clear()
            self._config.clear()
            self._status.clear()

    async def delete_finished(self) -> int:
        with self._lock:
            finished = [u for u, r in self._records.items() if r.get("status") in _FINAL]
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

    async def config_get_all(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._config.get(name, {}))

    async def config_get_match(self, name: str, pattern: str) -> dict[str, str]:
        with self._lock:
            items = self._config.get(name, {}).items()
            return {k: v for k, v in items if fnmatch.fnmatchcase(k, pattern)}

    async def set_status(self, worker_id: str, status: str, ttl: float) -> None:
        with self._lock:
            self._status[worker_id] = (status, time.time() + ttl)

    async def clear_status(self, worker_id: str) -> None:
        with self._lock:
            self._status.pop(worker_id, None)
