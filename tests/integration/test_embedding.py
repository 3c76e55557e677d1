"""QTasks inside other programs: the examples/ web apps and asyncio program, run for real.

Each example is imported from its file (afresh per test, since its app is created at
import) against the suite's Redis server; the ones with a ``__main__`` are also run as
scripts. The last test checks that the sync API, called from many request threads,
creates no thread, connection or memory per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qtasks_core import QueueTasks
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
_loads = itertools.count()


@pytest.fixture(autouse=True)
def example_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_REDIS_URL", redis_url)
    # Entry-point plugins installed in this environment stay out of these tests.
    monkeypatch.setenv("QTASKS_PLUGINS", "")
    for name in ("QTASKS_EMBEDDED_WORKER", "QTASKS_WAIT_TIMEOUT", "QTASKS_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a new module; its app starts empty in Redis."""
    module_name = f"_example_{name}_{next(_loads)}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(module_name, None)
    app = module.qtasks_app if hasattr(module, "qtasks_app") else module.app
    flush(app.name)
    return module


def flush(name: str) -> None:
    """Delete everything an app left in Redis (the examples' names are fixed)."""
    other = QueueTasks(name, load_entry_points=False)
    other.flush_all()
    other.stop()


def live_workers(name: str) -> list[dict[str, Any]]:
    other = QueueTasks(name, load_entry_points=False)
    try:
        return other._portal.call(other.backend.stats()).workers
    finally:
        other.stop()


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **extra}


# -- FastAPI ------------------------------------------------------------------------------


def test_fastapi_with_the_worker_in_its_lifespan(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    monkeypatch.setenv("QTASKS_EMBEDDED_WORKER", "1")
    example = load_example("fastapi_app")
    name = example.qtasks_app.name
    with TestClient(example.api) as client:
        added = client.post("/add", params={"a": 2, "b": 3})
        assert added.status_code == 200, added.text
        body = added.json()
        assert body["status"] == "success" and body["result"] == 5
        task = client.get(f"/tasks/{body['uuid']}").json()
        assert task["status"] == "success" and task["returning"] == 5
        assert task["args"] == [2, 3] and task["task_name"] == "add"
        assert len(live_workers(name)) == 1  # the lifespan's worker

        assert client.get("/tasks/no-such-task").status_code == 404
        assert client.post("/add", params={"a": "two", "b": 3}).status_code == 422

        with ThreadPoolExecutor(8) as pool:
            sums = list(
                pool.map(
                    lambda i: client.post("/add", params={"a": i, "b": i}).json()["result"],
                    range(40),
                )
            )
        assert sums == [2 * i for i in range(40)]
    # Shutdown stopped the worker (its record is gone) and closed QTasks.
    assert live_workers(name) == []
    assert not example.qtasks_app._started
    example.qtasks_app.stop()


def test_fastapi_without_a_worker_answers_504_then_a_worker_process_finishes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi.testclient import TestClient

    monkeypatch.setenv("QTASKS_WAIT_TIMEOUT", "0.3")
    example = load_example("fastapi_app")
    with TestClient(example.api) as client:
        late = client.post("/add", params={"a": 4, "b": 5})
        assert late.status_code == 504
        detail = late.json()["detail"]
        assert detail["status"] == "new" and detail["poll"] == f"/tasks/{detail['uuid']}"
        assert client.get(detail["poll"]).json()["status"] == "new"

        # The worker as the example's docstring runs it, here until the queue is empty.
        command = ["worker", "-A", "fastapi_app:qtasks_app", "--burst"]
        worker = subprocess.run(
            [sys.executable, "-m", "qtasks_core", *command],
            cwd=EXAMPLES,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert worker.returncode == 0, worker.stdout + worker.stderr
        task = client.get(detail["poll"]).json()
        assert task["status"] == "success" and task["returning"] == 9
    example.qtasks_app.stop()


# -- Flask --------------------------------------------------------------------------------


def test_flask_with_a_running_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_example("flask_app")
    qtasks_app = example.qtasks_app
    client = example.api.test_client()
    try:
        with qtasks_app.running_worker(concurrency=4):
            added = client.post("/add?a=2&b=3")
            assert added.status_code == 200, added.text
            body = added.get_json()
            assert body["status"] == "success" and body["result"] == 5
            task = client.get(f"/tasks/{body['uuid']}").get_json()
            assert task["status"] == "success" and task["returning"] == 5
            assert client.get("/tasks/no-such-task").status_code == 404
            assert client.post("/add?a=two&b=3").status_code == 400

            def request(i: int) -> int:
                # One test client per thread, as each WSGI request has its own context.
                answer = example.api.test_client().post(f"/add?a={i}&b=1")
                return int(answer.get_json()["result"])

            with ThreadPoolExecutor(8) as pool:
                assert list(pool.map(request, range(40))) == [i + 1 for i in range(40)]
            assert len(live_workers(qtasks_app.name)) == 1

        # No worker any more: the wait runs out, the task stays queued.
        assert live_workers(qtasks_app.name) == []
        monkeypatch.setenv("QTASKS_WAIT_TIMEOUT", "0.2")
        late = client.post("/add?a=1&b=1")
        assert late.status_code == 504
        assert client.get(late.get_json()["poll"]).get_json()["status"] == "new"
    finally:
        qtasks_app.stop()
    portal = f"qtasks-portal-{qtasks_app.name}"
    assert not any(t.name == portal for t in threading.enumerate())


def test_flask_app_runs_as_a_script_with_its_worker() -> None:
    port = free_port()
    name = load_example("flask_app").qtasks_app.name
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "flask_app.py")],
        cwd=EXAMPLES,
        env=subprocess_env(QTASKS_EMBEDDED_WORKER="1", PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def post() -> dict[str, Any] | None:
            assert process.poll() is None, process.communicate()[0]
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/add?a=20&b=22", method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=15) as answer:
                    return dict(json.loads(answer.read()))
            except (urllib.error.URLError, ConnectionError):
                return None

        body = wait_for(post, what="the Flask server")
        assert body["status"] == "success" and body["result"] == 42
        assert len(live_workers(name)) == 1
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert live_workers(name) == []  # the embedded worker was stopped on the way out


# -- asyncio ------------------------------------------------------------------------------


def test_asyncio_program_runs_a_worker_next_to_its_own_coroutines() -> None:
    example = load_example("asyncio_embed")
    outcome = asyncio.run(example.main(25))
    assert outcome["squares"] == [i * i for i in range(25)]
    assert outcome["doubles"] == [2 * i for i in range(25)]
    assert outcome["heartbeats"] > 1  # the program's own coroutine ran meanwhile
    assert not example.app._started
    assert live_workers(example.app.name) == []


def test_asyncio_worker_stop_lets_running_tasks_finish_and_leaves_the_rest_queued() -> None:
    example = load_example("asyncio_embed")
    app = example.app

    async def main() -> list[str]:
        worker = app.worker(concurrency=2, grace=10)
        running = asyncio.create_task(worker.run())
        tasks = [await app.add_task_async("slow_double", i) for i in range(30)]
        await asyncio.sleep(0.05)
        worker.stop()
        await running
        statuses = [(await app.get_async(t.uuid)).status for t in tasks]
        await app.stop_async()
        return statuses

    statuses = asyncio.run(main())
    assert set(statuses) == {"success", "new"}  # nothing left half-done
    assert statuses.count("new") > 10  # not started: still queued for another worker
    flush(app.name)


def test_asyncio_example_runs_as_a_script() -> None:
    load_example("asyncio_embed")  # start from an empty app
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "asyncio_embed.py")],
        cwd=EXAMPLES,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "squares: [0, 1, 4, 9, 16" in done.stdout
    assert "doubles: [0, 2, 4, 6" in done.stdout


# -- many sync calls: nothing grows per call ------------------------------------------------

WORKER_APP = """
import os

from qtasks_core import QueueTasks

app = QueueTasks(os.environ["QTASKS_TEST_APP"])


@app.task
def add(a: int, b: int) -> int:
    return a + b
"""


def redis_connections(port: int) -> int:
    """ESTABLISHED TCP connections from this process to ``port`` (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")
def test_1000_sync_calls_from_request_threads_keep_threads_connections_memory_flat(
    redis_server: Any, tmp_path: Path
) -> None:
    name = f"embed-flat-{os.getpid()}"
    app = QueueTasks(name, load_entry_points=False)
    (tmp_path / "flat_app.py").write_text(textwrap.dedent(WORKER_APP))
    # The worker is another process, as behind a real web app: only the web side is counted.
    worker = subprocess.Popen(
        [sys.executable, "-m", "qtasks_core", "worker", "-A", "flat_app:app", "-c", "32"],
        cwd=tmp_path,
        env=subprocess_env(QTASKS_TEST_APP=name),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def handle_request(i: int) -> None:
        """What a Flask view does: enqueue and wait, then read the task back."""
        task = app.add_task("add", i, 1, timeout=30)
        assert task.returning == i + 1
        again = app.get(task.uuid)
        assert again is not None and again.status == "success"

    def serve(requests: range, concurrency: int = 10) -> None:
        """A thread per request, as Werkzeug's threaded server does."""
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                handle_request(i)
            except BaseException as exc:
                errors.append(exc)

        for start in range(requests.start, requests.stop, concurrency):
            threads = [
                threading.Thread(target=run, args=(i,))
                for i in range(start, min(start + concurrency, requests.stop))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]

    def snapshot() -> tuple[int, int, int]:
        gc.collect()
        return threading.active_count(), redis_connections(redis_server.port), rss_bytes()

    try:
        serve(range(100))
        threads_100, connections_100, rss_100 = snapshot()
        serve(range(100, 1000))
        threads_1000, connections_1000, rss_1000 = snapshot()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        app.flush_all()
        app.stop()
    assert connections_100 >= 1
    assert threads_1000 == threads_100, (threads_100, threads_1000)
    assert connections_1000 <= connections_100 + 2, (connections_100, connections_1000)
    assert rss_1000 - rss_100 <= 10 * 1024 * 1024, (rss_100, rss_1000)
