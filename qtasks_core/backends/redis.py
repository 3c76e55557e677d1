"""The Redis (or Valkey) backend: the engine every worker on every machine shares."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from pydantic_core import to_json
from redis.asyncio.client import Pipeline
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..keys import PRIORITY_SCALE, Keys
from . import _lua, _resp
from .base import BackendStats, Claimed

log = logging.getLogger("qtasks.backend.redis")

#: A reply slower than this means the connection is dead (redis-py's socket timeout,
#: the lean connections' reply deadline). Blocking commands wait at most MAX_BLOCK,
#: well inside it, and callers loop for longer waits.
SOCKET_TIMEOUT = 30.0
MAX_BLOCK = 20.0

_CLAIM_FIELDS = (
    "uuid",
    "task_name",
    "priority",
    "args",
    "kwargs",
    "created_at",
    "attempts",
    "extra",
    "retry",
)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _Coalescer:
    """Coalesces concurrent calls into one call of ``send(items)``, awaited by each.

    Writes stay awaited per caller (never fire and forget); under load, many tasks'
    enqueues or finishes travel in one round trip. ``send`` gets the items in call
    order and returns nothing; an error fails every caller of that batch.
    """

    __slots__ = ("_pending", "_running", "_send")

    MAX_BATCH = 500

    def __init__(self, send: Callable[[list[Any]], Awaitable[None]]) -> None:
        self._send = send
        self._pending: list[tuple[Any, asyncio.Future[None]]] = []
        self._running = False

    async def __call__(self, item: Any) -> None:
        if not self._running:
            # Nothing in flight: send this one at once (no task, no future), and let
            # calls that arrive meanwhile gather behind it.
            self._running = True
            try:
                await self._send([item])
            finally:
                if self._pending:
                    asyncio.get_running_loop().create_task(self._drain())
                else:
                    self._running = False
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.MAX_BATCH]
                del self._pending[: self.MAX_BATCH]
                try:
                    await self._send([item for item, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._running = False


#: A Lua script, called as ``await script(keys=[...], args=[...])``.
Script = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class _Conn:
    client: aioredis.Redis
    raw: aioredis.Redis
    #: The pipelined connection of the hot scripts, when the URL allows it.
    lean: _resp.RespConnection | None
    #: Connections for the blocking waits of workers and callers, likewise.
    blocking: _resp.BlockingPool | None
    enqueue_script: Script
    enqueue: _Coalescer
    claim: Script
    extend: Script
    finish: _Coalescer
    release: Script
    update: Script
    requeue_dead: Script


class RedisBackend:
    """Tasks in Redis: atomic enqueue and claim, leases, blocking waits, result TTL.

    One client per event loop (redis-py asyncio clients belong to the loop that made
    them), so the same backend serves the app's sync edge and the caller's own loop.
    """

    def __init__(self, url: str, app_name: str, *, max_connections: int | None = None) -> None:
        self.url = url
        self.location = mask_url(url)
        self.keys = Keys.for_app(app_name)
        self._max_connections = max_connections
        self._conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Conn] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop, _Conn] | None = None

    # -- connections -------------------------------------------------------------------

    def _conn(self) -> _Conn:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]  # the hot path: one loop per process, almost always
        conn = self._conns.get(loop)
        if conn is None:
            # Each entry's connections refer to their loop, so the weak keys alone never
            # let go: forget the entries of closed loops (e.g. one asyncio.run() per
            # call in a script), and their sockets go with them.
            for closed in [old for old in self._conns if old.is_closed()]:
                del self._conns[closed]
            client, raw = (
                aioredis.Redis.from_url(
                    self.url,
                    decode_responses=decode,
                    max_connections=self._max_connections,
                    retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
                    retry_on_error=[RedisConnectionError, RedisTimeoutError],
                    health_check_interval=15,
                    socket_timeout=SOCKET_TIMEOUT,
                )
                for decode in (True, False)
            )
            # The scripts every task runs take the lean connection; their replies are
            # not decoded, which the claim needs anyway (see below) and the others ignore.
            lean = (
                _resp.RespConnection(self.url, reply_timeout=SOCKET_TIMEOUT)
                if _resp.supports(self.url)
                else None
            )

            def hot(source: str, fallback: aioredis.Redis) -> Script:
                if lean is not None:
                    return _resp.LeanScript(lean, source)
                return fallback.register_script(source)

            enqueue_script = hot(_lua.ENQUEUE, raw)
            conn = _Conn(
                client,
                raw,
                lean,
                (
                    _resp.BlockingPool(
                        self.url, limit=self._max_connections, reply_timeout=SOCKET_TIMEOUT
                    )
                    if lean is not None
                    else None
                ),
                enqueue_script,
                _Coalescer(self._sender(enqueue_script, hot(_lua.ENQUEUE_ONE, raw))),
                # Claimed data is decoded task by task: one message that is not UTF-8
                # must be set aside alone, not fail the whole batch.
                hot(_lua.CLAIM, raw),
                hot(_lua.EXTEND, raw),
                _Coalescer(self._timed_sender(hot(_lua.FINISH, raw))),
                client.register_script(_lua.RELEASE),
                client.register_script(_lua.UPDATE),
                client.register_script(_lua.REQUEUE_DEAD),
            )
            self._conns[loop] = conn
        self._last = (loop, conn)
        return conn

    @property
    def client(self) -> aioredis.Redis:
        """The client of the running event loop."""
        return self._conn().client

    async def start(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        conn = self._conns.pop(loop, None)
        if self._last is not None and self._last[0] is loop:
            self._last = None
        if conn is not None:
            await conn.client.aclose()
            await conn.raw.aclose()
            if conn.lean is not None:
                await conn.lean.close()
            if conn.blocking is not None:
                await conn.blocking.close()

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    # -- the task flow -----------------------------------------------------------------

    def _sender(self, script: Script, one: Script) -> Callable[[list[Any]], Awaitable[None]]:
        prefix = self.keys.prefix

        async def send(items: list[Any]) -> None:
            if len(items) == 1:
                uuid, priority, record = items[0]
                flat = [item for pair in record.items() for item in pair]
                await one(keys=[], args=[prefix, uuid, priority, *flat])
            else:
                await script(keys=[], args=[prefix, to_json(items)])

        return send

    def _timed_sender(self, script: Script) -> Callable[[list[Any]], Awaitable[None]]:
        prefix = self.keys.prefix

        async def send(items: list[Any]) -> None:
            await script(keys=[], args=[prefix, int(time.time() * 1000), to_json(items)])

        return send

    async def enqueue(self, uuid: str, record: dict[str, str], priority: int) -> None:
        await self._conn().enqueue([uuid, priority, record])

    async def enqueue_many(self, items: list[tuple[str, dict[str, str], int]]) -> None:
        # One script call: all or nothing, in one round trip.
        await self._conn().enqueue_script(
            keys=[], args=[self.keys.prefix, to_json([[u, p, r] for u, r, p in items])]
        )

    async def claim(self, n: int, worker_id: str, lease: float, max_attempts: int) -> Claimed:
        k = self.keys
        now_ms = int(time.time() * 1000)
        raw = await self._conn().claim(
            keys=[k.queue, k.running, k.scheduled, k.wake, k.counts, k.seq, k.dead, k.clock],
            args=[k.prefix, n, now_ms, int(lease * 1000), worker_id, max_attempts],
        )
        rows, recovered, dead, due, lease_end = raw
        out = Claimed(
            recovered=[u.decode() for u in recovered],
            dead=[u.decode(errors="replace") for u in dead],
            next_due=max(0.0, (float(due) - now_ms) / 1000) if due else None,
            next_lease_end=max(0.0, (float(lease_end) - now_ms) / 1000) if lease_end else None,
        )
        for row in rows:
            try:
                out.tasks.append({f: v.decode() for f, v in zip(_CLAIM_FIELDS, row, strict=True)})
            except UnicodeDecodeError as exc:
                uuid = row[0].decode(errors="replace")
                reason = f"malformed message: not UTF-8 ({exc})"
                log.error("task %s set aside: %s", uuid, reason)
                await self.dead_letter(uuid, reason, repr(row)[:2000])
                await self.finish(uuid, {"status": "error", "traceback": reason}, None, None)
                out.dead.append(uuid)
        return out

    async def wait_for_work(self, timeout: float, worker_id: str = "") -> None:
        # BLPOP rounds its timeout to Redis' resolution; 0 would mean "forever".
        keys = [self.keys.wake, self.keys.wake_worker(worker_id)] if worker_id else [self.keys.wake]
        wait = min(max(timeout, 0.01), MAX_BLOCK)
        blocking = self._conn().blocking
        if blocking is not None:
            await blocking.execute("BLPOP", *keys, wait)
        else:
            await self.client.blpop(keys, timeout=wait)

    async def wake(self, worker_id: str) -> None:
        # Cancelling a blocked BLPOP is not reliable with redis-py (it can swallow the
        # cancellation); a stopping worker is woken through its own key instead.
        key = self.keys.wake_worker(worker_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(key, "1")
        pipe.expire(key, 60)
        await pipe.execute()

    async def extend(self, worker_id: str, uuids: list[str], lease: float) -> None:
        now = time.time()
        await self._conn().extend(
            keys=[self.keys.running, self.keys.clock],
            args=[self.keys.prefix, worker_id, int((now + lease) * 1000), int(now * 1000), *uuids],
        )

    async def finish(
        self, uuid: str, fields: dict[str, str], ttl: float | None, delay: float | None
    ) -> None:
        await self._conn().finish(
            [
                uuid,
                fields["status"],
                0 if ttl is None else max(1, int(ttl)),
                0 if delay is None else max(1, int(delay * 1000)),
                fields,
            ]
        )

    async def release(self, uuids: list[str], worker_id: str = "") -> list[str]:
        if not uuids:
            return []
        k = self.keys
        out = await self._conn().release(
            keys=[k.queue, k.running, k.counts, k.seq, k.wake],
            args=[k.prefix, worker_id, f"{time.time():.3f}", *uuids],
        )
        return list(out)

    async def get(self, uuid: str) -> dict[str, str] | None:
        # Read raw: a record holding bytes that are not UTF-8 (a poison message) must
        # still be readable, with the bad bytes replaced.
        raw = cast(dict[bytes, bytes], await self._conn().raw.hgetall(self.keys.task(uuid)))
        if not raw:
            return None
        record = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
        return {"uuid": uuid, **record}

    async def get_all(self, limit: int) -> list[dict[str, str]]:
        client = self.client
        uuids: list[str] = []
        async for key in client.scan_iter(match=self.keys.task("*"), count=500):
            uuids.append(key.rsplit(":", 1)[1])
            if len(uuids) >= limit:
                break
        pipe: Pipeline = client.pipeline(transaction=False)
        for uuid in uuids:
            pipe.hgetall(self.keys.task(uuid))
        records = await pipe.execute()
        return [{"uuid": u, **r} for u, r in zip(uuids, records, strict=True) if r]

    async def wait_done(self, uuid: str, timeout: float) -> dict[str, str] | bool:
        key = self.keys.done(uuid)
        # Rotating the token onto the same list leaves it there for every other waiter.
        wait = min(max(timeout, 0.01), MAX_BLOCK)
        blocking = self._conn().blocking
        if blocking is not None:
            reply = await blocking.execute("BLMOVE", key, key, "LEFT", "RIGHT", wait)
            token = None if reply is None else reply.decode(errors="replace")
        else:
            # Redis >= 6 takes fractional seconds; redis-py's annotation says int.
            token = cast(
                str | None, await self.client.blmove(key, key, cast(int, wait), "LEFT", "RIGHT")
            )
        if token is None:
            return False
        if token.startswith("{"):
            try:
                record = json.loads(token)
            except ValueError:
                return True
            if isinstance(record, dict):
                return {str(k): str(v) for k, v in record.items()}
        return True

    async def update(self, uuid: str, fields: dict[str, str], ttl: float | None = None) -> bool:
        k = self.keys
        flat = [item for pair in fields.items() for item in pair]
        done = await self._conn().update(
            keys=[k.task(uuid), k.queue, k.scheduled, k.counts, k.done(uuid)],
            args=[uuid, "" if ttl is None else max(1, int(ttl)), *flat],
        )
        return bool(done)

    async def dead_letter(self, uuid: str, reason: str, raw: str) -> None:
        k = self.keys
        pipe: Pipeline = self.client.pipeline(transaction=True)
        pipe.zadd(k.dead, {uuid: int(time.time() * 1000)})
        pipe.hset(k.dead_letter(uuid), mapping={"reason": reason, "raw": raw, "at": time.time()})
        pipe.zrem(k.running, uuid)
        await pipe.execute()

    async def dead_letters(self) -> list[dict[str, str]]:
        client = self.client
        uuids = cast(list[str], await client.zrange(self.keys.dead, 0, -1))
        pipe: Pipeline = client.pipeline(transaction=False)
        for uuid in uuids:
            pipe.hgetall(self.keys.dead_letter(uuid))
        infos = cast(list[dict[str, str]], await pipe.execute())
        return [{"uuid": u, **info} for u, info in zip(uuids, infos, strict=True)]

    async def requeue_dead(self, uuid: str) -> bool:
        k = self.keys
        done = await self._conn().requeue_dead(
            keys=[k.task(uuid), k.queue, k.seq, k.wake, k.counts, k.dead],
            args=[k.prefix, uuid, f"{time.time():.3f}"],
        )
        return bool(done)

    # -- inspection and maintenance ----------------------------------------------------

    async def _queued_by_priority(self) -> dict[int, int]:
        """Exact queue lengths per priority, two commands per distinct priority."""
        client = self.client
        queue = self.keys.queue
        queued: dict[int, int] = {}
        first = await client.zrange(queue, 0, 0, withscores=True)
        while first:
            priority = int(float(first[0][1]) // PRIORITY_SCALE)
            low, high = priority * PRIORITY_SCALE, (priority + 1) * PRIORITY_SCALE
            queued[priority] = await client.zcount(queue, low, f"({high}")
            first = await client.zrangebyscore(queue, high, "+inf", start=0, num=1, withscores=True)
        return queued

    async def stats(self) -> BackendStats:
        client = self.client
        k = self.keys
        queued = await self._queued_by_priority()
        pipe: Pipeline = client.pipeline(transaction=False)
        pipe.zcard(k.scheduled)
        pipe.zcard(k.running)
        pipe.hgetall(k.counts)
        pipe.zcard(k.dead)
        scheduled, running, counts, dead = await pipe.execute()
        workers = []
        async for key in client.scan_iter(match=k.worker("*"), count=500):
            raw = await client.get(key)
            if raw:
                workers.append(json.loads(raw))
        return BackendStats(
            queued=queued,
            scheduled=scheduled,
            running=running,
            counts={s: int(n) for s, n in counts.items()},
            workers=workers,
            dead=dead,
        )

    async def flush_all(self) -> None:
        client = self.client
        batch: list[str] = []
        async for key in client.scan_iter(match=self.keys.prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)

    async def delete_finished(self) -> int:
        client = self.client
        deleted = 0
        async for key in client.scan_iter(match=self.keys.task("*"), count=1000):
            status = await client.hget(key, "status")
            if status in ("success", "error", "cancel"):
                uuid = key.rsplit(":", 1)[1]
                await client.unlink(key, self.keys.done(uuid))
                deleted += 1
        return deleted

    # -- global config -------------------------------------------------------------------

    async def config_set(self, name: str, key: str, value: str) -> None:
        await self.client.hset(self.keys.config(name), key, value)

    async def config_get(self, name: str, key: str) -> str | None:
        return cast(str | None, await self.client.hget(self.keys.config(name), key))

    async def config_get_all(self, name: str) -> dict[str, str]:
        return cast(dict[str, str], await self.client.hgetall(self.keys.config(name)))

    async def config_get_match(self, name: str, pattern: str) -> dict[str, str]:
        out: dict[str, str] = {}
        async for key, value in self.client.hscan_iter(self.keys.config(name), match=pattern):
            out[key] = value
        return out

    async def set_status(self, worker_id: str, status: str, ttl: float) -> None:
        await self.client.set(self.keys.worker(worker_id), status, px=int(ttl * 1000))

    async def clear_status(self, worker_id: str) -> None:
        await self.client.delete(self.keys.worker(worker_id))
