"""What the scale drivers (``scale_<name>.py``) share: the depth curve and the
worker-process curve, on top of ``_common``'s workers, counter and producer calls.

Run by ``bench/scale.py`` inside a system's venv::

    <venv>/bin/python bench/systems/scale_qtasks.py --redis-url URL --part depth \\
        --sizes 1000,10000 --enqueue-n 2000 --claim-n 2000 --probe-samples 100

and prints one JSON line (the last line of its stdout). Parts: ``depth`` (enqueue,
claim and round-trip p50 with a backlog), ``workers`` (e2e tasks/s with 1, 2 and 4
worker processes); a driver may add its own (QTasks: ``records``, ``ticks``).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    COUNT_KEY,
    HERE,
    TARGET_KEY,
    Driver,
    System,
    WorkerProcess,
    percentile,
    versions,
)

#: Tasks the claim phase lets the worker run before it starts the clock (start-up,
#: imports, the first connections are not the claim rate).
CLAIM_WARM = 200


class ScaleSystem(System):
    """A :class:`System` with what the scale curves need besides the peer benchmark's
    calls. Coroutines where :attr:`is_async` is true, as there."""

    #: How :meth:`prefill` writes its backlog, for the results.
    prefill_how = ""
    #: How the system orders its queue and where the probe's round trips go.
    probe_how = ""

    def prefill(self, n: int) -> Any:
        """Put ``n`` no-op tasks in the main queue, cheaply (see :attr:`prefill_how`)."""
        raise NotImplementedError

    def probe_worker_argv(self) -> list[str]:
        """A worker serving the probe queue only (the backlog is left where it is)."""
        raise NotImplementedError

    def probe_roundtrip(self) -> Any:
        """Enqueue a no-op task on the probe queue and wait for its result."""
        raise NotImplementedError


class ScaleDriver(Driver):
    """The peer benchmark's driver, with the scale curves."""

    system: ScaleSystem

    def run_async(self, method: str, *args: Any) -> Any:
        result = getattr(self.system, method)(*args)
        if self.loop is not None and inspect.isawaitable(result):
            return self.loop.run_until_complete(result)
        return result

    def used_memory(self) -> int:
        return int(self.r.info("memory")["used_memory"])

    def spawn(self, argv: list[str], tag: str) -> WorkerProcess:
        """A worker process, not waited for (the caller knows when it is ready)."""
        env = dict(os.environ)
        env.update(
            BENCH_REDIS_URL=self.args.redis_url,
            BENCH_VARIANT=self.variant,
            BENCH_CONCURRENCY="",
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.system.worker_env(self.variant, None))
        return WorkerProcess(argv, env, self.log_dir / f"{self.args.label}-{tag}.log")

    def blpop_done(self, timeout: float, worker: WorkerProcess) -> None:
        if not self.wait_done(timeout, worker):
            raise RuntimeError(
                f"only {self.count()} tasks done in {timeout:.0f}s:\n{worker.tail()}"
            )

    # -- the depth curve ---------------------------------------------------------------

    def depth_point(self, size: int) -> dict[str, Any]:
        """Enqueue rate, round-trip p50 and claim rate with ``size`` tasks queued."""
        args = self.args
        self.r.flushall()
        self.repeat("enqueue_noop", 20)  # warm the producer's connections and scripts
        self.r.flushall()
        memory_empty = self.used_memory()
        began = time.perf_counter()
        self.run_async("prefill", size)
        prefill_seconds = time.perf_counter() - began
        memory = self.used_memory()

        enqueue_seconds = self.repeat("enqueue_noop", args.enqueue_n)
        point: dict[str, Any] = {
            "size": size,
            "prefill_seconds": prefill_seconds,
            "prefill_per_second": size / prefill_seconds,
            "used_memory": memory,
            "used_memory_empty": memory_empty,
            "enqueue_n": args.enqueue_n,
            "enqueue_per_second": args.enqueue_n / enqueue_seconds,
        }
        point.update(self.probe_latency())
        point.update(self.claim_rate(size + args.enqueue_n))
        point["used_memory_after"] = self.used_memory()
        return point

    def probe_latency(self) -> dict[str, Any]:
        """Round trips on the probe queue, by a worker of their own, while the backlog
        sits in the main queue (no worker serves it meanwhile)."""
        args = self.args
        self.arm(0)  # never reached: no "done" markers
        worker = self.spawn(self.system.probe_worker_argv(), "probe-worker")
        try:
            # The first round trips wait for the worker to come up: retried, not counted.
            deadline = time.monotonic() + 90
            while True:
                try:
                    self.run_async("probe_roundtrip")
                    break
                except Exception as exc:
                    if time.monotonic() > deadline or not worker.alive():
                        raise RuntimeError(
                            f"the probe worker did not answer:\n{worker.tail()}"
                        ) from exc
            for _ in range(10):
                self.run_async("probe_roundtrip")
            values: list[float] = []
            begin = time.perf_counter()
            for i in range(args.probe_samples):
                start = time.perf_counter()
                self.run_async("probe_roundtrip")
                values.append((time.perf_counter() - start) * 1000)
                if i + 1 >= 10 and time.perf_counter() - begin > args.probe_budget:
                    break
        finally:
            worker.stop()
        values.sort()
        return {
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "probe_samples": len(values),
        }

    def claim_rate(self, queued: int) -> dict[str, Any]:
        """The system's worker drains ``--claim-n`` tasks of the backlog: the clock runs
        from the :data:`CLAIM_WARM`-th task done to the last of them."""
        n = self.args.claim_n
        if CLAIM_WARM + n > queued:
            raise RuntimeError(f"claim: {CLAIM_WARM}+{n} tasks asked of a queue of {queued}")
        self.arm(CLAIM_WARM)
        worker = self.spawn(self.system.worker_argv(self.variant, None), "claim-worker")
        try:
            self.blpop_done(120, worker)
            start = time.perf_counter()
            began = int(self.r.get(COUNT_KEY) or 0)
            # Raised while the worker runs: far enough ahead (n tasks) to be set in time.
            self.r.set(TARGET_KEY, CLAIM_WARM + n)
            self.blpop_done(max(120.0, n / 50), worker)
            seconds = time.perf_counter() - start
        finally:
            worker.stop()
        done = CLAIM_WARM + n - began
        return {"claim_n": done, "claim_seconds": seconds, "claim_per_second": done / seconds}

    # -- the worker-process curve ---------------------------------------------------------

    def workers_point(self, processes: int) -> dict[str, Any]:
        """e2e tasks/s (``_common``'s e2e workload) with ``processes`` worker processes."""
        self.r.flushall()
        argv = self.system.worker_argv(self.variant, None)
        workers = [self.spawn(argv, f"worker{i + 1}of{processes}") for i in range(processes)]
        try:
            self.wait_ready(workers[0])
            # The first to answer may not be the last to come up: give the others time
            # and a warm-up of their own.
            time.sleep(1.0)
            self.arm(200)
            self.repeat("enqueue_noop", 200)
            self.blpop_done(60, workers[0])
            dead = [w for w in workers if not w.alive()]
            if dead:
                raise RuntimeError(f"a worker exited:\n{dead[0].tail()}")
            result = self.w_e2e(workers[0])
        finally:
            for worker in workers:
                worker.stop()
        self.r.flushall()
        return {"processes": processes, **result}


def part_depth(driver: ScaleDriver) -> dict[str, Any]:
    points = [driver.depth_point(size) for size in driver.args.sizes]
    probe = driver.system.probe_worker_argv()
    return {
        "points": points,
        "prefill": driver.system.prefill_how,
        "probe": driver.system.probe_how,
        "worker": driver.system.describe(driver.variant, None),
        "probe_worker": " ".join([Path(probe[0]).name, *probe[1:]]),
    }


def part_workers(driver: ScaleDriver) -> dict[str, Any]:
    points = [driver.workers_point(k) for k in driver.args.processes]
    return {"points": points, "worker": driver.system.describe(driver.variant, None)}


PARTS: dict[str, Callable[[ScaleDriver], dict[str, Any]]] = {
    "depth": part_depth,
    "workers": part_workers,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the scale curves of one system.")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--part", required=True)
    parser.add_argument("--variant", default="default")
    parser.add_argument("--label", default="scale")
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--enqueue-n", type=int, default=2000)
    parser.add_argument("--claim-n", type=int, default=2000)
    parser.add_argument("--probe-samples", type=int, default=200)
    parser.add_argument("--probe-budget", type=float, default=10.0)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--n", type=int, default=4000, help="tasks of each e2e point")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--tick-budget", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--log-dir", default=str(HERE.parent / ".cache" / "logs"))
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.processes = [int(s) for s in args.processes.split(",") if s]
    return args


def main(system: ScaleSystem, extra: dict[str, Callable[[ScaleDriver], dict[str, Any]]]) -> None:
    """Run one part for ``system`` and print one JSON line. ``BENCH_REDIS_URL`` is set by
    ``bench/scale.py`` in the driver's environment: the system modules read it when
    imported."""
    args = parse_args(sys.argv[1:])
    parts = {**PARTS, **extra}
    driver = ScaleDriver(system, args)
    began = time.perf_counter()
    out: dict[str, Any] = {"system": system.name, "part": args.part}
    driver.r.flushall()
    opened = False
    try:
        driver.call_open()
        opened = True
        out["result"] = parts[args.part](driver)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    finally:
        if opened:
            with contextlib.suppress(Exception):
                driver.call("close")
        with contextlib.suppress(Exception):
            driver.r.flushall()
    server = driver.r.info("server")
    out["versions"] = {
        "python": platform.python_version(),
        **versions(system.packages),
        "server": f"{server.get('server_name', 'redis')} "
        f"{server.get('valkey_version') or server.get('redis_version')}",
    }
    out["seconds"] = time.perf_counter() - began
    sys.stdout.flush()
    print(json.dumps(out), flush=True)
