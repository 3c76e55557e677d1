"""Redis Cluster: what one shard can carry, and what reaching it costs the client.

Run ``python bench/cluster.py [--n 5000] [--rounds 3]`` from the repository root. It forms
a cluster of three primaries on loopback (``redis-server`` on PATH, else Valkey), then:

1. **Per-shard capacity.** One app (all of its keys in one slot, so on one primary)
   gets ``--n`` tasks, one ``add_task`` at a time from 32 concurrent producers, run by
   a worker of 16 slots. The primary's own CPU (``used_cpu_user + used_cpu_sys`` of
   ``INFO cpu``) over the run divided by the tasks is the server's cost of one task's
   whole life; its inverse is the most tasks/s one shard can carry whatever the
   number of workers (Redis runs commands on one thread). Apps on other shards add
   nothing to it.
2. **Client cost of the route.** QTasks talks to the primary that serves the app's slot
   over its lean connection. The alternative is redis-py's ``RedisCluster``, which
   routes each command by its keys. The same pipelined ``GET`` load through each
   (and through plain redis-py to the same node) in commands/s; the server work is the
   same, so the differences are the clients' own.

Prints one table of medians; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
import redis.asyncio as aioredis

from qtasks_core import QueueTasks
from qtasks_core.backends._resp import RespConnection
from tests.cluster_support import Cluster

PRODUCERS = 32


def cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def produce(app: QueueTasks, n: int, producers: int) -> None:
    async def one(share: int) -> None:
        for _ in range(share):
            await app.add_task_async("noop")

    await asyncio.gather(*(one(n // producers) for _ in range(producers)))


def capacity(cluster: Cluster, n: int, name: str) -> tuple[float, float]:
    """(server CPU µs per task, wall tasks/s) for one app on its shard."""
    n -= n % PRODUCERS
    app = QueueTasks(name, redis_url=cluster.url, load_entry_points=False)

    @app.task
    def noop() -> None:
        return None

    app.start()
    owner = cluster.clients[cluster.owner(name).port]
    before, started = cpu(owner), time.perf_counter()
    with app.running_worker(concurrency=16):
        app._portal.call(produce(app, n, PRODUCERS))
        while owner.hget(f"qtasks:{{{name}}}:counts", "success") != str(n).encode():
            time.sleep(0.01)
    wall = time.perf_counter() - started
    used = cpu(owner) - before
    app.stop()
    return used / n * 1e6, n / wall


async def route(cluster: Cluster, name: str, n: int) -> dict[str, float]:
    """Pipelined GETs of one key of the app (64 in flight), commands/s per client."""
    key = f"qtasks:{{{name}}}:seq"
    owner = cluster.owner(name)
    lean = RespConnection(f"redis://127.0.0.1:{owner.port}/0")
    routed = aioredis.RedisCluster(host="127.0.0.1", port=cluster.primaries[0].port)
    plain = aioredis.Redis(port=owner.port)
    clients = {
        "QTasks lean connection to the slot's primary": lambda: lean.execute("GET", key),
        "redis-py Redis to the slot's primary": lambda: plain.get(key),
        "redis-py RedisCluster (routes each command)": lambda: routed.get(key),
    }
    out = {}
    for label, call in clients.items():
        await call()

        async def worker(share: int, call=call) -> None:  # type: ignore[no-untyped-def]
            for _ in range(share):
                await call()

        started = time.perf_counter()
        await asyncio.gather(*(worker(n // 64) for _ in range(64)))
        out[label] = (n // 64 * 64) / (time.perf_counter() - started)
    await lean.close()
    await routed.aclose()
    await plain.aclose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="tasks per capacity round")
    parser.add_argument("--calls", type=int, default=20000, help="GETs per client round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cluster = Cluster(Path(folder) / "cluster", primaries=3)
        try:
            names = cluster.app_names("bench-cluster", 3)
            per_task, rate = [], []
            routes: dict[str, list[float]] = {}
            for r in range(args.rounds):
                us, tps = capacity(cluster, args.n, f"{names[r % 3]}-r{r}")
                per_task.append(us)
                rate.append(tps)
                for label, value in asyncio.run(route(cluster, names[0], args.calls)).items():
                    routes.setdefault(label, []).append(value)
        finally:
            cluster.stop()
    us = statistics.median(per_task)
    print(f"\n{args.rounds} rounds, medians; {args.n} tasks per round")
    print("\n| per shard | figure |\n|---|---|")
    print(f"| primary's CPU per task (enqueue, claim, finish, waits) | {us:.0f} µs |")
    print(f"| shard capacity (1 s of primary CPU / CPU per task) | {1e6 / us:,.0f} tasks/s |")
    wall = statistics.median(rate)
    print(f"| this run's wall rate (2 cores shared by all) | {wall:,.0f} tasks/s |")
    base = statistics.median(routes["QTasks lean connection to the slot's primary"])
    print("\n| client | GET/s | vs lean |\n|---|---|---|")
    for label, values in routes.items():
        value = statistics.median(values)
        print(f"| {label} | {value:,.0f} | {value / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
