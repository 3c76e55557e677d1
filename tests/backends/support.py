"""What the backend tests share: running one coroutine, a new task's record, and the
contract suite's subject (a backend of one kind, with raw access to its data)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis

from qtasks_core.backends import Backend, Claimed, MemoryBackend, RedisBackend
from qtasks_core.keys import Keys

T = TypeVar("T")

#: Every kind the contract runs on: the in-memory backend, a real Redis through the
#: lean connection and through redis-py only, over TLS, and on a cluster (both ways).
REDIS_KINDS = ["redis-lean", "redis-py", "redis-tls", "redis-cluster", "redis-cluster-py"]
KINDS = ["memory", *REDIS_KINDS]

_names = itertools.count()


_runner: asyncio.Runner | None = None


def run(awaitable: Awaitable[T]) -> T:
    """Run one backend call to its end, on the test's event loop.

    One loop serves a whole test (``close_loop`` ends it), as one serves a worker: its
    connections stay open between calls. A loop per call would open new connections
    each time (a TLS or cluster handshake), and a pause that long between a test's
    heartbeats and its next claim reads to the engine as an outage, after which every
    lease is granted in full again: a lease the test let run out would not be."""
    global _runner
    if _runner is None:
        _runner = asyncio.Runner()

    async def main() -> T:
        return await awaitable

    return _runner.run(main())


def close_loop() -> None:
    """End the test's event loop (and with it its connections)."""
    global _runner
    if _runner is not None:
        _runner.close()
        _runner = None


def record(name: str = "job", priority: int = 0, **extra: str) -> dict[str, str]:
    """A new task's record as the storage writes it (``extra``: more fields)."""
    return {
        "status": "new",
        "task_name": name,
        "priority": str(priority),
        "args": "[]",
        "kwargs": "{}",
        "created_at": f"{time.time():.6f}",
        "updated_at": f"{time.time():.6f}",
        "attempts": "0",
        **extra,
    }


class Subject:
    """A backend under test, and raw access to its data for writing garbage."""

    def __init__(self, backend: Backend, raw: redis.Redis | None, keys: Keys) -> None:
        self.backend = backend
        self.raw = raw
        self.keys = keys

    def needs_redis(self) -> redis.Redis:
        assert self.raw is not None, "use the redis_subject fixture"
        return self.raw

    def add(self, uuid: str, priority: int = 0, **extra: str) -> None:
        assert run(self.backend.enqueue(uuid, record(priority=priority, **extra), priority))

    def claim(self, n: int = 10, lease: float = 30.0, worker: str = "w1", **kw: Any) -> Any:
        # As an idle worker claims: a task recovered from a dead worker is given alone.
        kw.setdefault("alone", True)
        return run(self.backend.claim(n, worker, lease, 5, **kw))

    def finish(self, uuid: str, token: str, status: str = "success", **kw: Any) -> bool:
        fields = {"status": status, "returning": json.dumps(kw.pop("result", None))}
        return run(self.backend.finish(uuid, token, fields, kw.get("ttl"), kw.get("delay")))


def subject_of(request: pytest.FixtureRequest) -> Iterator[Subject]:
    """A subject of the kind ``request.param``, on an app name of its own; its Redis
    keys are deleted after the test."""
    name = f"contract-{os.getpid()}-{next(_names)}"
    keys = Keys.for_app(name)
    if request.param == "memory":
        yield Subject(MemoryBackend(), None, keys)
        return
    if request.param == "redis-tls":
        from tests.tls_support import tls_url

        url = tls_url(*request.getfixturevalue("tls_server"))
    elif request.param.startswith("redis-cluster"):
        url = request.getfixturevalue("cluster").url
    else:
        url = request.getfixturevalue("redis_url")
    backend = RedisBackend(url, name, lean=not request.param.endswith("-py"))
    raw: Any = (
        request.getfixturevalue("cluster").client()
        if request.param.startswith("redis-cluster")
        else redis.Redis.from_url(url)
    )
    yield Subject(backend, raw, keys)
    for key in raw.scan_iter(match=keys.prefix + "*"):
        raw.delete(key)
    raw.close()


def beating(
    subject: Subject,
    seconds: float,
    lease: float,
    then: Callable[[], Awaitable[T]] | None = None,
) -> T | None:
    """Let ``seconds`` pass while live workers heartbeat (an empty renewal every
    lease/12): without them, a silence reads as an outage and every lease is granted a
    full lease again. Twice as often as a worker beats: with a lease this short, a
    hiccup of this process on a busy machine would otherwise read as an outage. ``then``
    runs right after, on the same connection (a new one would first need its
    handshake, a silence of its own with TLS)."""

    async def beat() -> T | None:
        deadline = last = time.monotonic()
        deadline += seconds
        while (now := time.monotonic()) < deadline:
            if now - last > lease / 4:
                # A pause of this process as long as that reads to the engine as an
                # outage, after which it grants every lease in full again: wait that out.
                deadline = now + seconds
            last = now
            await subject.backend.extend({}, lease)
            await asyncio.sleep(lease / 12)
        return await then() if then is not None else None

    return run(beat())


def recovered(subject: Subject, lease: float, claim: Callable[[], Awaitable[Claimed]]) -> Claimed:
    """Heartbeat past a dead worker's lease, then claim, until the claim finds the
    task again (or sets it aside): on a busy machine a pause of this process can read as
    an outage, after which the engine grants every lease a full lease again, so one
    lease's wait is not always enough. Fails after 20 leases."""

    async def until_found() -> Claimed:
        deadline = time.monotonic() + 20 * lease
        while True:
            stop = time.monotonic() + lease * 4 / 3
            while time.monotonic() < stop:
                await subject.backend.extend({}, lease)
                await asyncio.sleep(lease / 12)
            claimed = await claim()
            if claimed.tasks or claimed.dead or time.monotonic() > deadline:
                return claimed

    return run(until_found())


def uuids(claimed: Claimed) -> list[str]:
    """The uuids a claim took, in its order."""
    return [t["uuid"] for t in claimed.tasks]
