"""qtasks-prometheus as users get it: pip-installed next to QTasks, loaded by name.

The plugin is installed with QTasks into the session's fresh virtual environment
(``tests/plugin_venv.py``); then ``qtasks plugins`` lists it, a worker of an app that
never mentions it (``apps/metered.py``) serves its metrics, ``qtasks worker
--processes 2`` serves every child's counts on one port (and keeps those of a child
killed outright), and ``QTASKS_DISABLE_PLUGINS`` turns it off. The last tests run the
plugin object in this process (a busy port, settings, workers sharing the endpoint).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from qtasks_core import QueueTasks
from qtasks_core.keys import Keys
from tests.plugin_venv import PLUGINS, Venv, plugin_venv, worker_process
from tests.support import free_port, wait_for

HERE = Path(__file__).resolve().parent
PLUGIN_SRC = PLUGINS / "qtasks-prometheus"
HOOKS = {"worker_start", "worker_stop", "worker_execute_before", "worker_execute_after"}
SERVING = re.compile(r"Prometheus metrics at http://127\.0\.0\.1:(\d+)/metrics \(pid (\d+)\)")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# -- the exposition ---------------------------------------------------------------------


def parse_metrics(text: str) -> Samples:
    """Every sample, read by prometheus_client's own parser (which rejects a bad line)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape(port: int, timeout: float = 10.0) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_metrics(resp.read().decode())


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def scrape_when_up(port: int, process: Any, log_path: Path) -> Samples:
    def attempt() -> Samples | None:
        assert process.poll() is None, f"the worker exited:\n{log_path.read_text()}"
        try:
            return scrape(port, timeout=5)
        except (urllib.error.URLError, ConnectionError):
            return None

    return wait_for(attempt, what=f"the metrics endpoint on port {port}")


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return plugin_venv(tmp_path_factory)


@pytest.fixture
def producer(redis_url: str, request: pytest.FixtureRequest) -> Iterator[QueueTasks]:
    """Enqueues from this process, to the app the worker runs."""
    app = QueueTasks(
        f"dist-{os.getpid()}-{request.node.name[:30]}", redis_url=redis_url, load_entry_points=False
    )
    yield app
    app.flush_all()
    app.stop()


def worker_env(venv: Venv, producer: QueueTasks, redis_url: str, **extra: str) -> dict[str, str]:
    return {**venv.env, "QTASKS_REDIS_URL": redis_url, "QTASKS_TEST_APP": producer.name, **extra}


def metered_worker(venv: Venv, env: dict[str, str], *args: str) -> Any:
    return worker_process(venv, "apps.metered:app", HERE, env, "-Q", "default", *args)


# -- installed --------------------------------------------------------------------------


def test_the_venv_runs_its_own_installed_copies(venv: Venv) -> None:
    out = venv.run(
        "-c",
        "import qtasks_core, qtasks_prometheus; "
        "print(qtasks_core.__file__); print(qtasks_prometheus.__file__)",
    )
    assert out.returncode == 0, out.stderr
    for path in out.stdout.split():
        assert Path(path).is_relative_to(venv.root), path


def test_qtasks_plugins_lists_the_installed_plugin(venv: Venv) -> None:
    out = venv.run("-m", "qtasks_core", "plugins", "--json")
    assert out.returncode == 0, out.stderr
    listed = {p["name"]: p for p in json.loads(out.stdout)}
    prometheus = listed["prometheus"]
    assert prometheus["distribution"] == "qtasks-prometheus"
    assert prometheus["version"] == "0.2.0"
    assert prometheus["entry_point"] == "qtasks_prometheus:plugin"
    assert set(prometheus["hooks"]) == HOOKS
    check = venv.run("-m", "qtasks_core", "plugins", "--check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_worker_serves_task_counts_durations_and_the_redis_gauges(
    venv: Venv, producer: QueueTasks, redis_url: str
) -> None:
    port = free_port()
    app = producer.name
    env = worker_env(venv, producer, redis_url, QTASKS_PROMETHEUS_PORT=str(port))
    with metered_worker(venv, env, "--concurrency", "1") as (process, log_path):
        first = scrape_when_up(port, process, log_path)
        assert value(first, "qtasks_backend_up", app=app) == 1

        # The port is served from worker_start; the worker is listed from its first
        # heartbeat, which may come a moment later.
        def listed() -> Samples | None:
            m = scrape(port)
            return m if value(m, "qtasks_workers", app=app) == 1 else None

        first = wait_for(listed, what="the worker listed")
        assert value(first, "qtasks_tasks_running", app=app) == 0
        assert value(first, "qtasks_dead_letters", app=app) == 0
        assert not any(name == "qtasks_tasks_total" for name, _ in first)

        tasks = [producer.add_task("add", i, i) for i in range(3)]
        tasks += [producer.add_task("fail"), producer.add_task("flaky")]
        final = [producer.wait(t.uuid, timeout=30).status for t in tasks]
        assert final == ["success", "success", "success", "error", "error"]

        m = scrape(port)
        add = {"app": app, "task": "add", "queue": "default"}
        assert value(m, "qtasks_tasks_total", **add, status="success") == 3
        assert (
            value(m, "qtasks_tasks_total", app=app, task="fail", queue="default", status="error")
            == 1
        )
        flaky = {"app": app, "task": "flaky", "queue": "default"}
        assert value(m, "qtasks_tasks_total", **flaky, status="retry") == 1  # the retry
        assert value(m, "qtasks_tasks_total", **flaky, status="error") == 1
        assert value(m, "qtasks_task_duration_seconds_count", **add) == 3
        assert value(m, "qtasks_task_duration_seconds_bucket", **add, le="+Inf") == 3
        assert 0 < (value(m, "qtasks_task_duration_seconds_sum", **add) or 0) < 3

        # Gauges come from Redis: a queue no worker here serves, a delayed task, a
        # record the worker cannot read (set aside as a dead letter).
        producer.send_task("parked", queue="parked", priority=3)
        producer.send_task("parked", queue="parked", priority=3)
        producer.send_task("parked", queue="parked", priority=5)
        producer.send_task("add", [1, 1], delay=600)
        raw = redis.Redis.from_url(redis_url)
        keys = Keys.for_app(app)
        raw.hset(keys.task("garbled"), mapping={"status": "new", "task_name": "add", "args": "{"})
        raw.zadd(keys.queue, {"garbled": 0})
        raw.rpush(keys.wake, "1")

        def dead_letter_seen() -> Samples | None:
            m = scrape(port)
            return m if value(m, "qtasks_dead_letters", app=app) == 1 else None

        m = wait_for(dead_letter_seen, what="the dead letter in the metrics")
        assert value(m, "qtasks_queue_depth", app=app, queue="parked", priority="3") == 2
        assert value(m, "qtasks_queue_depth", app=app, queue="parked", priority="5") == 1
        assert value(m, "qtasks_tasks_scheduled", app=app) == 1

        slow = producer.add_task("slow", 1.0)
        wait_for(
            lambda: value(scrape(port), "qtasks_tasks_running", app=app) == 1,
            timeout=20,
            what="1 running",
        )
        assert producer.wait(slow.uuid, timeout=30).status == "success"
        m = scrape(port)
        slow_labels = {"app": app, "task": "slow", "queue": "default"}
        assert value(m, "qtasks_task_duration_seconds_bucket", **slow_labels, le="0.5") == 0
        assert value(m, "qtasks_task_duration_seconds_bucket", **slow_labels, le="2.5") == 1
        assert value(m, "qtasks_tasks_running", app=app) == 0

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()
    log = log_path.read_text()
    assert f"Prometheus metrics at http://127.0.0.1:{port}/metrics (pid {process.pid})" in log
    assert "Prometheus metrics endpoint closed" in log  # by worker_stop
    assert refuses(port)


def test_processes_share_one_endpoint_and_a_killed_child_still_counts(
    venv: Venv, producer: QueueTasks, redis_url: str, tmp_path: Path
) -> None:
    """``--processes 2`` with PROMETHEUS_MULTIPROC_DIR: one child serves everyone's
    counts; SIGKILL it and the other child (or its replacement) takes the port over,
    still serving the dead child's counts."""
    port = free_port()
    app = producer.name
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = worker_env(
        venv,
        producer,
        redis_url,
        QTASKS_PROMETHEUS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    add = {"app": app, "task": "slow", "queue": "default", "status": "success"}
    with metered_worker(venv, env, "--processes", "2", "--concurrency", "1") as (
        supervisor,
        log_path,
    ):
        scrape_when_up(port, supervisor, log_path)
        # Two children with one slot each, tasks of 0.3 s: both run some.
        tasks = [producer.add_task("slow", 0.3) for _ in range(6)]
        assert {producer.wait(t.uuid, timeout=30).status for t in tasks} == {"success"}
        assert value(scrape(port), "qtasks_tasks_total", **add) == 6
        counted = {p.name for p in multiproc.glob("counter_*.db")}
        assert len(counted) == 2, counted  # both children counted runs

        found = SERVING.search(log_path.read_text())
        assert found and int(found[1]) == port
        owner = int(found[2])
        os.kill(owner, signal.SIGKILL)

        def new_owner() -> int | None:
            owners = [int(m[2]) for m in SERVING.finditer(log_path.read_text())]
            return owners[-1] if owners[-1] != owner else None

        assert wait_for(new_owner, timeout=20, what="another child to serve the port")
        m = scrape(port)
        assert value(m, "qtasks_tasks_total", **add) == 6  # the killed child's 3 or so too
        more = [producer.add_task("slow", 0.01) for _ in range(2)]
        assert {producer.wait(t.uuid, timeout=30).status for t in more} == {"success"}
        assert value(scrape(port), "qtasks_tasks_total", **add) == 8


def test_qtasks_disable_plugins_turns_it_off(
    venv: Venv, producer: QueueTasks, redis_url: str
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

    with metered_worker(venv, env) as (process, log_path):
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
    for key in (
        "QTASKS_PROMETHEUS_PORT",
        "QTASKS_PROMETHEUS_HOST",
        "QTASKS_PROMETHEUS_BUCKETS",
        "PROMETHEUS_MULTIPROC_DIR",
    ):
        monkeypatch.delenv(key, raising=False)
    import qtasks_prometheus

    return qtasks_prometheus


def local_app(*plugins: object, name: str = "prom-local") -> QueueTasks:
    app = QueueTasks(name, redis_url="memory://", load_entry_points=False)
    for plugin in plugins:
        app.add_plugin(plugin)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    return app


def test_two_workers_of_one_process_share_the_endpoint(prometheus: Any) -> None:
    plugin = prometheus.PrometheusPlugin(port=0)
    app = local_app(plugin)

    async def main() -> None:
        first, second = app.worker(), app.worker()
        runs = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
        try:
            for _ in range(4):
                await app.add_task_async("add", 1, 1, timeout=10)
            port = plugin.port
            labels = {"app": app.name, "task": "add", "queue": "default", "status": "success"}

            def counted() -> Samples | None:
                # A worker is listed from its first heartbeat, which a loaded machine
                # may put after the 4th result: polled, not asserted at once.
                m = scrape(port)
                expected = (4, 2)
                seen = (
                    value(m, "qtasks_tasks_total", **labels),
                    value(m, "qtasks_workers", app=app.name),
                )
                return m if seen == expected else None

            await asyncio.to_thread(wait_for, counted, 10, "4 tasks counted and 2 workers")
            first.stop()
            await runs[0]
            assert plugin.port == port  # the other worker still runs: still served
            assert (
                value(await asyncio.to_thread(scrape, port), "qtasks_backend_up", app=app.name) == 1
            )
        finally:
            # Both: a failed check above must end the test, not leave a worker running.
            first.stop()
            second.stop()
            await asyncio.gather(*runs)
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
    assert "PROMETHEUS_MULTIPROC_DIR lets one process serve all" in caplog.text
    assert plugin.port is None
    labels = {"app": app.name, "task": "add", "queue": "default", "status": "success"}
    counted = plugin.metrics.registry.get_sample_value("qtasks_tasks_total", labels)
    assert counted == 1  # counting went on


def test_buckets_and_port_come_from_the_environment(
    prometheus: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("QTASKS_PROMETHEUS_BUCKETS", "1,0.1")
    monkeypatch.setenv("QTASKS_PROMETHEUS_PORT", "0")
    plugin = prometheus.PrometheusPlugin()
    app = local_app(plugin)

    async def main() -> Samples:
        worker = app.worker()
        running = asyncio.create_task(worker.run())
        try:
            await app.add_task_async("add", 1, 1, timeout=10)
            return await asyncio.to_thread(scrape, plugin.port)
        finally:
            worker.stop()
            await running
            await app.stop_async()

    samples = asyncio.run(main())
    bounds = [dict(labels)["le"] for name, labels in samples if name.endswith("_bucket")]
    assert bounds == ["0.1", "1.0", "+Inf"]

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
