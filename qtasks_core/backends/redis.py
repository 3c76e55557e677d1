"""The Redis (or Valkey) backend: the engine every worker on every machine shares."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from pydantic_core import to_json

from ..errors import BackendDataError, BackendPermissionError
from ..history import BUCKET
from ..keys import (
    DEFAULT_QUEUE,
    HISTORY_MINUTES_SPAN,
    HISTORY_SPAN,
    HISTORY_TTL,
    PRIORITY_MAX,
    PRIORITY_MIN,
    PRIORITY_SCALE,
    SCHEDULE_CHANGES_MAX,
    SCHEDULES_NAMESPACE,
    Keys,
    escape_glob,
)
from ..schemas import StatusChange
from . import _lua
from ._errors import mapped, rx
from ._topology import Topology
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

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.asyncio.client import Pipeline

    from ._connect import Links, Script
    from ._resp import BlockingPool

log = logging.getLogger("qtasks.backend.redis")

#: Blocking commands wait at most this (seconds), well inside the reply deadline after
#: which a connection counts as dead (``_connect.SOCKET_TIMEOUT``); callers loop for
#: longer waits.
MAX_BLOCK = 20.0
#: The final statuses, as the functions answer them.
_FINAL: Final = frozenset({b"success", b"error", b"cancel"})
#: Records read by one call of the records function (about 1 ms of the server's time).
RECORDS_PER_CALL: Final = 500
#: Waits shorter than this (seconds) are slept, not blocked on Redis.
SHORT_WAIT = 0.01

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
    "queue",
    "token",
    "solo",
)


#: The least-privilege ACL rule for a QTasks user: its keys and the commands it runs,
#: directly and inside its scripts (``ACL SETUSER qtasks on >PASSWORD <ACL_RULE>``).
ACL_RULE: Final = (
    "~qtasks:* resetchannels -@all +ping +select +info "
    "+fcall +function|load +multi +exec "
    "+time +type +get +set +del +unlink +incr +exists +expire +pexpire +persist +scan "
    "+hset +hsetnx +hget +hmget +hgetall +hincrby +hdel +hexists +hscan "
    "+zadd +zscore +zrange +zrangebyscore +zrank +zrevrank +zcount +zcard +zpopmin +zrem "
    "+zremrangebyscore +renamenx "
    "+rpush +lpush +ltrim +lrange +blpop +blmove +sadd +srem +smembers +xadd +xread +asking "
    "+cluster|slots"
)


#: The fields of an event stream entry, in StatusChange.from_row's order; its time
#: (``at``) is its id's.
_CHANGE_FIELDS: Final = (
    b"uuid", b"task_name", b"queue", b"previous", b"status", b"reason", None, b"attempt",
    b"worker",
)  # fmt: skip


def _change_of(entry_id: bytes | str, values: Any) -> StatusChange:
    """A change read from the event stream: its fields (a dict, or the flat list the
    lean connection reads) and its id."""
    if not isinstance(values, dict):
        values = dict(zip(values[::2], values[1::2], strict=True))
    ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    row = [
        ident.partition("-")[0] if f is None else values.get(f, b"").decode(errors="replace")
        for f in _CHANGE_FIELDS
    ]
    return StatusChange.from_row(row, ident)


def _decoded(raw: dict[bytes, bytes]) -> dict[str, str]:
    """A hash read raw, with bytes that are not UTF-8 replaced (a poison message must
    still be readable)."""
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}


class _Coalescer:
    """Coalesces concurrent calls into one call of ``send(items)``, awaited by each.

    Writes stay awaited per caller (never fire and forget); under load, many tasks'
    enqueues or finishes travel in one round trip. ``send`` gets the items in call
    order and returns one result per item (each caller gets its own), or ``None`` for
    all; an error fails every caller of that batch (the scripts check every item before
    writing, so a bad item is refused alone rather than raising).
    """

    __slots__ = ("_pending", "_running", "_send")

    MAX_BATCH = 500

    def __init__(self, send: Callable[[list[Any]], Awaitable[list[Any] | None]]) -> None:
        self._send = send
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._running = False

    async def __call__(self, item: Any) -> Any:
        if not self._running:
            # Nothing in flight: send this one at once (no task, no future), and let
            # calls that arrive meanwhile gather behind it.
            self._running = True
            try:
                results = await self._send([item])
            finally:
                if self._pending:
                    asyncio.get_running_loop().create_task(self._drain())
                else:
                    self._running = False
            return None if results is None else results[0]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.MAX_BATCH]
                del self._pending[: self.MAX_BATCH]
                try:
                    results = await self._send([item for item, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for i, (_, future) in enumerate(batch):
                    if not future.done():
                        future.set_result(None if results is None else results[i])
        finally:
            self._running = False


class _Fed:
    """A function that may change statuses, called with the backend's changes marker
    (see :meth:`RedisBackend.set_feed`): the changes it reports go to the sink before
    the caller gets the reply, so its triggers have fired when the call returns."""

    __slots__ = ("backend", "script")

    def __init__(self, backend: RedisBackend, script: Script) -> None:
        self.backend = backend
        self.script = script

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Awaitable[Any]:
        marker = self.backend._marker
        if marker is None:
            # No feed: the function's own call, with no coroutine of ours around it
            # (the hot path of every enqueue, claim and finish).
            return self.script(keys=keys, args=args)
        return self._fed(keys, args, marker)

    async def _fed(self, keys: Sequence[Any], args: Sequence[Any], marker: str) -> Any:
        reply = await self.script(keys=keys, args=[*args, marker])
        sink = self.backend._sink
        if marker[9] != "r" or sink is None:
            return reply  # only the stream was asked for: the reply is as it was
        out, rows = reply
        if rows:
            await sink(
                [StatusChange.from_row([v.decode(errors="replace") for v in row]) for row in rows]
            )
        return out


@dataclass(slots=True)
class _Conn:
    """The calls of one event loop: its connections' and the functions' the task flow
    runs, bound once."""

    links: Links
    # The links' own, at hand for the calls.
    client: aioredis.Redis
    raw: aioredis.Redis
    blocking: BlockingPool | None
    enqueue_many: _Fed
    enqueue: _Coalescer
    claim: _Fed
    extend: Script
    finish: _Coalescer
    release: Script
    update: Script
    requeue_dead: Script
    dead: Script
    probe: Script


class RedisBackend:
    """Tasks in Redis: atomic enqueue and claim, leases, blocking waits, result TTL.

    One client per event loop (redis-py asyncio clients belong to the loop that made
    them), so the same backend serves the app's sync edge and the caller's own loop.
    """

    def __init__(
        self,
        url: str,
        app_name: str,
        *,
        max_connections: int | None = None,
        lean: bool | None = None,
    ) -> None:
        """:param lean: run the hot scripts and blocking waits over the lean connection
        (default: whenever the URL allows it); ``False`` keeps redis-py for everything."""
        self.app_name = app_name
        self.keys = Keys.for_app(app_name)
        self._topology = Topology.of_url(
            url, self.keys.prefix, lean=lean, max_connections=max_connections
        )
        self.url = self._topology.url
        self.location = self._topology.location
        self._legacy = Keys.legacy(app_name)
        self._conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Conn] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop, _Conn] | None = None
        self._sink: ChangeSink | None = None
        self._marker: str | None = None
        self.events_max = 0

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
            # The first connection loads redis-py and the transports (``_connect``):
            # importing the backend loads neither.
            from ._connect import open_links

            conn = self._calls(open_links(self._topology))
            self._conns[loop] = conn
        self._last = (loop, conn)
        return conn

    def _calls(self, links: Links) -> _Conn:
        """The calls of the task flow over ``links``, each bound once: the feed of
        status changes, and the batching of concurrent enqueues and finishes."""

        def fed(script: Script) -> _Fed:
            return _Fed(self, script)

        enqueue = fed(links.hot_function(_lua.ENQUEUE))
        return _Conn(
            links,
            links.client,
            links.raw,
            links.blocking,
            enqueue,
            _Coalescer(self._sender(enqueue)),
            fed(links.hot_function(_lua.CLAIM)),
            links.hot_function(_lua.EXTEND),
            _Coalescer(self._finisher(fed(links.hot_function(_lua.FINISH)))),
            fed(links.function(_lua.RELEASE)),
            fed(links.function(_lua.UPDATE)),
            fed(links.function(_lua.REQUEUE_DEAD)),
            fed(links.function(_lua.DEAD)),
            links.function(_lua.PROBE),
        )

    @property
    def client(self) -> aioredis.Redis:
        """The client of the running event loop."""
        return self._conn().client

    def _fed(self, name: str) -> Script:
        """Function ``name`` of the library, through redis-py, reporting its changes."""
        return _Fed(self, self._conn().links.function(name))

    # -- status changes ------------------------------------------------------------------

    def set_feed(self, sink: ChangeSink | None, events_max: int) -> None:
        self._sink = sink
        self.events_max = max(0, events_max)
        self._marker = _lua.changes_marker(sink is not None, self.events_max)

    @mapped("audit_add")
    async def audit_add(self, entry: str, keep: int) -> None:
        key = self.keys.audit
        client = self.client
        for _ in range(2):
            pipe: Pipeline = client.pipeline(transaction=False)
            pipe.lpush(key, entry)
            pipe.ltrim(key, 0, keep - 1)
            pushed = (await pipe.execute(raise_on_error=False))[0]
            if not isinstance(pushed, Exception):
                return
            if not str(pushed).startswith("WRONGTYPE"):
                raise pushed
            # Someone SET the key by hand: the log starts again, with this entry.
            await client.unlink(key)
        raise BackendDataError(
            f"the audit log {key} was written over again while it was replaced: not added",
            command="audit_add",
        )

    @mapped("audit_read")
    async def audit_read(self, count: int) -> list[str]:
        try:
            return cast(list[str], await self.client.lrange(self.keys.audit, 0, count - 1))
        except rx.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                return []  # garbage: the next entry replaces it
            raise

    @mapped("status_events")
    async def status_events(
        self, after: str, timeout: float, count: int = 100
    ) -> list[StatusChange]:
        key = self.keys.changes
        block = max(1, int(min(max(timeout, 0.001), MAX_BLOCK) * 1000))
        blocking = self._conn().blocking
        try:
            if blocking is not None:
                reply = await blocking.execute(
                    "XREAD", "COUNT", count, "BLOCK", block, "STREAMS", key, after
                )
            else:
                reply = await self._conn().raw.xread({key: after}, count=count, block=block)
        except rx.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                return []  # overwritten by hand: the next change writes it anew
            raise
        out: list[StatusChange] = []
        for _stream, entries in reply or []:
            for entry_id, values in entries:
                out.append(_change_of(entry_id, values))
        return out

    @mapped("status_events_last")
    async def status_events_last(self) -> str:
        try:
            last = await self._conn().raw.xrevrange(self.keys.changes, count=1)
        except rx.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                return "0-0"
            raise
        return cast(bytes, last[0][0]).decode() if last else "0-0"

    @mapped("history_add")
    async def history_add(self, buckets: dict[int, dict[str, int]]) -> float:
        # Added up per minute as well, so that an hour is read from 60 buckets, not 360.
        spans: tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]] = ({}, {})
        for bucket, figures in buckets.items():
            minute = bucket - bucket % 60
            tens = spans[0].setdefault(str(bucket - bucket % HISTORY_SPAN), {})
            minutes = spans[1].setdefault(str(bucket - bucket % HISTORY_MINUTES_SPAN), {})
            for name, n in figures.items():
                if n:
                    tens[f"{bucket}:{name}"] = n
                    field = f"{minute}:{name}"
                    minutes[field] = minutes.get(field, 0) + n
        now_ms = await self._conn().links.function(_lua.HISTORY)(
            keys=[self.keys.queue],
            args=[self.keys.prefix, HISTORY_TTL, json.dumps(spans, separators=(",", ":"))],
        )
        return int(now_ms) / 1000

    @mapped("history_read")
    async def history_read(self, since: float, step: int = BUCKET) -> dict[int, dict[str, int]]:
        span, key = (
            (HISTORY_MINUTES_SPAN, self.keys.history_minutes)
            if step == 60
            else (HISTORY_SPAN, self.keys.history)
        )
        first = int(since) - int(since) % span
        # A span ahead of this clock as well: the server's may be ahead of it.
        last = int(time.time()) + span
        pipe: Pipeline = self.client.pipeline(transaction=False)
        for start in range(first, last - last % span + 1, span):
            pipe.hgetall(key(str(start)))
        out: dict[int, dict[str, int]] = {}
        for fields in await pipe.execute(raise_on_error=False):
            if not isinstance(fields, dict):
                continue  # a key of another type: the next history_add replaces it
            # A bucket's fields are all in one hash: grouped by their text first, each
            # bucket's number is read once, not once per figure.
            grouped: dict[str, dict[str, str]] = {}
            for field, value in fields.items():
                bucket, _, name = field.partition(":")
                named = grouped.get(bucket)
                if named is None:
                    named = grouped[bucket] = {}
                named[name] = value
            for bucket, named in grouped.items():
                try:
                    at = int(bucket)
                    if at >= since:
                        out[at] = {name: int(value) for name, value in named.items()}
                except ValueError:
                    continue  # written by hand: not a figure
        return out

    @mapped("start")
    async def start(self) -> None:
        """Connect, and check once that the user may run every command QTasks uses:
        a refused command is named now, not by a script that stops halfway mid-run."""
        conn = self._conn()
        await conn.client.ping()
        if self._topology.standalone:
            conn = await self._detect_cluster(conn)
        old = self._legacy
        # QTasks < 0.2 could not run on a cluster (its keys had no hash tag), and the
        # old keys of one app are in different slots: nothing to look for there.
        if self._topology.cluster is None and await conn.client.exists(
            old.queue, old.running, old.scheduled, old.dead
        ):
            raise BackendDataError(
                f"this Redis holds tasks of app {self.app_name!r} under the key "
                f"prefix of QTasks < 0.2 ({old.prefix}): stop its old workers, then run "
                "`qtasks migrate-keys -A <module>:<app>` to move them to "
                f"{self.keys.prefix} (nothing was written)",
                command="start",
            )
        # The probe loads the function library if the server lacks it (as any call
        # does): not a FUNCTION LOAD first, which Redis refuses when out of memory.
        probe = self.keys.probe
        refused = [c.decode() for c in await conn.probe(keys=[probe], args=[probe])]
        # The commands run outside the scripts (the blocking ones wait 10 ms).
        pipe: Pipeline = conn.client.pipeline(transaction=False)
        pipe.blpop([probe], timeout=0.01)
        pipe.blmove(probe, probe, cast(int, 0.01), "LEFT", "RIGHT")
        pipe.zcount(probe, 0, 1)
        pipe.hscan(probe, 0)
        pipe.scan(0, match=probe, count=1)
        pipe.smembers(probe)
        pipe.execute_command("ASKING")  # refused as a command on a plain server: fine
        pipe.xread({probe: "0"}, count=1)
        pipe.unlink(probe)
        names = (
            "blpop", "blmove", "zcount", "hscan", "scan", "smembers", "asking", "xread",
            "unlink",
        )  # fmt: skip
        for name, reply in zip(names, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, rx.NoPermissionError):
                refused.append(name)
        if refused:
            rules = " ".join(f"+{c}" for c in refused)
            raise BackendPermissionError(
                f"NOPERM: the Redis user of the URL may not run {', '.join(refused)}, which "
                f"QTasks needs: add the ACL rule {rules} (all QTasks needs: {ACL_RULE})",
                code="NOPERM",
                command="start",
                denied=refused[0],
                rule=rules,
            )
        await self._warn_if_evicting(conn)

    async def _warn_if_evicting(self, conn: _Conn) -> None:
        """Warn when the server's ``maxmemory-policy`` lets it evict keys that have no
        TTL: queues, the records of unfinished tasks and workflows are such keys, and
        an evicted one loses tasks or stalls a workflow. A ``volatile-*`` policy evicts
        keys with a TTL only (finished results), which is fine."""
        try:
            reply = await conn.client.config_get("maxmemory-policy")
        except rx.ResponseError as exc:
            # CONFIG refused by an ACL, or disabled by a managed service: the policy is
            # the operator's to know, and no reason to refuse to start.
            log.debug("cannot read the maxmemory-policy of %s: %s", self.location, exc)
            return
        policy = reply.get("maxmemory-policy")
        if not policy or policy == "noeviction" or policy.startswith("volatile-"):
            return
        log.warning(
            "Redis at %s has maxmemory-policy %s: once full, it may evict QTasks' queues, "
            "task records and workflows, losing tasks; run CONFIG SET maxmemory-policy "
            "noeviction (and CONFIG REWRITE), or set maxmemory-policy noeviction in "
            "redis.conf",
            self.location,
            policy,
        )

    async def _detect_cluster(self, conn: _Conn) -> _Conn:
        """A ``redis://`` URL of a cluster node: from now on, connect as to a cluster."""
        cluster = await conn.links.cluster_topology()
        if cluster is None:
            return conn
        self._topology = cluster
        # Start runs before any other call, on one loop: that loop's connections are
        # the only ones yet.
        await self.close()
        self._conns.clear()
        return self._conn()

    @mapped("close")
    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        conn = self._conns.pop(loop, None)
        if self._last is not None and self._last[0] is loop:
            self._last = None
        if conn is not None:
            await conn.links.close()

    @mapped("ping")
    async def ping(self) -> bool:
        return bool(await self.client.ping())

    # -- the task flow -----------------------------------------------------------------

    def _sender(self, fed: _Fed) -> Callable[[list[Any]], Awaitable[list[int | bytes]]]:
        prefix = self.keys.prefix
        # Every call names one key of the app: a cluster routes the call by it (all the
        # app's keys share its slot).
        keys = [self.keys.queue]

        async def send(items: list[Any]) -> list[int | bytes]:
            written: list[int | bytes]
            if len(items) == 1:
                # One task, the common case of a caller adding tasks one at a time: flat
                # arguments spare the script the JSON decoding and table building.
                uuid, priority, record = items[0]
                flat = [item for pair in record.items() for item in pair]
                written = await fed(keys=keys, args=[prefix, uuid, priority, *flat])
            else:
                written = await fed(keys=keys, args=[prefix, to_json(items)])
            # When it was written (ms), 0 there already, or the uuid of the task holding
            # its unique_key.
            return written

        return send

    def _finisher(self, fed: _Fed) -> Callable[[list[Any]], Awaitable[list[bool]]]:
        prefix = self.keys.prefix
        keys = [self.keys.running]

        async def send(items: list[Any]) -> list[bool]:
            codes = await fed(keys=keys, args=[prefix, to_json(items)])
            return [code != 0 for code in codes]

        return send

    @mapped("enqueue")
    async def enqueue(
        self, uuid: str, record: dict[str, str], priority: int
    ) -> float | Literal[False] | str:
        written = await self._conn().enqueue([uuid, priority, record])
        # A task holding the record's unique_key: its uuid (bytes off the wire).
        if isinstance(written, bytes):
            return written.decode(errors="replace")
        return written / 1000 if written else False

    @mapped("enqueue_many")
    async def enqueue_many(self, items: list[tuple[str, dict[str, str], int]]) -> int:
        # One script call: all or nothing, in one round trip.
        written = await self._conn().enqueue_many(
            keys=[self.keys.queue],
            args=[self.keys.prefix, to_json([[u, p, r] for u, r, p in items])],
        )
        return sum(1 for flag in written if flag != 0)

    @mapped("claim")
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
        k = self.keys
        raw = await self._conn().claim(
            keys=[k.queue, k.running, k.scheduled, k.wake, k.dead, k.clock, k.seq],
            args=[
                k.prefix,
                n,
                int(lease * 1000),
                worker_id,
                max_attempts,
                only or "",
                turn,
                limits,
                "1" if alone else "",
                *queues,
            ],
        )
        rows, recovered, dead, due, lease_end, suspects = raw
        out = Claimed(
            recovered=[u.decode(errors="replace") for u in recovered],
            dead=[u.decode(errors="replace") for u in dead],
            next_due=float(due) / 1000 if due else None,
            next_lease_end=float(lease_end) / 1000 if lease_end else None,
            suspects=bool(suspects),
        )
        for row in rows:
            try:
                out.tasks.append({f: v.decode() for f, v in zip(_CLAIM_FIELDS, row, strict=True)})
            except UnicodeDecodeError as exc:
                # Claimed data is decoded task by task: one message that is not UTF-8 is
                # set aside alone, not the whole batch.
                uuid = row[0].decode(errors="replace")
                reason = f"malformed message: not UTF-8 ({exc})"
                log.error("task %s set aside: %s", uuid, reason)
                token = row[_CLAIM_FIELDS.index("token")].decode()
                await self.dead_letter(row[0], token, reason, repr(row)[:2000])
                out.dead.append(uuid)
        return out

    @mapped("wait_for_work")
    async def wait_for_work(
        self, timeout: float, worker_id: str = "", queues: Sequence[str] = (DEFAULT_QUEUE,)
    ) -> None:
        keys = [self.keys.wake_of(q) for q in queues or (DEFAULT_QUEUE,)]
        if worker_id:
            keys.append(self.keys.wake_worker(worker_id))
        if timeout < SHORT_WAIT:
            # A due task moments away: a blocking call would cost more than the wait (its
            # connection is closed when cut short) and make the task late.
            await asyncio.sleep(max(timeout, 0.0))
            return
        wait = min(timeout, MAX_BLOCK)
        blocking = self._conn().blocking
        try:
            if blocking is not None and wait < MAX_BLOCK:
                # Redis ends a blocked command's timeout on its own timer, up to
                # 1/hz (100 ms by default) late: a wait for a due time is timed here
                # instead (the connection of a call cut short is closed, not reused).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await blocking.execute("BLPOP", *keys, wait + 1.0)
            elif blocking is not None:
                await blocking.execute("BLPOP", *keys, wait)
            else:
                await self.client.blpop(keys, timeout=wait)
        except rx.ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            # A wake-up list holds nothing but tokens: one of the wrong type (someone
            # SET it) is replaced rather than stopping the worker.
            log.warning("replacing wake-up key(s) of the wrong type: %s", ", ".join(keys))
            for key in keys:
                if await self.client.type(key) not in ("list", "none"):
                    await self.client.delete(key)

    @mapped("wake")
    async def wake(self, worker_id: str) -> None:
        # Cancelling a blocked BLPOP is not reliable with redis-py (it can swallow the
        # cancellation); a stopping worker is woken through its own key instead.
        key = self.keys.wake_worker(worker_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        pipe.rpush(key, "1")
        pipe.expire(key, 60)
        await pipe.execute()

    @mapped("extend")
    async def extend(self, claims: dict[str, str], lease: float) -> Renewed:
        k = self.keys
        reply = await self._conn().extend(
            keys=[k.running, k.clock],
            args=[k.prefix, int(lease * 1000), *(x for pair in claims.items() for x in pair)],
        )
        renewed = Renewed()
        for item in reply:
            if isinstance(item, list):
                renewed.aborted[item[0].decode(errors="replace")] = item[1].decode(errors="replace")
            else:
                renewed.lost.append(item.decode(errors="replace"))
        return renewed

    @mapped("progress")
    async def progress(self, uuid: str, data: str, token: str = "") -> bool:
        done = await self._conn().links.function(_lua.PROGRESS)(
            keys=[self.keys.queue], args=[self.keys.prefix, uuid, data, token]
        )
        return bool(done == 1)

    @mapped("watch")
    async def watch_start(self, uuid: str) -> str:
        status = await self._conn().links.function(_lua.WATCH)(
            keys=[self.keys.queue], args=[self.keys.prefix, uuid]
        )
        return cast(bytes, status).decode(errors="replace")

    @mapped("events")
    async def events(self, uuid: str, after: str, timeout: float) -> list[tuple[str, str, str]]:
        key = self.keys.events(uuid)
        block = max(1, int(min(max(timeout, 0.001), MAX_BLOCK) * 1000))
        reply = cast(
            list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None,
            await self._conn().raw.xread({key: after}, count=100, block=block),
        )
        out = []
        for _stream, entries in reply or []:
            for entry_id, values in entries:
                out.append(
                    (
                        entry_id.decode(),
                        values.get(b"kind", b"").decode(errors="replace"),
                        values.get(b"data", b"").decode(errors="replace"),
                    )
                )
        return out

    @mapped("abort")
    async def abort(self, uuid: str, reason: str, ttl: float | None) -> AbortResult:
        done = await self._fed(_lua.ABORT)(
            keys=[self.keys.queue],
            args=[self.keys.prefix, uuid, reason, "" if ttl is None else int(ttl)],
        )
        return cast(AbortResult, done.decode())

    @mapped("finish")
    async def finish(
        self,
        uuid: str,
        token: str,
        fields: dict[str, str],
        ttl: float | None,
        delay: float | None,
    ) -> bool:
        written: bool = await self._conn().finish(
            [
                uuid,
                token,
                fields["status"],
                0 if ttl is None else max(1, int(ttl)),
                0 if delay is None else max(1, int(delay * 1000)),
                fields,
            ]
        )
        return written

    @mapped("release")
    async def release(self, claims: dict[str, str]) -> list[str]:
        if not claims:
            return []
        out = await self._conn().release(
            keys=[self.keys.running],
            args=[self.keys.prefix, *(x for pair in claims.items() for x in pair)],
        )
        return [u.decode(errors="replace") for u in out]

    @mapped("get")
    async def get(self, uuid: str) -> dict[str, str] | None:
        # Read raw: a record holding bytes that are not UTF-8 (a poison message) must
        # still be readable, with the bad bytes replaced.
        try:
            raw = cast(dict[bytes, bytes], await self._conn().raw.hgetall(self.keys.task(uuid)))
        except rx.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                return None  # not a record of ours: nothing a caller could read
            raise
        if not raw:
            return None
        record = _decoded(raw)
        record.pop("claim", None)
        return {"uuid": uuid, **record}

    @mapped("get_many")
    async def get_many(
        self, uuids: Sequence[str], fields: Sequence[str] | None = None
    ) -> list[dict[str, str] | None]:
        if not uuids:
            return []
        records = self._conn().links.function(_lua.RECORDS)
        wanted = [f for f in fields if f != "claim"] if fields is not None else []
        if fields is not None and not wanted:
            # Nothing a reader may see was asked (the function reads a whole record
            # for no fields): each record has none of them, so counts as none.
            return [None] * len(uuids)
        out: list[dict[str, str] | None] = []
        # A bounded number per call: the server runs nothing else meanwhile.
        for start in range(0, len(uuids), RECORDS_PER_CALL):
            chunk = uuids[start : start + RECORDS_PER_CALL]
            # A flat field/value array per record, or its values (None: no such field).
            replies = cast(
                list[list[Any]],
                await records(
                    keys=[self.keys.queue],
                    args=[self.keys.prefix, len(wanted), *wanted, *chunk],
                ),
            )
            for uuid, flat in zip(chunk, replies, strict=True):
                if not flat:
                    out.append(None)  # none, or not a hash of ours
                    continue
                if fields is not None:
                    # Only what was asked, and only the fields the record has.
                    out.append(
                        {"uuid": uuid}
                        | {
                            f: v.decode(errors="replace")
                            for f, v in zip(wanted, flat, strict=True)
                            if v is not None
                        }
                    )
                    continue
                pairs = iter(flat)
                record = {
                    k.decode(errors="replace"): v.decode(errors="replace")
                    for k, v in zip(pairs, pairs, strict=True)
                }
                record.pop("claim", None)
                out.append({"uuid": uuid, **record})
        return out

    @mapped("get_all")
    async def get_all(self, limit: int) -> list[dict[str, str]]:
        uuids: list[str] = []
        async for key in self._conn().raw.scan_iter(
            match=escape_glob(self.keys.task("")) + "*", count=500, _type="hash"
        ):
            # The uuid is what follows the prefix (a workflow member's holds colons).
            uuids.append(key[len(self.keys.task("").encode()) :].decode(errors="replace"))
            if len(uuids) >= limit:
                break
        records = [await self.get(uuid) for uuid in uuids]
        return [r for r in records if r]

    @mapped("wait_done")
    async def wait_done(
        self, uuid: str, timeout: float, marked: bool = False
    ) -> dict[str, str] | bool:
        if not marked:
            # The engine pushes the done token only for a task marked as waited for.
            status = await self._conn().links.function(_lua.WATCH)(
                keys=[self.keys.queue], args=[self.keys.prefix, uuid, "waited"]
            )
            if cast(bytes, status) in _FINAL:
                return True  # ended before the mark: the record says how
        key = self.keys.done(uuid)
        # Rotating the token onto the same list leaves it there for every other waiter.
        wait = min(max(timeout, 0.01), MAX_BLOCK)
        blocking = self._conn().blocking
        try:
            if blocking is not None:
                reply = await blocking.execute("BLMOVE", key, key, "LEFT", "RIGHT", wait)
                token = None if reply is None else reply.decode(errors="replace")
            else:
                # Redis >= 6 takes fractional seconds; redis-py's annotation says int.
                token = cast(
                    str | None,
                    await self.client.blmove(key, key, cast(int, wait), "LEFT", "RIGHT"),
                )
        except rx.ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            # Not a token list (someone SET it): read the record instead of waiting.
            await asyncio.sleep(min(wait, 0.5))
            return True
        if token is None:
            return False
        if token.startswith("{"):
            try:
                record = json.loads(token)
            except (ValueError, RecursionError):
                return True
            if isinstance(record, dict):
                record.pop("claim", None)
                return {str(k): str(v) for k, v in record.items()}
        return True

    @mapped("update")
    async def update(
        self,
        uuid: str,
        fields: dict[str, str],
        ttl: float | None = None,
        token: str | None = None,
    ) -> bool:
        flat = [item for pair in fields.items() for item in pair]
        done = await self._conn().update(
            keys=[self.keys.task(uuid)],
            args=[
                self.keys.prefix,
                uuid,
                "" if ttl is None else max(1, int(ttl)),
                token or "",
                *flat,
            ],
        )
        return bool(done)

    @mapped("dead_letter")
    async def dead_letter(self, uuid: str | bytes, token: str, reason: str, raw: str) -> bool:
        done = await self._conn().dead(
            keys=[self.keys.running], args=[self.keys.prefix, uuid, token, reason, raw]
        )
        return bool(done)

    @mapped("dead_letters")
    async def dead_letters(
        self, after: tuple[float, str] | None = None, limit: int | None = None
    ) -> list[dict[str, str]]:
        client = self._conn().raw
        key = self.keys.dead
        # Newest first (ties by uuid, descending); a page starts after the cursor's own
        # entry, found by its rank, or, when it is gone since (requeued, deleted), by
        # its score: the rest of its millisecond, then the older ones.
        Rows = list[tuple[bytes, float]]
        try:
            rank: int | None = None
            if after is not None:
                found = await client.zrevrank(key, after[1])
                rank = found if isinstance(found, int) else None
            if after is None or rank is not None:
                start = 0 if rank is None else rank + 1
                stop = -1 if limit is None else start + limit - 1
                rows = cast(Rows, await client.zrange(key, start, stop, desc=True, withscores=True))
            else:
                bound, last = round(after[0] * 1000), after[1].encode()
                same = await client.zrange(
                    key, bound, bound, desc=True, byscore=True, withscores=True
                )
                older = await client.zrange(
                    key, f"({bound}", "-inf", desc=True, byscore=True,
                    offset=None if limit is None else 0, num=limit, withscores=True,
                )  # fmt: skip
                rows = [r for r in cast(Rows, same) if r[0] < last] + cast(Rows, older)
        except rx.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                return []  # an index overwritten by hand lists nothing
            raise
        entries = [(u, float(sc)) for u, sc in rows][:limit]
        # One round trip for the page's records, however long the page.
        pipe: Pipeline = client.pipeline(transaction=False)
        for raw_uuid, _ in entries:
            pipe.hgetall(self.keys.dead_letter("").encode() + raw_uuid)
        infos = await pipe.execute(raise_on_error=False) if entries else []
        out = []
        for (raw_uuid, score), info in zip(entries, infos, strict=True):
            fields = _decoded(info) if isinstance(info, dict) else {}
            # ``at`` from the index, which orders the pages (the hash holds the same).
            uuid = raw_uuid.decode(errors="replace")
            out.append({**fields, "at": f"{score / 1000:.3f}", "uuid": uuid})
        return out

    @mapped("dead_count")
    async def dead_count(self) -> int:
        try:
            return int(await self.client.zcard(self.keys.dead))
        except rx.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                return 0
            raise

    @mapped("requeue_dead")
    async def requeue_dead(self, uuid: str) -> RequeueResult:
        code = await self._conn().requeue_dead(keys=[self.keys.dead], args=[self.keys.prefix, uuid])
        return "requeued" if code == 1 else "no-record" if code == -1 else "not-dead"

    @mapped("delete_dead")
    async def delete_dead(self, uuid: str) -> bool:
        removed = await self._fed(_lua.DELETE_DEAD)(
            keys=[self.keys.dead], args=[self.keys.prefix, uuid]
        )
        return bool(removed == 1)

    @mapped("migrate_keys")
    async def migrate_keys(self) -> tuple[int, list[str]]:
        """Move the app's keys from the prefix of QTasks < 0.2 (``qtasks:<app>:``) to
        its hash-tagged one; returns how many moved, and the keys left where they are
        because the new name was taken."""
        raw = self._conn().raw
        old, new = self._legacy.prefix.encode(), self.keys.prefix.encode()
        moved, kept = 0, []
        async for key in raw.scan_iter(match=escape_glob(self._legacy.prefix) + "*", count=1000):
            if await raw.renamenx(key, new + key[len(old) :]):
                moved += 1
            else:
                kept.append(key.decode(errors="replace"))
        return moved, kept

    # -- inspection and maintenance ----------------------------------------------------

    async def _queued_by_priority(self, queue: str) -> dict[int, int]:
        """Exact lengths of ``queue`` per priority, two commands per distinct priority."""
        client = self.client
        queued: dict[int, int] = {}
        first = await client.zrange(queue, 0, 0, withscores=True)
        while first:
            score = float(first[0][1])
            # A score out of range (written by hand) counts with the nearest priority.
            priority = int(score // PRIORITY_SCALE) if math.isfinite(score) else 0
            if not math.isfinite(score):
                priority = PRIORITY_MIN if score < 0 else PRIORITY_MAX
            priority = max(PRIORITY_MIN, min(PRIORITY_MAX, priority))
            low = "-inf" if priority == PRIORITY_MIN else priority * PRIORITY_SCALE
            high = "+inf" if priority == PRIORITY_MAX else (priority + 1) * PRIORITY_SCALE
            queued[priority] = await client.zcount(queue, low, f"({high}")
            if priority == PRIORITY_MAX:
                break
            first = await client.zrangebyscore(queue, high, "+inf", start=0, num=1, withscores=True)
        return queued

    def _index_key(self, index: str) -> str:
        kind, _, name = index.partition(":")
        if kind == "final" and name in FINAL_STATUSES:
            return self.keys.index_of(name)
        if kind == "name" and name:
            return self.keys.index_of_name(name)
        if kind == "queue" and name:
            return self.keys.queue_of(name)
        if index in ("running", "scheduled"):
            return self.keys.running if index == "running" else self.keys.scheduled
        if index == "workflows":
            return self.keys.workflows
        raise ValueError(f"unknown task index {index!r}")

    @mapped("index_page")
    async def index_page(
        self,
        index: str,
        after: tuple[float, str] | None,
        limit: int,
        fields: Sequence[str] | None = None,
    ) -> list[tuple[str, float, dict[str, str] | None]]:
        key = self._index_key(index)
        client = self.client
        newest_first = index.startswith(("final:", "name:")) or index == "workflows"
        # The page starts after the cursor's own entry, found by its rank (tasks that
        # ended in the same millisecond share a score); an entry gone since (claimed,
        # expired) is passed by its score instead.
        spare = 64
        try:
            rank: int | None = None
            if after is not None:
                found = await (client.zrevrank if newest_first else client.zrank)(key, after[1])
                rank = found if isinstance(found, int) else None
            if rank is not None:
                rows = await client.zrange(
                    key, rank + 1, rank + limit, desc=newest_first, withscores=True
                )
                after = None  # placed exactly: nothing to filter
            else:
                bound: str | float = (
                    ("+inf" if newest_first else "-inf") if after is None else after[0]
                )
                low, high = (bound, "-inf") if newest_first else (bound, "+inf")
                rows = await client.zrange(
                    key, low, high, desc=newest_first, byscore=True, offset=0,
                    num=limit + spare, withscores=True,
                )  # fmt: skip
        except rx.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                return []  # an index overwritten by hand lists nothing, stops nothing
            raise
        entries = [(u, float(sc)) for u, sc in cast(list[tuple[str, float]], rows)]
        if after is not None:
            score, last = after
            if newest_first:
                entries = [(u, sc) for u, sc in entries if sc < score or (sc == score and u < last)]
            else:
                entries = [(u, sc) for u, sc in entries if sc > score or (sc == score and u > last)]
        entries = entries[:limit]
        records = await self.get_many([uuid for uuid, _ in entries], fields)
        gone = [u for (u, _), r in zip(entries, records, strict=True) if r is None]
        if gone and newest_first:
            await client.zrem(key, *gone)  # expired records: their entries go too
        return [(u, sc, r) for (u, sc), r in zip(entries, records, strict=True)]

    @mapped("stats")
    async def stats(self) -> BackendStats:
        client = self.client
        k = self.keys
        try:
            names = sorted(cast(set[str], await client.smembers(k.queues)))
        except rx.ResponseError:
            names = []  # a key of the wrong type: the named queues are not shown
        per_queue = {
            name: await self._queued_by_priority(k.queue_of(name))
            for name in [DEFAULT_QUEUE, *(n for n in names if n != DEFAULT_QUEUE)]
        }
        queued: dict[int, int] = {}
        for depth in per_queue.values():
            for priority, count in depth.items():
                queued[priority] = queued.get(priority, 0) + count
        pipe: Pipeline = client.pipeline(transaction=False)
        pipe.zcard(k.scheduled)
        pipe.zcard(k.running)
        pipe.hgetall(k.counts)
        pipe.zcard(k.dead)
        scheduled, running, counts, dead = await pipe.execute(raise_on_error=False)
        workers = []
        try:
            ids = cast(list[str], await client.zrange(k.workers, 0, -1))
        except rx.ResponseError:
            ids = []  # a key of the wrong type: the workers are not shown
        if ids:
            heartbeats: Pipeline = client.pipeline(transaction=False)
            for worker_id in ids:
                heartbeats.get(k.worker(worker_id))
            for raw in await heartbeats.execute(raise_on_error=False):
                try:
                    info = json.loads(raw or "null")
                except (ValueError, RecursionError):
                    continue
                if isinstance(info, dict):
                    workers.append(info)
        finals = {}
        if isinstance(counts, dict):
            for status, value in counts.items():
                if status in FINAL_STATUSES and value.lstrip("-").isdigit():
                    finals[status] = int(value)
        live = {"new": sum(queued.values()), "process": running, "retry": scheduled}
        return BackendStats(
            queued=queued,
            queues=per_queue,
            scheduled=scheduled,
            running=running,
            counts={s: n for s, n in {**live, **finals}.items() if n},
            workers=workers,
            dead=dead,
        )

    @mapped("cursor")
    async def cursor(self, schedule: str) -> dict[str, str]:
        try:
            return cast(dict[str, str], await self.client.hgetall(self.keys.schedule(schedule)))
        except rx.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                return {}
            raise

    @mapped("tick")
    async def tick(
        self,
        schedule: str,
        expected: int | None,
        new_next: int,
        fired: int | None,
        task: tuple[str, dict[str, str], int] | None,
        definition: str | None = None,
    ) -> tuple[Ticked, int]:
        args: list[Any] = [
            self.keys.prefix,
            "" if expected is None else str(expected),
            str(new_next),
            "" if fired is None or task is None else str(fired),
            schedule,
            definition or "",
        ]
        if fired is not None and task is not None:
            uuid, record, priority = task
            args += [uuid, priority, *(x for pair in record.items() for x in pair)]
        code, now = await self._fed(_lua.TICK)(
            keys=[self.keys.schedule(schedule), self.keys.config(SCHEDULES_NAMESPACE)], args=args
        )
        ticked: Ticked = "moved" if code == 1 else "stale" if code == -1 else "lost"
        return ticked, int(now)

    @mapped("save_schedule")
    async def save_schedule(self, name: str, definition: str | None) -> bool:
        k = self.keys
        had = await self._conn().links.function(_lua.SCHEDULE)(
            keys=[k.config(SCHEDULES_NAMESPACE), k.schedule(name), k.schedule_changes],
            args=[name, definition or "", SCHEDULE_CHANGES_MAX],
        )
        return bool(had == 1)

    @mapped("wait_schedules")
    async def wait_schedules(self, after: str, timeout: float) -> str:
        key = self.keys.schedule_changes
        block = max(1, int(min(max(timeout, 0.001), MAX_BLOCK) * 1000))
        blocking = self._conn().blocking
        try:
            if blocking is not None:
                reply = await blocking.execute("XREAD", "BLOCK", block, "STREAMS", key, after)
            else:
                reply = await self._conn().raw.xread({key: after}, block=block)
        except rx.ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            # The stream only wakes schedulers: one of another type (someone SET it) is
            # replaced rather than stopping them (the next change writes it anew).
            log.warning("replacing the schedule changes key of the wrong type: %s", key)
            if await self.client.type(key) not in ("stream", "none"):
                await self.client.delete(key)
            return after
        if not reply:
            return after
        # [[key, [[id, fields], ...]]]: the last entry is the latest change.
        latest = reply[0][1][-1][0]
        return latest.decode() if isinstance(latest, bytes) else str(latest)

    @mapped("start_workflow")
    async def start_workflow(
        self, workflow_id: str, record: dict[str, str], nodes: dict[str, str]
    ) -> bool:
        started = await self._fed(_lua.WORKFLOW)(
            keys=[self.keys.queue],
            args=[self.keys.prefix, workflow_id, to_json(record), to_json(nodes)],
        )
        return bool(started == 1)

    @mapped("workflow_nodes")
    async def workflow_nodes(self, workflow_id: str) -> dict[str, str]:
        try:
            return cast(dict[str, str], await self.client.hgetall(self.keys.workflow(workflow_id)))
        except rx.ResponseError:
            return {}  # a key of the wrong type: no tree to show

    @mapped("purge_queue")
    async def purge_queue(
        self, queue: str, reason: str = "purged", ttl: float | None = None
    ) -> int:
        purge = self._fed(_lua.PURGE)
        key = self.keys.queue_of(queue)
        total = 0
        # A batch per call: a long queue never holds Redis for long.
        while await self.client.zcard(key):
            total += int(
                await purge(
                    keys=[key],
                    args=[
                        self.keys.prefix,
                        queue,
                        reason,
                        500,
                        "" if ttl is None else max(1, int(ttl)),
                    ],
                )
            )
        return total

    @mapped("flush_all")
    async def flush_all(self) -> None:
        client = self.client
        batch: list[str] = []
        async for key in client.scan_iter(match=escape_glob(self.keys.prefix) + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)

    @mapped("delete_finished")
    async def delete_finished(self) -> int:
        client = self.client
        deleted = 0
        pattern = escape_glob(self.keys.task("")) + "*"
        async for key in client.scan_iter(match=pattern, count=1000, _type="hash"):
            status = await client.hget(key, "status")
            if status in FINAL_STATUSES:
                uuid = key[len(self.keys.task("")) :]
                if await client.zscore(self.keys.dead, uuid) is None:  # kept for requeueing
                    await client.unlink(key, self.keys.done(uuid))
                    deleted += 1
        return deleted

    # -- global config -------------------------------------------------------------------

    @mapped("config_set")
    async def config_set(self, name: str, key: str, value: str) -> None:
        await self.client.hset(self.keys.config(name), key, value)

    @mapped("config_get")
    async def config_get(self, name: str, key: str) -> str | None:
        return cast(str | None, await self.client.hget(self.keys.config(name), key))

    @mapped("config_delete")
    async def config_delete(self, name: str, key: str) -> bool:
        return bool(await self.client.hdel(self.keys.config(name), key))

    @mapped("config_get_all")
    async def config_get_all(self, name: str) -> dict[str, str]:
        return cast(dict[str, str], await self.client.hgetall(self.keys.config(name)))

    @mapped("config_get_match")
    async def config_get_match(self, name: str, pattern: str) -> dict[str, str]:
        out: dict[str, str] = {}
        async for key, value in self.client.hscan_iter(self.keys.config(name), match=pattern):
            out[key] = value
        return out

    @mapped("set_status")
    async def set_status(self, worker_id: str, status: str, ttl: float) -> None:
        # The heartbeat, and the index of heartbeats the stats read (no key scan); an
        # entry whose heartbeat ended a minute ago is dropped (its worker died).
        now = int(time.time() * 1000)
        pipe: Pipeline = self.client.pipeline(transaction=False)
        pipe.set(self.keys.worker(worker_id), status, px=int(ttl * 1000))
        pipe.zadd(self.keys.workers, {worker_id: now + int(ttl * 1000)})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now - 60_000)
        await pipe.execute()

    @mapped("clear_status")
    async def clear_status(self, worker_id: str) -> None:
        pipe: Pipeline = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.worker(worker_id))
        pipe.zrem(self.keys.workers, worker_id)
        await pipe.execute()
