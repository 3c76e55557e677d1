"""Redis Cluster: what one shard can carry, and what reaching it costs the client.

Run ``python bench/cluster.py [--n 5000] [--rounds 3]`` from the repository root
(``--only partitions`` runs the third part alone). It forms a cluster of three primaries
on loopback (``redis-server`` on PATH, else Valkey), then:

1. **Per-shard capacity.** One app (all of its keys in one slot, so on one primary)
   gets ``--n`` tasks, one ``add_task`` at a time from 32 concurrent producers, run by
   a worker of 16 slots. The primary's own CPU (``used_cpu_user + used_cpu_sys`` of
   ``INFO cpu``) over the run divided by the tasks is the server's cost of one task's
   whole life; its inverse is the most tasks/s one shard can carry whatever the
   number of workers (Redis runs commands on one thread). Apps on other shards add
   nothing to it. Its ``INFO commandstats`` give the commands per task, and
   ``FCALL``'s own time the share spent inside the functions.
2. **Client cost of the route.** QTasks talks to the primary that serves the app's slot
   over its lean connection. The alternative is redis-py's ``RedisCluster``, which
   routes each command by its keys. The same pipelined ``GET`` load through each
   (and through plain redis-py to the same node) in commands/s; the server work is the
   same, so the differences are the clients' own.
3. **Partitions.** The same load (``--pn`` tasks, 32 producers in all, a worker of 16
   slots per app) split evenly over 1, 2 and 3 apps whose names were chosen by their
   key slot so that each lands on a different primary (printed). For each split, net
   of each primary's idle CPU (measured first): the busiest primary's CPU over the run
   divided by *all* the tasks (what bounds the cluster's rate: ideally 1/apps of one
   app's), its CPU per task it served itself (a task's cost on its shard), all the
   primaries' CPU per task (the total work), and ``FCALL`` calls per task. Every app
   runs in this process, each on its own event-loop thread, so with more apps each
   gets a smaller share of the clients' pace, its calls carry fewer tasks (more
   ``FCALL`` per task) and a task costs its shard a little more: the split is
   slightly short of 1/apps here. Wall rates say little; the server CPU is the result.

Prints tables of medians; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

from qtasks_core import QueueTasks
from qtasks_core.backends._resp import RespConnection
from qtasks_core.keys import Keys
from tests.cluster_support import Cluster

PRODUCERS = 32


def cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def produce(app: QueueTasks, n: int, producers: int) -> None:
    """``n`` tasks exactly, one ``add_task`` at a time from ``producers`` coroutines."""

    async def one(share: int) -> None:
        for _ in range(share):
            await app.add_task_async("noop")

    shares = [n // producers + (i < n % producers) for i in range(producers)]
    await asyncio.gather(*(one(share) for share in shares))


def noop_app(cluster: Cluster, name: str) -> QueueTasks:
    app = QueueTasks(name, redis_url=cluster.url, load_entry_points=False)

    @app.task
    def noop() -> None:
        return None

    app.start()
    return app


def commands(client: redis.Redis) -> dict[str, int]:
    """Commands the server ran so far, by name (those a function ran included), and
    ``fcall-usec``: the server's time inside the functions (their commands included)."""
    stats = client.info("commandstats")
    out = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    out["fcall-usec"] = int(stats.get("cmdstat_fcall", {}).get("usec", 0))
    return out


def capacity(cluster: Cluster, n: int, name: str) -> tuple[float, float, dict[str, float], float]:
    """(server CPU µs per task, wall tasks/s, commands per task by name, µs per task
    inside the functions) for one app on its shard."""
    n -= n % PRODUCERS
    app = noop_app(cluster, name)
    owner = cluster.clients[cluster.owner(name).port]
    ran = commands(owner)
    before, started = cpu(owner), time.perf_counter()
    polls = 0
    with app.running_worker(concurrency=16):
        app._portal.call(produce(app, n, PRODUCERS))
        while owner.hget(f"qtasks:{{{name}}}:counts", "success") != str(n).encode():
            polls += 1
            time.sleep(0.01)
    wall = time.perf_counter() - started
    used = cpu(owner) - before
    app.stop()
    # This script's own reads (its polls, its INFO) are not the tasks'.
    after = commands(owner)
    after["hget"] = after.get("hget", 0) - polls - 1
    per_task = {
        command: (calls - ran.get(command, 0)) / n
        for command, calls in after.items()
        if command != "info" and calls > ran.get(command, 0)
    }
    inside = per_task.pop("fcall-usec", 0.0)
    return used / n * 1e6, n / wall, per_task, inside


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


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares as even as whole numbers allow."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def background(cluster: Cluster, seconds: float = 3.0) -> dict[int, float]:
    """Each idle primary's own CPU per second (its timers, the cluster bus)."""
    clients = {node.port: cluster.clients[node.port] for node in cluster.primaries}
    before = {port: cpu(client) for port, client in clients.items()}
    time.sleep(seconds)
    return {port: (cpu(client) - before[port]) / seconds for port, client in clients.items()}


def partitions(
    cluster: Cluster, n: int, count: int, tag: str, idle: dict[int, float]
) -> dict[str, float]:
    """``n`` tasks over ``count`` apps on distinct primaries: server CPU per primary, net
    of each primary's ``idle`` CPU per second over the run's wall time."""
    names = cluster.app_names(tag, count)
    owners = {name: cluster.owner(name).port for name in names}
    shares = dict(zip(names, split(n, count), strict=True))
    producers = dict(zip(names, split(PRODUCERS, count), strict=True))
    for name in names:
        slot = key_slot(Keys.for_app(name).prefix.encode())
        print(f"  {count} app(s): {name!r} -> slot {slot} -> primary :{owners[name]}")
    served = {node.port: 0 for node in cluster.primaries}
    for name, share in shares.items():
        served[owners[name]] += share
    apps = {name: noop_app(cluster, name) for name in names}
    clients = {port: cluster.clients[port] for port in served}
    ran = {port: commands(client) for port, client in clients.items()}
    before = {port: cpu(client) for port, client in clients.items()}
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        for app in apps.values():
            stack.enter_context(app.running_worker(concurrency=16))
        sending = [
            asyncio.run_coroutine_threadsafe(
                produce(app, shares[name], producers[name]), app._portal.loop
            )
            for name, app in apps.items()
        ]
        for future in sending:
            future.result()
        for name in names:
            done = str(shares[name]).encode()
            counts = f"qtasks:{{{name}}}:counts"
            while clients[owners[name]].hget(counts, "success") != done:
                time.sleep(0.01)
    wall = time.perf_counter() - started
    used = {
        port: cpu(client) - before[port] - idle[port] * wall for port, client in clients.items()
    }
    fcalls = sum(
        commands(client).get("fcall", 0) - ran[port].get("fcall", 0)
        for port, client in clients.items()
    )
    for app in apps.values():
        app.stop()
    busiest = max((port for port in used if served[port]), key=lambda port: used[port])
    return {
        "busiest": used[busiest] / n * 1e6,
        "own": used[busiest] / served[busiest] * 1e6,
        "total": sum(used.values()) / n * 1e6,
        "ceiling": n / used[busiest],
        "fcall": fcalls / n,
        "wall": n / wall,
    }


def report_partitions(
    n: int, rounds: int, runs: dict[int, list[dict[str, float]]], idle: dict[int, float]
) -> None:
    print(f"\nPartitions: {n} tasks per split, {rounds} rounds, medians; server CPU net of")
    print(
        "each primary's idle CPU ("
        + ", ".join(f":{port} {value * 1e3:.1f} ms/s" for port, value in idle.items())
        + ", measured first)"
    )
    print(
        "\n| apps on distinct primaries | busiest primary's CPU / all tasks "
        "| its CPU / tasks it served | all primaries' CPU / all tasks "
        "| ceiling (tasks / busiest CPU s) | FCALL per task | wall rate |"
        "\n|---|---|---|---|---|---|---|"
    )
    base = statistics.median(r["busiest"] for r in runs[1])
    for count, results in runs.items():

        def med(field: str, results: list[dict[str, float]] = results) -> float:
            return statistics.median(r[field] for r in results)

        print(
            f"| {count} | {med('busiest'):.0f} µs ({med('busiest') / base:.2f}x) "
            f"| {med('own'):.0f} µs | {med('total'):.0f} µs | {med('ceiling'):,.0f} tasks/s "
            f"| {med('fcall'):.2f} | {med('wall'):,.0f} tasks/s |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="tasks per capacity round")
    parser.add_argument("--calls", type=int, default=20000, help="GETs per client round")
    parser.add_argument("--pn", type=int, default=6000, help="tasks per partitions split")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["partitions"], help="run this part alone")
    args = parser.parse_args()
    per_task: list[float] = []
    rate: list[float] = []
    routes: dict[str, list[float]] = {}
    ran_per_task: dict[str, list[float]] = {}
    in_functions: list[float] = []
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: [], 3: []}
    with tempfile.TemporaryDirectory() as folder:
        cluster = Cluster(Path(folder) / "cluster", primaries=3)
        try:
            names = cluster.app_names("bench-cluster", 3)
            idle = background(cluster)
            for r in range(args.rounds):
                if args.only is None:
                    us, tps, ran, inside = capacity(cluster, args.n, f"{names[r % 3]}-r{r}")
                    per_task.append(us)
                    in_functions.append(inside)
                    for command, calls in ran.items():
                        ran_per_task.setdefault(command, []).append(calls)
                    rate.append(tps)
                    for label, value in asyncio.run(route(cluster, names[0], args.calls)).items():
                        routes.setdefault(label, []).append(value)
                print(f"round {r}, partitions:")
                for count in runs:
                    runs[count].append(
                        partitions(cluster, args.pn, count, f"bench-part-r{r}-k{count}", idle)
                    )
        finally:
            cluster.stop()
    report_partitions(args.pn, args.rounds, runs, idle)
    if args.only is not None:
        return 0
    us = statistics.median(per_task)
    print(f"\n{args.rounds} rounds, medians; {args.n} tasks per round")
    print("\n| per shard | figure |\n|---|---|")
    print(f"| primary's CPU per task (enqueue, claim, finish, waits) | {us:.0f} µs |")
    print(f"| shard capacity (1 s of primary CPU / CPU per task) | {1e6 / us:,.0f} tasks/s |")
    ran = {command: statistics.median(v) for command, v in ran_per_task.items()}
    fcalls = ran.get("fcall", 0.0)
    print(
        f"| commands the primary ran per task | {sum(ran.values()):.1f}: {fcalls:.2f} FCALL "
        f"and {sum(ran.values()) - fcalls:.1f} others (inside the functions, or sent) |"
    )
    inside = statistics.median(in_functions)
    print(f"| of the CPU per task, inside the functions (FCALL's own time) | {inside:.0f} µs |")
    wall = statistics.median(rate)
    print(f"| this run's wall rate (2 cores shared by all) | {wall:,.0f} tasks/s |")
    base = statistics.median(routes["QTasks lean connection to the slot's primary"])
    print("\n| client | GET/s | vs lean |\n|---|---|---|")
    for label, values in routes.items():
        value = statistics.median(values)
        print(f"| {label} | {value:,.0f} | {value / base:.2f}x |")
    print("\n| command | per task |\n|---|---|")
    for command, calls in sorted(ran.items(), key=lambda item: -item[1]):
        if calls >= 0.05:
            print(f"| {command.upper()} | {calls:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
