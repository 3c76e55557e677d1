"""qtasks-opentelemetry as users get it: pip-installed, one trace from producer to worker.

The producer is this process (the plugin from its source folder, the SDK's in-memory
exporter); the consumer is a real ``qtasks worker`` in the shared plugin venv, running
``apps/traced.py``, which never names the plugin (the entry point loads it) and writes
its finished spans as JSON lines. The worker's span must be the producer span's child
(same trace id, the producer span as parent) whether the producer is sync or async;
``QTASKS_OTEL_LINK=1`` makes it a new trace linked to the producer span.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from qtasks_core import QueueTasks
from tests.plugin_venv import PLUGINS, Venv, plugin_venv, worker_process

HERE = Path(__file__).resolve().parent
PLUGIN_SRC = PLUGINS / "qtasks-opentelemetry"
HOOKS = {
    "broker_add_before",
    "broker_add_after",
    "worker_execute_before",
    "worker_task_error_retry",
    "worker_execute_after",
    "worker_stop",
}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return plugin_venv(tmp_path_factory)


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The plugin's package, imported from its source folder (not installed here)."""
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    monkeypatch.delenv("QTASKS_OTEL_LINK", raising=False)
    import qtasks_opentelemetry

    return qtasks_opentelemetry


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    """The producer's tracer provider, given to the plugin (the global one stays unset)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def producer(
    redis_url: str, request: pytest.FixtureRequest, otel: Any, provider: TracerProvider
) -> Iterator[QueueTasks]:
    app = QueueTasks(
        f"otel-{os.getpid()}-{request.node.name[:30]}", redis_url=redis_url, load_entry_points=False
    )
    app.add_plugin(otel.OpenTelemetryPlugin(tracer_provider=provider), name="opentelemetry")
    yield app
    app.flush_all()
    app.stop()


def run_worker(venv: Venv, producer: QueueTasks, redis_url: str, spans: Path, **extra: str) -> Any:
    env = {
        **venv.env,
        "QTASKS_REDIS_URL": redis_url,
        "QTASKS_TEST_APP": producer.name,
        "QTASKS_TEST_SPANS": str(spans),
        # The shared venv holds the metrics plugin too: keep it off the fixed port.
        "QTASKS_PROMETHEUS_PORT": "0",
        **extra,
    }
    return worker_process(venv, "apps.traced:app", HERE, env, log_name="traced-worker.log")


def stop_and_read(process: Any, log_path: Path, spans: Path) -> list[dict[str, Any]]:
    """SIGTERM the worker (its worker_stop flushes the batch processor), read its spans."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log_path.read_text()
    assert spans.exists(), f"the worker exported no span:\n{log_path.read_text()}"
    return [json.loads(line) for line in spans.read_text().splitlines()]


def by_uuid(worker_spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["attributes"]["qtasks.task.uuid"]: s for s in worker_spans if s["kind"] == "CONSUMER"}


def child_of(spans: list[ReadableSpan], parent: trace.Span) -> ReadableSpan:
    """The one producer span opened under ``parent``."""
    parent_id = parent.get_span_context().span_id
    found = [s for s in spans if s.parent is not None and s.parent.span_id == parent_id]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def test_the_venv_lists_the_tracing_plugin(venv: Venv) -> None:
    out = venv.run("-m", "qtasks_core", "plugins", "--json")
    assert out.returncode == 0, out.stderr
    listed = {p["name"]: p for p in json.loads(out.stdout)}
    plugin = listed["opentelemetry"]
    assert plugin["distribution"] == "qtasks-opentelemetry"
    assert plugin["entry_point"] == "qtasks_opentelemetry:plugin"
    assert set(plugin["hooks"]) == HOOKS
    imported = venv.run("-c", "import qtasks_opentelemetry; print(qtasks_opentelemetry.__file__)")
    assert Path(imported.stdout.strip()).is_relative_to(venv.root), imported.stdout


def test_the_worker_span_is_the_child_of_the_producer_span_sync_and_async(
    venv: Venv,
    producer: QueueTasks,
    redis_url: str,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    tracer = provider.get_tracer("the web app")
    spans_file = tmp_path / "spans.jsonl"
    with run_worker(venv, producer, redis_url, spans_file) as (process, log_path):
        # A sync producer (a Flask view, a script): add_task runs on the app's portal
        # thread, and the caller's current span must still be the parent.
        with tracer.start_as_current_span("sync request") as sync_request:
            sync_task = producer.add_task("add", 1, 2)
        with tracer.start_as_current_span("failing request") as failing_request:
            failed = producer.add_task("fail")

        async def async_view() -> tuple[trace.Span, str]:
            with tracer.start_as_current_span("async request") as span:
                task = await producer.add_task_async("add", 3, 4)
            return span, task.uuid

        async_request, async_uuid = asyncio.run(async_view())
        assert producer.wait(sync_task.uuid, timeout=30).returning == 3
        assert producer.wait(async_uuid, timeout=30).returning == 7
        assert producer.wait(failed.uuid, timeout=30).status == "error"
        worker_spans = by_uuid(stop_and_read(process, log_path, spans_file))

    finished = list(exporter.get_finished_spans())
    for request, uuid in (
        (sync_request, sync_task.uuid),
        (async_request, async_uuid),
        (failing_request, failed.uuid),
    ):
        send = child_of(finished, request)
        assert send.kind is trace.SpanKind.PRODUCER
        assert send.name == ("send fail" if uuid == failed.uuid else "send add")
        trace_id, span_id = hex_ids(send)
        consumer = worker_spans[uuid]
        assert consumer["trace_id"] == trace_id
        assert consumer["parent_span_id"] == span_id
        assert consumer["pid"] == process.pid  # exported by the worker process
    ok = worker_spans[sync_task.uuid]
    assert (ok["name"], ok["status"]) == ("process add", "UNSET")
    assert ok["attributes"]["qtasks.task.status"] == "success"
    assert ok["attributes"]["messaging.destination.name"] == "default"
    bad = worker_spans[failed.uuid]
    assert (bad["status"], bad["events"]) == ("ERROR", ["exception"])
    assert bad["attributes"]["qtasks.task.status"] == "error"


def test_link_mode_starts_a_trace_linked_to_the_producer_span(
    venv: Venv,
    producer: QueueTasks,
    redis_url: str,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    with run_worker(venv, producer, redis_url, spans_file, QTASKS_OTEL_LINK="1") as (
        process,
        log_path,
    ):
        with provider.get_tracer("t").start_as_current_span("request") as request:
            task = producer.add_task("add", 5, 6)
        assert producer.wait(task.uuid, timeout=30).returning == 11
        consumer = by_uuid(stop_and_read(process, log_path, spans_file))[task.uuid]
    trace_id, span_id = hex_ids(child_of(list(exporter.get_finished_spans()), request))
    assert consumer["trace_id"] != trace_id
    assert consumer["parent_span_id"] is None
    assert consumer["links"] == [span_id]
