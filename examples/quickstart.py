"""QTasks quickstart: declare tasks, enqueue a batch, let a worker run them.

Run it with ``python examples/quickstart.py``. With no ``QTASKS_REDIS_URL`` set, QTasks
starts its embedded Valkey server (data in ``examples/.qtasks``), so there is nothing
to install by hand. The worker is the real ``qtasks worker`` command, in its own
process, exactly as you would run it in production.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from qtasks_core import QueueTasks, TaskContext

HERE = Path(__file__).resolve().parent
# Producer and worker must find the same embedded server: pin its folder.
os.environ.setdefault("QTASKS_HOME", str(HERE / ".qtasks"))

app = QueueTasks("quickstart")


@app.task
def add(a: int, b: int) -> int:
    """A plain function: runs in the worker's thread pool."""
    return a + b


@app.task(echo=True, retry=2, retry_backoff=0.1)
async def greet(ctx: TaskContext, name: str) -> str:
    """An async task with a context; retried twice on error."""
    await asyncio.sleep(0.01)
    return f"Hello, {name}! (task {ctx.task_uuid[:8]}, attempt {ctx.attempt})"


def main(n: int = 2000) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console()
    app.flush_all()  # a clean slate for the demo's own app
    console.print(f"[bold]QTasks quickstart[/] on {app.backend.location}")

    started = time.perf_counter()
    # One call, one atomic write per 1,000 tasks; app.add_task("add", 1, 2) adds one.
    tasks = app.add_tasks([("add", (i, i * 2)) for i in range(n)])
    tasks += [app.add_task("greet", name) for name in ("Ada", "Grace", "Linus")]
    enqueued = time.perf_counter() - started
    console.print(
        f"enqueued {len(tasks)} tasks in {enqueued:.2f}s ({len(tasks) / enqueued:,.0f} tasks/s)"
    )

    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qtasks_core",
            "worker",
            "-A",
            "quickstart:app",
            "--burst",
            "--log-level",
            "warning",
        ],
        cwd=HERE,
    )
    results = []
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("worker running tasks", total=len(tasks))
        for task in tasks:
            # Blocks in Redis until the result is written: no polling.
            results.append(app.wait(task.uuid, timeout=120))
            progress.advance(bar)
    elapsed = time.perf_counter() - started
    worker.wait(timeout=60)

    for task in results[:3] + results[-3:]:
        console.print(f"  {task.task_name}{task.args} -> {task.returning!r} ({task.status})")
    ok = sum(task.status == "success" for task in results)
    console.print(
        f"[green]{ok}/{len(results)} succeeded[/]; end to end "
        f"{len(results) / elapsed:,.0f} tasks/s (enqueue, run, results read back)"
    )
    if app.redis_url is None and "QTASKS_REDIS_URL" not in os.environ:
        console.print(
            f"The embedded server keeps running for the next run; stop it with "
            f"QTASKS_HOME={os.environ['QTASKS_HOME']} qtasks server stop"
        )
    app.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
