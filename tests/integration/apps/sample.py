"""An app for process-level tests: its tasks record each execution in Redis."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import redis

from qtasks_core import QueueTasks

app = QueueTasks(os.environ.get("QTASKS_TEST_APP", "sample"))

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        # A ledger server of its own where the app's Redis is not a plain server.
        url = os.environ.get("QTASKS_TEST_LEDGER") or os.environ["QTASKS_REDIS_URL"]
        _client = redis.Redis.from_url(url, decode_responses=True)
    return _client


def record(tag: str) -> None:
    """Record one execution of ``tag`` (what the tests read back with ``executions``).

    Idempotent per execution, and retried while Redis is away: a write whose reply was
    lost in a Redis restart is sent again, and must not count the execution twice.
    """
    execution = uuid.uuid4().hex
    for _ in range(600):
        try:
            client().hset(f"{app.name}:ran:{tag}", execution, f"{os.getpid()}@{time.time():.3f}")
            return
        except (redis.ConnectionError, redis.TimeoutError):
            time.sleep(0.1)
    raise RuntimeError("Redis did not come back within 60s")


def executions(client: redis.Redis, app_name: str) -> dict[str, int]:
    """How many times each tag ran (tests call this from their own process)."""
    keys = list(client.scan_iter(match=f"{app_name}:ran:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hlen(key)
    prefix = len(f"{app_name}:ran:")
    return {
        (key.decode() if isinstance(key, bytes) else key)[prefix:]: count
        for key, count in zip(keys, pipe.execute(), strict=True)
    }


@app.task
def die() -> None:
    """Kills its worker process outright, as a segfault or the OOM killer would."""
    os._exit(137)


@app.task
def noop(tag: str) -> str:
    record(tag)
    return tag


@app.task
def sleepy(tag: str, seconds: float) -> str:
    time.sleep(seconds)
    record(tag)
    return tag


@app.task
async def async_sleepy(tag: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    record(tag)
    return tag


@app.task
def pid() -> int:
    return os.getpid()


def factory() -> QueueTasks:
    return app


@app.task
async def nap(seconds: float) -> float:
    """Sleeps, touching no Redis of its own (for topologies its URL cannot reach)."""
    await asyncio.sleep(seconds)
    return seconds


if os.environ.get("QTASKS_TEST_PERIODIC"):
    # Only where a test asks for it: every other test's workers would run it too.

    @app.periodic(every=1, name="beat", echo=True)
    def beat(ctx: object) -> None:
        record(ctx.task_uuid)  # type: ignore[attr-defined]


@app.task
def wf_part(tag: str, value: int, seconds: float) -> int:
    """A workflow member: records its run, returns ``value``."""
    time.sleep(seconds)
    record(tag)
    return value


@app.task
def wf_total(values: list[int], tag: str) -> int:
    """A chord's body: the sum of its header's results."""
    record(tag)
    return sum(values)


@app.task
def wf_step(previous: int, tag: str, seconds: float) -> int:
    """A chain's step: one more than the step before."""
    time.sleep(seconds)
    record(tag)
    return previous + 1


@app.task
async def wait_forever(tag: str) -> None:
    """Awaits for a minute (an abort cancels it at that await)."""
    record(tag)
    await asyncio.sleep(60)


@app.task(echo=True)
def until_aborted(ctx: object, tag: str) -> str:
    """A sync task that checks ``ctx.aborted`` and returns when it is set."""
    record(tag)
    deadline = time.monotonic() + 60
    while not ctx.aborted and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)
    return "noticed"


@app.task(echo=True)
def reports(ctx: object, steps: int, seconds: float) -> str:
    """Reports its progress after each of ``steps`` steps."""
    for i in range(steps):
        time.sleep(seconds)
        ctx.set_progress((i + 1) / steps, done=i + 1, of=steps)  # type: ignore[attr-defined]
    return "reported"


@app.task(concurrency_limit=2)
def two_at_a_time(tag: str, seconds: float) -> str:
    """At most two of these run at once, across every worker."""
    record(tag)
    time.sleep(seconds)
    return tag


@app.task(concurrency_limit=2)
async def two_async(tag: str, seconds: float) -> str:
    """At most two run at once; records only a run that completes (an abort cancels it
    at its sleep)."""
    await asyncio.sleep(seconds)
    record(tag)
    return tag


@app.task(rate_limit="20/s")
def paced(tag: str) -> str:
    """At most 20 of these start a second, across every worker."""
    record(tag)
    return tag


# Tasks that touch no Redis of their own (for the least-privilege ACL test).


@app.task
def double(x: int) -> int:
    return 2 * x


@app.task
def sum_all(values: list[int]) -> int:
    return sum(values)


@app.task(concurrency_limit=2, rate_limit="1000/s")
def limited_pid() -> int:
    return os.getpid()


@app.task(echo=True)
def progress_pid(ctx: object) -> int:
    ctx.set_progress(0.5)  # type: ignore[attr-defined]
    return os.getpid()
