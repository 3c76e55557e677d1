"""A third-party plugin as users get it: pip-installed next to QTasks, loaded by name.

``examples/plugins/qtasks-prometheus`` is installed with QTasks into a fresh virtual
environment (one per module); then ``qtasks plugins`` lists it, a worker of an app that
never mentions it serves its metrics, and ``QTASKS_DISABLE_PLUGINS`` turns it off. The
last tests run the plugin object in this process (HTTP edge cases, a busy port, several
workers sharing the endpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qtasks_core import QueueTasks
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SRC = ROOT / "examples" / "plugins" / "qtasks-prometheus"
HOOKS = {"worker_start", "worker_stop", "worker_execute_before", "worker_execute_after"}
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")

# The app the worker runs: nothing in it refers to the plugin.
APP_MODULE = """
import os
import time

from qtasks_core import QueueTasks

app = QueueTasks(os.environ["QTASKS_TEST_APP"])


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def fail() -> None:
    raise ValueError("planned failure")


@app.task
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
"""


# -- the text exposition format ---------------------------------------------------------

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?P<labels>\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})?'
    r" (?P<value>[-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))$"
)


def parse_metrics(text: str) -> dict[str, float]:
    """``{'name{labels}': value}``; fails on any line the format does not allow."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a valid sample line: {line!r}"
        name = match["name"]
        family = name if name in types else re.sub(r"_(bucket|sum|count)$", "", name)
        assert family in types, f"sample {name} comes before its # TYPE line"
        key = name + (match["labels"] or "")
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(match["value"])
    return samples


def scrape(port: int, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return resp.read().decode()


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


# -- the virtual environment ------------------------------------------------------------


@dataclass
class Venv:
    python: Path
    env: dict[str, str]  # an environment that sees only the venv's packages
    work: Path  # a folder outside the source tree, to run from

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args],
            env=env or self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _clean_environment(bin_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("QTASKS_")
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """QTasks and the plugin installed by pip into a new virtual environment.

    pip builds from copies of the two source trees (what their source distributions
    hold), so that building never writes ``build/`` or ``*.egg-info`` into the
    repository. Both are installed in one pip run: the plugin's ``qtasks-core``
    requirement is met by this QTasks, never by a download.
    """
    base = tmp_path_factory.mktemp("distribution")
    core = base / "src" / "qtasks-core"
    core.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, core / name)
    for package in ("qtasks_core", "qtasks_hooks"):
        shutil.copytree(ROOT / package, core / package, ignore=COPY_IGNORE)
    plugin = base / "src" / "qtasks-prometheus"
    shutil.copytree(PLUGIN_SRC, plugin, ignore=COPY_IGNORE)

    target = base / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(target)], capture_output=True, text=True, timeout=180
    )
    assert made.returncode == 0, made.stderr
    bin_dir = target / "bin"
    env = _clean_environment(bin_dir)
    installed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(core), str(plugin)],
        env=env,
        cwd=base,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, f"pip install failed:\n{installed.stdout}\n{installed.stderr}"
    work = base / "work"
    work.mkdir()
    return Venv(python=bin_dir / "python", env=env, work=work)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "metrics_app.py").write_text(textwrap.dedent(APP_MODULE))
    return tmp_path


@pytest.fixture
def producer(redis_url: str, request: pytest.FixtureRequest) -> Iterator[QueueTasks]:
    """Enqueues from this process, to the app the worker runs."""
    app = QueueTasks(
        f"dist-{os.getpid()}-{request.node.name[:30]}", redis_url=redis_url, load_entry_points=False
    )
    yield app
    app.flush_all()
    app.stop()


@contextlib.contextmanager
def worker_process(
    venv: Venv, app_dir: Path, env: dict[str, str], *args: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``python -m qtasks_core worker -A metrics_app:app`` in the venv; SIGTERM at the end."""
    log_path = app_dir / "worker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(venv.python), "-m", "qtasks_core", "worker", "-A", "metrics_app:app", *args],
            cwd=app_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def worker_env(venv: Venv, producer: QueueTasks, redis_url: str, **extra: str) -> dict[str, str]:
    return {**venv.env, "QTASKS_REDIS_URL": redis_url, "QTASKS_TEST_APP": producer.name, **extra}


def scrape_when_up(port: int, process: subprocess.Popen[bytes], log_path: Path) -> str:
    def attempt() -> str | None:
        assert process.poll() is None, f"the worker exited:\n{log_path.read_text()}"
        try:
            return scrape(port, timeout=2)
        except (urllib.error.URLError, ConnectionError):
            return None

    return wait_for(attempt, what=f"the metrics endpoint on port {port}")


# -- installed ----------------------------------------------------------------------------


def test_the_venv_runs_its_own_installed_copies(venv: Venv) -> None:
    out = venv.run(
        "-c",
        "import qtasks_core, qtasks_prometheus; "
        "print(qtasks_core.__file__); print(qtasks_prometheus.__file__)",
    )
    assert out.returncode == 0, out.stderr
    venv_root = venv.python.parent.parent
    for path in out.stdout.split():
        assert Path(path).is_relative_to(venv_root), path


def test_qtasks_plugins_lists_the_installed_plugin(venv: Venv) -> None:
    out = venv.run("-m", "qtasks_core", "plugins", "--json")
    assert out.returncode == 0, out.stderr
    listed = {p["name"]: p for p in json.loads(out.stdout)}
    prometheus = listed["prometheus"]
    assert prometheus["distribution"] == "qtasks-prometheus"
    assert prometheus["version"] == "0.1.0"
    assert prometheus["entry_point"] == "qtasks_prometheus:plugin"
    assert set(prometheus["hooks"]) == HOOKS
    check = venv.run("-m", "qtasks_core", "plugins", "--check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_worker_loads_it_and_serves_metrics(
    venv: Venv, app_dir: Path, producer: QueueTasks, redis_url: str
) -> None:
    port = free_port()
    env = worker_env(venv, producer, redis_url, QTASKS_PROMETHEUS_PORT=str(port))
    with worker_process(venv, app_dir, env, "--concurrency", "1") as (process, log_path):
        first = parse_metrics(scrape_when_up(port, process, log_path))
        assert first["qtasks_tasks_running"] == 0
        assert first["qtasks_queue_depth"] == 0
        assert first["qtasks_backend_up"] == 1
        assert not any(key.startswith("qtasks_tasks_total") for key in first)

        tasks = [producer.add_task("add", i, i) for i in range(3)]
        tasks.append(producer.add_task("fail"))
        final = [producer.wait(t.uuid, timeout=30).status for t in tasks]
        assert final == ["success", "success", "success", "error"]

        text = scrape(port)
        assert 'qtasks_tasks_total{task="add",status="success"} 3' in text.splitlines()
        m = parse_metrics(text)
        assert m['qtasks_tasks_total{task="fail",status="error"}'] == 1
        assert m['qtasks_task_duration_seconds_count{task="add"}'] == 3
        assert m['qtasks_task_duration_seconds_bucket{task="add",le="+Inf"}'] == 3
        assert 0 < m['qtasks_task_duration_seconds_sum{task="add"}'] < 3
        assert m["qtasks_tasks_running"] == 0
        assert m["qtasks_queue_depth"] == 0

        # One slot: while the first slow task runs, the other two wait in the queue.
        slow = [producer.add_task("slow", 1.0) for _ in range(3)]

        def one_running_two_queued() -> bool:
            m = parse_metrics(scrape(port))
            return m["qtasks_tasks_running"] == 1 and m["qtasks_queue_depth"] == 2

        wait_for(one_running_two_queued, timeout=20, what="1 running, 2 queued")
        assert [producer.wait(t.uuid, timeout=30).status for t in slow] == ["success"] * 3
        m = parse_metrics(scrape(port))
        assert m['qtasks_tasks_total{task="slow",status="success"}'] == 3
        assert m['qtasks_task_duration_seconds_bucket{task="slow",le="0.5"}'] == 0
        assert m['qtasks_task_duration_seconds_bucket{task="slow",le="2.5"}'] == 3
        assert m['qtasks_task_duration_seconds_sum{task="slow"}'] >= 2.9
        assert m["qtasks_tasks_running"] == 0
        assert m["qtasks_queue_depth"] == 0

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()
    log = log_path.read_text()
    assert f"Prometheus metrics at http://127.0.0.1:{port}/metrics" in log
    assert "Prometheus metrics endpoint closed" in log  # by worker_stop
    assert refuses(port)


def test_port_0_picks_a_free_port_and_logs_it(
    venv: Venv, app_dir: Path, producer: QueueTasks, redis_url: str
) -> None:
    env = worker_env(venv, producer, redis_url, QTASKS_PROMETHEUS_PORT="0")
    with worker_process(venv, app_dir, env) as (process, log_path):
        pattern = re.compile(r"Prometheus metrics at http://127\.0\.0\.1:(\d+)/metrics")

        def logged_port() -> int | None:
            assert process.poll() is None, log_path.read_text()
            found = pattern.search(log_path.read_text())
            return int(found[1]) if found else None

        port = wait_for(logged_port, what="the logged port")
        assert producer.add_task("add", 20, 22, timeout=30).returning == 42
        assert parse_metrics(scrape(port))['qtasks_tasks_total{task="add",status="success"}'] == 1


def test_qtasks_disable_plugins_turns_it_off(
    venv: Venv, app_dir: Path, producer: QueueTasks, redis_url: str
) -> None:
    port = free_port()
    env = worker_env(
        venv,
        producer,
        redis_url,
        QTASKS_PROMETHEUS_PORT=str(port),
        QTASKS_DISABLE_PLUGINS="prometheus",
    )
    listed = venv.run("-m", "qtasks_core", "plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    names = [p["name"] for p in json.loads(listed.stdout)]
    assert "prometheus" not in names
    assert "qtasks.retry" in names  # only the named plugin is off

    with worker_process(venv, app_dir, env) as (process, log_path):
        # The worker runs (so it has passed worker_start) ...
        assert producer.add_task("add", 1, 2, timeout=30).returning == 3
        # ... and nothing listens on the port.
        assert refuses(port)
        assert process.poll() is None
    assert "Prometheus metrics" not in log_path.read_text()


# -- the plugin object in this process ----------------------------------------------------


@pytest.fixture
def prometheus(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The plugin's package, imported from its source folder (not installed here)."""
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    for key in ("QTASKS_PROMETHEUS_PORT", "QTASKS_PROMETHEUS_HOST", "QTASKS_PROMETHEUS_BUCKETS"):
        monkeypatch.delenv(key, raising=False)
    import qtasks_prometheus

    return qtasks_prometheus


def local_app(*plugins: object, url: str = "memory://", name: str = "prom-local") -> QueueTasks:
    app = QueueTasks(name, redis_url=url, load_entry_points=False)
    for plugin in plugins:
        app.add_plugin(plugin)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    return app


async def http(port: int, raw: bytes) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode().split("\r\n", 1)[0], body


def test_http_requests_other_than_get_metrics(prometheus: Any) -> None:
    plugin = prometheus.PrometheusPlugin(port=0)
    app = local_app(plugin)

    async def main() -> None:
        worker = app.worker()
        running = asyncio.create_task(worker.run())
        try:
            await app.add_task_async("add", 1, 1, timeout=10)
            port = plugin.port
            status, body = await http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == "HTTP/1.1 200 OK"
            assert b'qtasks_tasks_total{task="add",status="success"} 1\n' in body
            status, body = await http(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
            assert (status, body) == ("HTTP/1.1 200 OK", b"")
            status, _ = await http(port, b"GET /other HTTP/1.1\r\n\r\n")
            assert status == "HTTP/1.1 404 Not Found"
            status, _ = await http(port, b"POST /metrics HTTP/1.1\r\n\r\n")
            assert status == "HTTP/1.1 405 Method Not Allowed"
            status, _ = await http(port, b"nonsense\r\n\r\n")
            assert status == "HTTP/1.1 400 Bad Request"
        finally:
            worker.stop()
            await running
            await app.stop_async()

    asyncio.run(main())
    assert plugin.port is None


def test_a_busy_port_is_logged_and_the_worker_goes_on(
    prometheus: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        plugin = prometheus.PrometheusPlugin(port=port)
        app = local_app(plugin)

        async def main() -> None:
            worker = app.worker()
            running = asyncio.create_task(worker.run())
            try:
                assert (await app.add_task_async("add", 2, 3, timeout=10)).returning == 5
            finally:
                worker.stop()
                await running
                await app.stop_async()

        with caplog.at_level(logging.ERROR, logger="qtasks.prometheus"):
            asyncio.run(main())
    assert f"cannot serve Prometheus metrics on 127.0.0.1:{port}" in caplog.text
    assert plugin.port is None
    assert plugin.metrics.finished("add", "success") == 1  # counting went on


def test_workers_of_one_process_share_the_endpoint_across_loops(
    prometheus: Any, redis_url: str
) -> None:
    """The endpoint lives in the first worker's loop; when that worker stops first, it
    moves to a worker still running, on the same port."""
    plugin = prometheus.PrometheusPlugin(port=0)
    app = local_app(plugin, url=redis_url, name=f"prom-loops-{os.getpid()}")

    class LoopWorker:
        def __init__(self) -> None:
            self.worker = app.worker(concurrency=2)
            self.loop: asyncio.AbstractEventLoop | None = None
            self.thread = threading.Thread(target=asyncio.run, args=(self._main(),))
            self.thread.start()

        async def _main(self) -> None:
            self.loop = asyncio.get_running_loop()
            await self.worker.run()

        def stop(self) -> None:
            if not self.thread.is_alive():
                return
            wait_for(lambda: self.loop is not None)
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self.worker.stop)
            self.thread.join(timeout=30)
            assert not self.thread.is_alive()

    first = LoopWorker()
    port = wait_for(lambda: plugin.port, what="the endpoint")
    second = LoopWorker()
    try:
        wait_for(lambda: len(plugin._workers) == 2, what="both workers")
        app.add_task("add", 1, 2, timeout=10)
        first.stop()  # the endpoint's loop ends
        assert wait_for(lambda: plugin.port, what="the endpoint to move") == port
        assert plugin._server_loop is second.loop
        assert app.add_task("add", 3, 4, timeout=10).returning == 7
        m = parse_metrics(scrape(port))
        assert m['qtasks_tasks_total{task="add",status="success"}'] == 2
    finally:
        second.stop()
        first.stop()
        app.flush_all()
        app.stop()
    assert plugin.port is None
    assert refuses(port)


def test_buckets_come_from_the_environment(
    prometheus: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("QTASKS_PROMETHEUS_BUCKETS", "1,0.1")
    plugin = prometheus.PrometheusPlugin(port=0)
    app = local_app(plugin)

    async def main() -> str:
        worker = app.worker()
        running = asyncio.create_task(worker.run())
        try:
            await app.add_task_async("add", 1, 1, timeout=10)
            return await asyncio.to_thread(scrape, plugin.port)
        finally:
            worker.stop()
            await running
            await app.stop_async()

    buckets = [line for line in asyncio.run(main()).splitlines() if "_bucket" in line]
    assert [re.search(r'le="([^"]+)"', b)[1] for b in buckets] == ["0.1", "1.0", "+Inf"]

    monkeypatch.setenv("QTASKS_PROMETHEUS_PORT", "ninety")
    bad = prometheus.PrometheusPlugin()
    app = local_app(bad)

    async def bad_main() -> None:
        worker = app.worker()
        running = asyncio.create_task(worker.run())
        await app.add_task_async("add", 1, 1, timeout=10)
        worker.stop()
        await running
        await app.stop_async()

    with caplog.at_level(logging.ERROR, logger="qtasks.prometheus"):
        asyncio.run(bad_main())
    assert "QTASKS_PROMETHEUS_PORT='ninety' is not a port number" in caplog.text
    assert bad.port is None
