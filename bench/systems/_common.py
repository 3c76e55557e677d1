"""What every system driver shares: the task's Redis write, the workloads, the worker's life.

Each ``bench/systems/<name>_bench.py`` holds one system's app/task definitions and a
:class:`System` subclass describing how to start its worker and how a producer enqueues
and waits. It is run by ``bench/run.py`` inside that system's own virtual environment::

    <venv>/bin/python bench/systems/arq_bench.py --redis-url redis://127.0.0.1:PORT/0 \\
        --variant default --workloads enqueue,batch,e2e,latency,idle,delayed,sleep --n 2000

and prints one JSON line (the last line of its stdout). The same file, imported by the
system's worker CLI (``PYTHONPATH=bench/systems``), provides the tasks. Only the standard
library and redis-py are used here, so this module runs in every venv.

Completion is detected the same way for every system: each task runs :data:`BUMP_LUA`
(one round trip: INCR a counter; when it reaches the target, RPUSH a "done" marker), and
the driver BLPOPs the "done" list. So "the last task finished" is seen by the driver
within one Redis round trip, without polling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

COUNT_KEY = "bench:count"
TARGET_KEY = "bench:target"
DONE_KEY = "bench:done"
REPLY_PREFIX = "bench:reply:"
STARTS_KEY = "bench:starts"
SLEEP_SECONDS = 0.01

#: The task's one Redis write: INCR the counter; the task that reaches the target
#: RPUSHes a marker the driver is blocked on.
BUMP_LUA = """
local c = redis.call('INCR', KEYS[1])
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
if c == t then redis.call('RPUSH', KEYS[3], c) end
return c
"""
BUMP_KEYS = [COUNT_KEY, TARGET_KEY, DONE_KEY]

#: The delayed task's one Redis write: the bump, after RPUSHing the moment the task
#: started, so the start costs no extra round trip and completion is seen the same way.
STAMP_LUA = "redis.call('RPUSH', KEYS[4], ARGV[1])\n" + BUMP_LUA
STAMP_KEYS = [*BUMP_KEYS, STARTS_KEY]

ALL_WORKLOADS = ("enqueue", "batch", "e2e", "latency", "idle", "delayed", "sleep", "memory")


def redis_url() -> str:
    """The URL of the one Redis server of the run (set by the driver for its workers)."""
    return os.environ["BENCH_REDIS_URL"]


def variant() -> str:
    return os.environ.get("BENCH_VARIANT", "default")


def result_ttl() -> float | None:
    """The result TTL (seconds) asked of the system by the memory workload; ``None``: the
    system's own default (every other workload)."""
    value = os.environ.get("BENCH_RESULT_TTL", "")
    return float(value) if value else None


def concurrency() -> int | None:
    """The concurrency asked of the worker; ``None``: the system's own default."""
    value = os.environ.get("BENCH_CONCURRENCY", "")
    return int(value) if value else None


# -- the task side -----------------------------------------------------------------------

_sync_scripts: dict[str, Any] = {}
_async_scripts: dict[tuple[int, str], Any] = {}


def _script_sync(lua: str) -> Any:
    """A registered script (thread- and fork-safe: redis-py pools reset on fork)."""
    script = _sync_scripts.get(lua)
    if script is None:
        script = _sync_scripts[lua] = redis.Redis.from_url(redis_url()).register_script(lua)
    return script


def _script_async(lua: str) -> Any:
    """A registered script on a client of the running event loop (one client per loop)."""
    key = (id(asyncio.get_running_loop()), lua)
    script = _async_scripts.get(key)
    if script is None:
        from redis.asyncio import Redis

        script = _async_scripts[key] = Redis.from_url(redis_url()).register_script(lua)
    return script


def bump_sync() -> int:
    """The task body for sync tasks."""
    return int(_script_sync(BUMP_LUA)(keys=BUMP_KEYS))


async def bump_async() -> int:
    """The task body for async tasks."""
    return int(await _script_async(BUMP_LUA)(keys=BUMP_KEYS))


def stamp_sync() -> int:
    """The delayed workload's task body (sync): records when the task started, then bumps."""
    # Read first, before any connection is made, so the stamp is the moment the task
    # function was entered (the workload's lateness is measured to it).
    started = time.time()
    return int(_script_sync(STAMP_LUA)(keys=STAMP_KEYS, args=[repr(started)]))


async def stamp_async() -> int:
    """The delayed workload's task body (async); see :func:`stamp_sync`."""
    started = time.time()
    return int(await _script_async(STAMP_LUA)(keys=STAMP_KEYS, args=[repr(started)]))


def sleep_sync() -> int:
    time.sleep(SLEEP_SECONDS)
    return bump_sync()


async def sleep_async() -> int:
    await asyncio.sleep(SLEEP_SECONDS)
    return await bump_async()


# -- what a system module provides ---------------------------------------------------------


class System:
    """One system: its worker command line and its producer calls.

    When :attr:`is_async` is true, :meth:`open`, :meth:`close`, :meth:`enqueue_noop`,
    :meth:`enqueue_noop_batch`, :meth:`enqueue_sleep`, :meth:`enqueue_delayed` and
    :meth:`roundtrip` are coroutines run on the driver's one event loop; otherwise
    plain functions.
    """

    name = ""
    #: Distributions whose versions are recorded.
    packages: tuple[str, ...] = ("redis",)
    is_async = True
    #: Concurrency used for the sleep workload (``None``: not supported, see notes).
    sleep_concurrency: int | None = 100
    #: How :meth:`enqueue_noop_batch` enqueues, for the results (empty: the batch
    #: workload is not supported, the system has no batch enqueue in its driver).
    batch: str = ""
    #: How :meth:`enqueue_delayed` defers a task, for the results (empty: the delayed
    #: workload is not supported, the driver has no deferred enqueue for this system).
    delayed: str = ""
    #: How the memory workload sets the result TTL it is given (:func:`result_ttl`: in
    #: the worker's environment, and read by :meth:`enqueue_memory`), for the results
    #: (empty: the memory workload is not supported).
    memory: str = ""
    #: What the results should say about how this system was run.
    notes: tuple[str, ...] = ()

    def worker_argv(self, variant: str, concurrency: int | None) -> list[str]:
        raise NotImplementedError

    def worker_env(self, variant: str, concurrency: int | None) -> dict[str, str]:
        return {}

    def describe(self, variant: str, concurrency: int | None) -> str:
        """How the worker runs, for the results (defaults to its command line)."""
        argv = self.worker_argv(variant, concurrency)
        return " ".join([Path(argv[0]).name, *argv[1:]])

    def open(self, variant: str) -> Any:
        return None

    def close(self) -> Any:
        return None

    def enqueue_noop(self) -> Any:
        raise NotImplementedError

    def enqueue_noop_batch(self, n: int) -> Any:
        """Enqueue ``n`` no-op tasks with the system's batch API (see :attr:`batch`)."""
        raise NotImplementedError

    def enqueue_sleep(self) -> Any:
        raise NotImplementedError

    def enqueue_memory(self) -> Any:
        """The memory workload's enqueue: a no-op task whose result lives
        :func:`result_ttl` seconds where the producer sets that (by default
        :meth:`enqueue_noop`, for systems whose worker sets it)."""
        return self.enqueue_noop()

    def enqueue_delayed(self, due: float) -> Any:
        """Enqueue the stamp task (``stamp_async``/``stamp_sync``) to run at ``due``, a
        ``time.time()`` timestamp (see :attr:`delayed`)."""
        raise NotImplementedError

    def roundtrip(self) -> Any:
        """Enqueue a no-op task and wait for its result with the system's own API."""
        raise NotImplementedError

    def run_worker(self, concurrency: int | None) -> None:
        """For systems without a worker CLI of their own (the raw loop)."""
        raise NotImplementedError


async def hold_open(context: contextlib.AbstractAsyncContextManager[Any]) -> Callable[[], Any]:
    """Enter ``context`` in a task of its own and return the coroutine function that
    leaves it: the driver runs each producer call as a separate task of its loop, and
    an anyio context (a task group, a cancel scope) must be left by the task that
    entered it."""
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def hold() -> None:
        async with context:
            entered.set()
            await leave.wait()

    holder = asyncio.ensure_future(hold())
    ready = asyncio.ensure_future(entered.wait())
    await asyncio.wait([holder, ready], return_when=asyncio.FIRST_COMPLETED)
    if holder.done():
        ready.cancel()
        holder.result()  # raises why the context could not be entered

    async def close() -> None:
        leave.set()
        await holder

    return close


# -- process helpers -------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, pgrp) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[1]), int(fields[2])


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_pids(pgrp: int) -> list[int]:
    """Every process in a process group (the worker and whatever it forked)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[1] == pgrp:
                pids.append(int(entry))
    return pids


def group_rss_mib(pgrp: int) -> tuple[float, int]:
    """Total RSS (MiB) of a process group, and how many processes it has."""
    pids = group_pids(pgrp)
    return sum(_rss_kib(p) for p in pids) / 1024.0, len(pids)


class WorkerProcess:
    """A system's worker, in its own session (so it and its children stop together)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        # SIGTERM to the worker's main process, as a service manager would; the worker
        # passes it on to any children of its own.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        # Whatever is left of the group (forked children included) is killed.
        deadline = time.monotonic() + 5
        while group_pids(self.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted list (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def versions(packages: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# -- the driver --------------------------------------------------------------------------------


class Driver:
    def __init__(self, system: System, args: argparse.Namespace) -> None:
        self.system = system
        self.args = args
        self.variant = args.variant
        self.r = redis.Redis.from_url(args.redis_url)
        self.loop = asyncio.new_event_loop() if system.is_async else None
        self.log_dir = Path(args.log_dir)
        #: Seconds spent starting and stopping workers, for the record.
        self.overhead: dict[str, float] = {}

    # calling the producer ------------------------------------------------------------

    def call(self, method: str) -> Any:
        result = getattr(self.system, method)()
        if self.loop is not None and inspect.isawaitable(result):
            return self.loop.run_until_complete(result)
        return result

    def repeat(self, method: str, n: int, *args: Any) -> float:
        """Seconds taken by ``n`` back-to-back calls of a producer method (with ``args``)."""
        fn: Callable[..., Any] = getattr(self.system, method)
        if self.loop is not None:

            async def go() -> float:
                start = time.perf_counter()
                for _ in range(n):
                    await fn(*args)
                return time.perf_counter() - start

            return self.loop.run_until_complete(go())
        start = time.perf_counter()
        for _ in range(n):
            fn(*args)
        return time.perf_counter() - start

    def repeat_each(self, method: str, values: list[Any]) -> float:
        """Seconds taken by back-to-back calls of a producer method, one per value."""
        fn: Callable[..., Any] = getattr(self.system, method)
        if self.loop is not None:

            async def go() -> float:
                start = time.perf_counter()
                for value in values:
                    await fn(value)
                return time.perf_counter() - start

            return self.loop.run_until_complete(go())
        start = time.perf_counter()
        for value in values:
            fn(value)
        return time.perf_counter() - start

    def roundtrips(self, samples: int, budget: float, minimum: int) -> list[float]:
        """Latencies (ms) of sequential round trips: ``samples``, or fewer once
        ``budget`` seconds have passed (never fewer than ``minimum``)."""
        fn: Callable[[], Any] = self.system.roundtrip
        if self.loop is not None:

            async def go() -> list[float]:
                out: list[float] = []
                begin = time.perf_counter()
                for i in range(samples):
                    start = time.perf_counter()
                    await fn()
                    out.append((time.perf_counter() - start) * 1000)
                    if i + 1 >= minimum and time.perf_counter() - begin > budget:
                        break
                return out

            return self.loop.run_until_complete(go())
        out: list[float] = []
        begin = time.perf_counter()
        for i in range(samples):
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1000)
            if i + 1 >= minimum and time.perf_counter() - begin > budget:
                break
        return out

    # the counter -----------------------------------------------------------------------

    def arm(self, target: int) -> None:
        pipe = self.r.pipeline()
        pipe.delete(COUNT_KEY, DONE_KEY)
        pipe.set(TARGET_KEY, target)
        pipe.execute()

    def wait_done(self, timeout: float, worker: WorkerProcess | None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.r.blpop([DONE_KEY], timeout=1):
                return True
            if worker is not None and not worker.alive():
                raise RuntimeError(f"the worker exited:\n{worker.tail()}")
        return False

    def count(self) -> int:
        return int(self.r.get(COUNT_KEY) or 0)

    # the worker -----------------------------------------------------------------------------

    def start_worker(self, concurrency: int | None, tag: str) -> WorkerProcess:
        env = dict(os.environ)
        env.update(
            BENCH_REDIS_URL=self.args.redis_url,
            BENCH_VARIANT=self.variant,
            BENCH_CONCURRENCY="" if concurrency is None else str(concurrency),
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.system.worker_env(self.variant, concurrency))
        argv = self.system.worker_argv(self.variant, concurrency)
        log_path = self.log_dir / f"{self.args.label}-{tag}.log"
        began = time.perf_counter()
        worker = WorkerProcess(argv, env, log_path)
        try:
            self.wait_ready(worker)
        except BaseException:
            worker.stop()
            raise
        self.overhead[f"{tag}_start"] = time.perf_counter() - began
        return worker

    def stop_worker(self, worker: WorkerProcess, tag: str) -> None:
        began = time.perf_counter()
        worker.stop()
        self.overhead[f"{tag}_stop"] = time.perf_counter() - began

    def wait_ready(self, worker: WorkerProcess, timeout: float = 90.0) -> None:
        """Ping with no-op tasks until one completes, then a warm-up of 50 tasks."""
        self.arm(1)
        deadline = time.monotonic() + timeout
        next_ping = 0.0
        while True:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"the worker did not start in {timeout:.0f}s:\n{worker.tail()}")
            if not worker.alive():
                raise RuntimeError(f"the worker exited at start:\n{worker.tail()}")
            if now >= next_ping:
                self.call("enqueue_noop")
                next_ping = now + 1.0
            if self.r.blpop([DONE_KEY], timeout=0.2):
                break
        # Let late pings run before the warm-up counts.
        previous = -1
        while (current := self.count()) != previous:
            previous = current
            time.sleep(0.3)
        self.arm(50)
        self.repeat("enqueue_noop", 50)
        if not self.wait_done(60, worker):
            raise RuntimeError(f"warm-up: {self.count()}/50 done in 60s:\n{worker.tail()}")
        time.sleep(0.2)

    # workloads -------------------------------------------------------------------------------

    def w_enqueue(self) -> dict[str, Any]:
        n = self.args.n
        self.r.flushall()
        self.repeat("enqueue_noop", min(50, n))  # warm the producer's connections
        self.r.flushall()
        seconds = self.repeat("enqueue_noop", n)
        self.r.flushall()
        return {"n": n, "seconds": seconds, "per_second": n / seconds}

    def w_batch(self) -> dict[str, Any]:
        """One batch-enqueue call of ``--batch-n`` no-op tasks, no worker running."""
        n = self.args.batch_n
        warm = min(1000, n)
        self.r.flushall()
        self.repeat("enqueue_noop_batch", 1, warm)  # warm the connections and scripts
        self.r.flushall()
        seconds = self.repeat("enqueue_noop_batch", 1, n)
        keys = int(self.r.dbsize())
        self.r.flushall()
        if keys == 0:
            raise RuntimeError(f"batch: {n} tasks enqueued but the server holds no key")
        return {
            "n": n,
            "warm_up": warm,
            "seconds": seconds,
            "per_second": n / seconds,
            "how": self.system.batch,
        }

    def command_calls(self) -> dict[str, int]:
        """Calls per command so far (``INFO commandstats``)."""
        stats = self.r.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def server_cpu(self) -> float:
        """CPU seconds the server has used so far (``INFO cpu``, user + system, main
        thread and any I/O threads together)."""
        cpu = self.r.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def w_e2e(self, worker: WorkerProcess) -> dict[str, Any]:
        n = self.args.n
        self.arm(n)
        calls_before = self.command_calls()
        cpu_before = self.server_cpu()
        start = time.perf_counter()
        enqueue_seconds = self.repeat("enqueue_noop", n)
        if not self.wait_done(max(120.0, n / 10), worker):
            raise RuntimeError(f"e2e: only {self.count()}/{n} tasks done")
        seconds = time.perf_counter() - start
        cpu_after = self.server_cpu()
        calls_after = self.command_calls()
        # Producer and worker together; the driver's own few BLPOP/INFO calls included.
        delta = {k: v - calls_before.get(k, 0) for k, v in calls_after.items()}
        delta = {k: v for k, v in delta.items() if v > 0}
        top = sorted(delta.items(), key=lambda kv: -kv[1])[:8]
        return {
            "n": n,
            "seconds": seconds,
            "per_second": n / seconds,
            "enqueue_seconds": enqueue_seconds,
            "commands_per_task": sum(delta.values()) / n,
            "top_commands_per_task": {k: round(v / n, 2) for k, v in top},
            "redis_cpu_seconds": cpu_after - cpu_before,
        }

    def server_cpu_baseline(self, e2e: dict[str, Any]) -> dict[str, Any]:
        """The server's CPU over an idle window as long as the e2e run, with nothing
        running (the worker stopped, the producer silent), taken off the e2e figure.

        Nothing running, not the worker idling: what is left is the server's own
        housekeeping (its ``hz`` timer, expiry), which every row pays alike; whatever a
        worker does while it runs, its idle polling included, stays in its figure, as
        the server pays for it during the run too.
        """
        before = self.server_cpu()
        time.sleep(e2e["seconds"])
        idle = self.server_cpu() - before
        busy = e2e["redis_cpu_seconds"]
        e2e["redis_cpu_idle_seconds"] = idle
        e2e["redis_us_per_task"] = max(0.0, busy - idle) / e2e["n"] * 1e6
        return e2e

    def w_latency(self) -> dict[str, Any]:
        self.arm(0)  # never reached: no "done" markers
        values = self.roundtrips(
            self.args.latency_samples, self.args.latency_budget, self.args.latency_min
        )
        values.sort()
        return {
            "samples": len(values),
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "min_ms": values[0],
            "max_ms": values[-1],
        }

    def w_idle(self, worker: WorkerProcess) -> dict[str, Any]:
        time.sleep(1.0)
        before = int(self.r.info("stats")["total_commands_processed"])
        start = time.monotonic()
        time.sleep(self.args.idle_seconds)
        after = int(self.r.info("stats")["total_commands_processed"])
        seconds = time.monotonic() - start
        rss, processes = group_rss_mib(worker.pid)
        # The second INFO counts itself once it has run.
        commands = max(0, after - before - 1)
        return {
            "seconds": seconds,
            "commands": commands,
            "commands_per_second": commands / seconds,
            "rss_mib": rss,
            "processes": processes,
            "clients": int(self.r.info("clients")["connected_clients"]),
        }

    def w_delayed(self, worker: WorkerProcess) -> dict[str, Any]:
        """``--delayed-n`` stamp tasks enqueued by an idle worker's producer, in two phases.

        *Spread* (the bar): the tasks fall due evenly over ``--delayed-spread`` seconds,
        the first ``--delayed-ahead`` seconds after the first enqueue: the rate (500/s by
        default) is below every system's throughput, so lateness measures the delay
        mechanism. *Burst*: all fall due at one moment; the last can start no sooner than
        n / throughput after it, so this measures draining as much as waiting.

        A task's lateness is the moment its function started (``time.time()`` in the
        worker: same host, same clock) minus its due moment. The stamps do not name
        their task, so the k-th earliest start is matched with the k-th earliest due
        moment (exact for a system that starts tasks in due order; otherwise a fair
        reading of how late the k-th start was).
        """
        n = self.args.delayed_n
        spread = self._delayed_phase(n, self.args.delayed_spread, worker)
        burst = self._delayed_phase(n, 0.0, worker)
        return {
            "n": n,
            "ahead_seconds": self.args.delayed_ahead,
            "spread_seconds": self.args.delayed_spread,
            **{k: v for k, v in spread.items()},
            **{f"burst_{k}": v for k, v in burst.items()},
            "how": self.system.delayed,
        }

    def _delayed_phase(self, n: int, spread: float, worker: WorkerProcess) -> dict[str, Any]:
        ahead = self.args.delayed_ahead
        # Let the worker settle into its idle wait, as the bar's "idle worker" says.
        time.sleep(1.0)
        self.arm(n)
        self.r.delete(STARTS_KEY)
        first = time.time() + ahead
        dues = [first + spread * i / n for i in range(n)]
        enqueue_seconds = self.repeat_each("enqueue_delayed", dues)
        margin = first - time.time()
        if margin <= 0:
            # A task enqueued after its due moment measures the enqueue, not the wait.
            raise RuntimeError(
                f"delayed: enqueueing {n} tasks took {enqueue_seconds:.2f}s, past the first "
                f"due moment {ahead}s ahead (raise --delayed-ahead)"
            )
        if not self.wait_done(ahead + spread + max(60.0, n / 10), worker):
            raise RuntimeError(f"delayed: only {self.count()}/{n} tasks done")
        starts = sorted(float(v) for v in self.r.lrange(STARTS_KEY, 0, -1))
        if len(starts) != n:
            raise RuntimeError(f"delayed: {len(starts)} start stamps for {n} tasks")
        late = sorted((start - due) * 1000 for start, due in zip(starts, dues, strict=True))
        return {
            "enqueue_seconds": enqueue_seconds,
            "margin_seconds": margin,
            "p50_ms": percentile(late, 50),
            "p99_ms": percentile(late, 99),
            "min_ms": late[0],
            "max_ms": late[-1],
            # A task run before its due moment is a bug of the system, not a good number.
            "early": sum(1 for v in late if v < 0),
        }

    def w_sleep(self, worker: WorkerProcess, concurrency: int) -> dict[str, Any]:
        n = self.args.sleep_n
        self.arm(n)
        start = time.perf_counter()
        self.repeat("enqueue_sleep", n)
        if not self.wait_done(max(120.0, n * SLEEP_SECONDS * 2), worker):
            raise RuntimeError(f"sleep: only {self.count()}/{n} tasks done")
        seconds = time.perf_counter() - start
        return {
            "n": n,
            "concurrency": concurrency,
            "seconds": seconds,
            "per_second": n / seconds,
            "ideal_seconds": n * SLEEP_SECONDS / concurrency,
        }

    def used_memory(self) -> int:
        return int(self.r.info("memory")["used_memory"])

    def scan_keys(self) -> dict[str, int]:
        """Keys per prefix (up to the first ``:`` or ``.``), by ``SCAN``: a SCAN drops the
        expired keys it meets, where ``DBSIZE`` still counts those not reclaimed yet."""
        counts: dict[str, int] = {}
        for raw in self.r.scan_iter(count=1000):
            key = raw.decode(errors="replace")
            cut = min((i for i in (key.find(":"), key.find(".")) if i > 0), default=len(key))
            counts[key[:cut]] = counts.get(key[:cut], 0) + 1
        return counts

    def w_memory(self) -> dict[str, Any]:
        """Server memory per task: queued, finished, and what is left after the result TTL.

        1. *Queued*: ``--n`` no-op tasks enqueued with no worker running: the
           ``used_memory`` delta / N.
        2. *Finished*: a worker started (with the result TTL, ``--result-ttl``, where
           the system can set one), left until the records of its warm-up tasks have
           expired, then N tasks enqueued and run: the delta after all finished / N.
        3. *Keys left*: after waiting past the TTL, the keys that remain beyond those
           before step 2 (counted by SCAN, which drops expired keys) / N.

        Each reading follows a second of quiet, so the server's timer has trimmed the
        clients' buffers and reclaimed what expired.
        """
        n = self.args.n
        ttl = self.args.result_ttl
        os.environ["BENCH_RESULT_TTL"] = repr(ttl)
        try:
            self.r.flushall()
            self.repeat("enqueue_memory", min(50, n))  # connections, scripts, caches
            self.r.flushall()
            time.sleep(1.0)
            empty = self.used_memory()
            self.repeat("enqueue_memory", n)
            time.sleep(1.0)
            queued = self.used_memory() - empty
            self.r.flushall()
            worker = self.start_worker(None, "memory-worker")
            try:
                # The warm-up's records expire before the baseline is taken.
                time.sleep(ttl + 1.0)
                keys_before = self.scan_keys()
                time.sleep(1.0)
                base = self.used_memory()
                self.arm(n)
                self.repeat("enqueue_memory", n)
                if not self.wait_done(max(120.0, n / 10), worker):
                    raise RuntimeError(f"memory: only {self.count()}/{n} tasks done")
                time.sleep(1.0)  # and the last records are written after the task's bump
                finished = self.used_memory() - base
                time.sleep(ttl + 0.5)
                keys_after = self.scan_keys()
            finally:
                self.stop_worker(worker, "memory-worker")
        finally:
            os.environ.pop("BENCH_RESULT_TTL", None)
            self.r.flushall()
        new_keys = {
            k: v - keys_before.get(k, 0) for k, v in keys_after.items() if v != keys_before.get(k)
        }
        return {
            "n": n,
            "result_ttl_seconds": ttl,
            "queued_bytes_per_task": queued / n,
            "finished_bytes_per_task": finished / n,
            "keys_left_per_task": sum(new_keys.values()) / n,
            "keys_left_by_prefix": new_keys,
            "how": self.system.memory,
        }

    # the run -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        system = self.system
        wanted = [w for w in self.args.workloads.split(",") if w]
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        workers: dict[str, str] = {}
        began = time.perf_counter()

        def attempt(name: str, fn: Callable[[], dict[str, Any]]) -> None:
            try:
                results[name] = fn()
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc(file=sys.stderr)

        self.r.flushall()
        self.call_open()
        try:
            if "enqueue" in wanted:
                attempt("enqueue", self.w_enqueue)
            if "batch" in wanted:
                if system.batch:
                    attempt("batch", self.w_batch)
                else:
                    errors["batch"] = "not supported (no batch enqueue in this driver)"
            if "delayed" in wanted and not system.delayed:
                errors["delayed"] = "not supported (no deferred enqueue in this driver)"
            self.r.flushall()
            steady = [w for w in ("e2e", "latency", "idle") if w in wanted]
            if "delayed" in wanted and system.delayed:
                steady.append("delayed")
            if steady:
                workers["default"] = system.describe(self.variant, None)
                try:
                    worker = self.start_worker(None, "worker")
                except Exception as exc:
                    for w in steady:
                        errors[w] = f"worker: {type(exc).__name__}: {exc}"
                else:
                    try:
                        if "e2e" in wanted:
                            attempt("e2e", lambda: self.w_e2e(worker))
                        if "latency" in wanted:
                            attempt("latency", self.w_latency)
                        if "idle" in wanted:
                            attempt("idle", lambda: self.w_idle(worker))
                        if "delayed" in steady:
                            attempt("delayed", lambda: self.w_delayed(worker))
                    finally:
                        self.stop_worker(worker, "worker")
                    if "e2e" in results:
                        e2e = results["e2e"]
                        attempt("e2e", lambda: self.server_cpu_baseline(e2e))
            if "sleep" in wanted:
                conc = system.sleep_concurrency
                if conc is None:
                    errors["sleep"] = "not supported (see notes)"
                else:
                    self.r.flushall()
                    workers["sleep"] = system.describe(self.variant, conc)
                    try:
                        worker = self.start_worker(conc, "sleep-worker")
                    except Exception as exc:
                        errors["sleep"] = f"worker: {type(exc).__name__}: {exc}"
                    else:
                        try:
                            attempt("sleep", lambda: self.w_sleep(worker, conc))
                        finally:
                            self.stop_worker(worker, "sleep-worker")
            if "memory" in wanted:
                if system.memory:
                    attempt("memory", self.w_memory)
                else:
                    errors["memory"] = "not supported (no memory workload in this driver)"
        finally:
            with contextlib.suppress(Exception):
                self.call("close")
            with contextlib.suppress(Exception):
                self.r.flushall()
        server = self.r.info("server")
        return {
            "system": system.name,
            "variant": self.variant,
            "label": self.args.label,
            "results": results,
            "errors": errors,
            "workers": workers,
            "notes": list(system.notes),
            "versions": {
                "python": platform.python_version(),
                **versions(system.packages),
                "server": f"{server.get('server_name', 'redis')} "
                f"{server.get('valkey_version') or server.get('redis_version')}",
            },
            "seconds": time.perf_counter() - began,
            "overhead_seconds": self.overhead,
        }

    def call_open(self) -> None:
        result = self.system.open(self.variant)
        if self.loop is not None and inspect.isawaitable(result):
            self.loop.run_until_complete(result)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the benchmark workloads of one system.")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--variant", default="default")
    parser.add_argument("--label", default="run", help="names the worker log files")
    parser.add_argument("--workloads", default=",".join(ALL_WORKLOADS))
    parser.add_argument("--n", type=int, default=2000, help="tasks for e2e and enqueue")
    parser.add_argument(
        "--batch-n", type=int, default=20000, help="tasks in the batch workload's one call"
    )
    parser.add_argument("--sleep-n", type=int, default=1000, help="tasks for the sleep workload")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument(
        "--latency-budget", type=float, default=20.0, help="seconds after which sampling stops"
    )
    parser.add_argument("--latency-min", type=int, default=20, help="samples taken regardless")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--delayed-n", type=int, default=1000, help="tasks of each phase")
    parser.add_argument(
        "--delayed-ahead", type=float, default=2.0, help="seconds from enqueue to the first due"
    )
    parser.add_argument(
        "--delayed-spread", type=float, default=2.0, help="seconds the spread phase's dues span"
    )
    parser.add_argument(
        "--result-ttl", type=float, default=2.0, help="memory workload: result TTL, seconds"
    )
    parser.add_argument("--log-dir", default=str(HERE.parent / ".cache" / "logs"))
    return parser.parse_args(argv)


def main(module_name: str) -> None:
    """Entry point of every ``<name>_bench.py``: ``worker`` runs the system's own worker
    loop (raw loop only); anything else runs the driver and prints one JSON line."""
    # Imported by name, not run as __main__, so task names match the worker's; after
    # the environment is set, since apps read their URL and variant when imported.
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        importlib.import_module(module_name).SYSTEM.run_worker(concurrency())
        return
    args = parse_args(sys.argv[1:])
    os.environ["BENCH_REDIS_URL"] = args.redis_url
    os.environ["BENCH_VARIANT"] = args.variant
    system: System = importlib.import_module(module_name).SYSTEM
    out = Driver(system, args).run()
    sys.stdout.flush()
    print(json.dumps(out), flush=True)
