"""An app whose worker exports its spans as JSON lines to ``$QTASKS_TEST_SPANS``.

It configures OpenTelemetry as an application does (a ``TracerProvider`` with a
``BatchSpanProcessor``) and never mentions QTasks' tracing plugin: the worker finds
qtasks-opentelemetry through its entry point. The batch processor holds spans until
the plugin flushes it at ``worker_stop``; ``qtasks worker`` leaves by ``os._exit``, so
that flush is what saves them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from qtasks_core import QueueTasks


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (ids as hex, as W3C writes them)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.get_span_context()
            assert context is not None
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "kind": span.kind.name,
                        "trace_id": f"{context.trace_id:032x}",
                        "span_id": f"{context.span_id:016x}",
                        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
                        "links": [f"{link.context.span_id:016x}" for link in span.links],
                        "attributes": dict(span.attributes or {}),
                        "events": [event.name for event in span.events],
                        "status": span.status.status_code.name,
                        "pid": os.getpid(),
                    }
                )
            )
        with self._lock, open(self.path, "a") as out:
            out.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


provider = TracerProvider()
# A delay longer than any test: spans reach the file only through the flush.
provider.add_span_processor(
    BatchSpanProcessor(
        JsonLinesExporter(os.environ["QTASKS_TEST_SPANS"]), schedule_delay_millis=60_000
    )
)
trace.set_tracer_provider(provider)

app = QueueTasks(os.environ["QTASKS_TEST_APP"])


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def fail() -> None:
    raise ValueError("planned failure")
