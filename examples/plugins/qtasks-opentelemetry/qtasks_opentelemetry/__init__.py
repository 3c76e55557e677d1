"""OpenTelemetry tracing for QTasks, on ``opentelemetry-api`` only.

Installed, it is loaded by every QTasks app through the ``qtasks.plugins`` entry point
``opentelemetry`` (this module's :data:`plugin`). An enqueue opens a ``PRODUCER`` span
and stores its W3C trace context in the task record's ``extra``; the worker that runs
the task opens a ``CONSUMER`` span whose parent (or, with ``QTASKS_OTEL_LINK=1``, whose
link) is that producer span. Spans go wherever the application's tracer provider sends
them; without an SDK configured they cost next to nothing.

To use it without the entry point: ``app.add_plugin(OpenTelemetryPlugin())``.
"""

from __future__ import annotations

from .plugin import EXTRA_QUEUE, OpenTelemetryPlugin

__version__ = "0.1.0"

#: The instance the entry point names: one per process, shared by its apps.
plugin = OpenTelemetryPlugin()

__all__ = ["EXTRA_QUEUE", "OpenTelemetryPlugin", "__version__", "plugin"]
