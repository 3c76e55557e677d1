"""The plugin: a producer span per enqueue, a consumer span per run, one trace.

================================  =====================================================
trigger                           does
================================  =====================================================
``broker_add_before``             opens the producer span, writes its context to
                                  ``extra`` (``traceparent``, ``tracestate``, the queue)
``broker_add_after``              ends the producer span
``worker_execute_before``         opens the consumer span, child of (or linked to) the
                                  context found in ``extra``
``worker_task_error_retry``       records the exception on the consumer span
``worker_execute_after``          sets the final status, ends the consumer span
``worker_stop``                   ends spans of runs cut short, flushes the provider
================================  =====================================================

Configuration (read when each span starts, so it can change at run time):
``QTASKS_OTEL_LINK=1`` makes the consumer span the root of its own trace, linked to the
producer span, instead of its child.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from qtasks_hooks import hookimpl

if TYPE_CHECKING:
    from qtasks_core import Worker
    from qtasks_core.schemas import TaskPrioritySchema, TaskStatusNewSchema

ENV_LINK: Final = "QTASKS_OTEL_LINK"
#: The key of ``extra`` that carries the queue to the worker: the claimed task message
#: (``TaskPrioritySchema``) has no queue field.
EXTRA_QUEUE: Final = "otel.queue"
_TRACER: Final = "qtasks_opentelemetry"
#: W3C trace context keys the default propagator writes; kept out of the task's extra
#: only when empty.
_CARRIER_KEYS: Final = ("traceparent", "tracestate")


def _linked() -> bool:
    return os.environ.get(ENV_LINK, "").strip().lower() in ("1", "true", "yes", "on")


class OpenTelemetryPlugin:
    """Traces each task from its enqueue to the end of its run.

    One instance serves a whole process (producer, worker, or both); ``link`` overrides
    ``QTASKS_OTEL_LINK``; ``tracer_provider`` replaces the global one
    (``opentelemetry.trace.get_tracer_provider()``), as OpenTelemetry's own
    instrumentations allow.
    """

    def __init__(
        self, *, link: bool | None = None, tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        self._link = link
        self._provider = tracer_provider
        self._lock = threading.Lock()
        # traceparent written to extra -> the producer span it names.
        self._producing: dict[str, Span] = {}
        # (worker id, task uuid) -> the consumer span of that run.
        self._consuming: dict[tuple[str, str], Span] = {}

    def _tracer(self) -> trace.Tracer:
        # Asked at each span, not at import: the app may install its provider later.
        return trace.get_tracer(_TRACER, "0.1.0", tracer_provider=self._provider)

    # -- producer ----------------------------------------------------------------------

    @hookimpl
    def broker_add_before(self, model: TaskStatusNewSchema) -> TaskStatusNewSchema:
        span = self._tracer().start_span(
            f"send {model.task_name}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "qtasks",
                "messaging.operation.type": "send",
                "messaging.destination.name": model.queue,
                "qtasks.task.name": model.task_name,
                "qtasks.task.priority": model.priority,
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        traceparent = carrier.get("traceparent")
        if traceparent is None:  # a no-op tracer or propagator: nothing to carry
            span.end()
            return model
        with self._lock:
            self._producing[traceparent] = span
        extra = {**model.extra, **carrier, EXTRA_QUEUE: model.queue}
        return model.model_copy(update={"extra": extra})

    @hookimpl
    def broker_add_after(self, model: TaskStatusNewSchema) -> None:
        traceparent = model.extra.get("traceparent")
        with self._lock:
            span = self._producing.pop(traceparent, None) if traceparent else None
        if span is not None:
            span.end()

    # -- consumer ----------------------------------------------------------------------

    @hookimpl(trylast=True)  # last: closest to the task itself
    def worker_execute_before(self, worker: Worker, task_broker: TaskPrioritySchema) -> None:
        carrier = {k: str(v) for k, v in task_broker.extra.items() if k in _CARRIER_KEYS}
        producer = propagate.extract(carrier)
        link = self._link if self._link is not None else _linked()
        producer_span = trace.get_current_span(producer).get_span_context()
        attributes: dict[str, Any] = {
            "messaging.system": "qtasks",
            "messaging.operation.type": "process",
            "messaging.message.id": task_broker.uuid,
            "qtasks.task.name": task_broker.task_name,
            "qtasks.task.uuid": task_broker.uuid,
            "qtasks.task.attempt": task_broker.attempts,
            "qtasks.worker": worker.id,
        }
        queue = getattr(task_broker, "queue", None) or task_broker.extra.get(EXTRA_QUEUE)
        if queue is not None:
            attributes["messaging.destination.name"] = str(queue)
        if link:
            links = [Link(producer_span)] if producer_span.is_valid else []
            # An empty context: the run starts a trace of its own.
            span = self._tracer().start_span(
                f"process {task_broker.task_name}",
                context=trace.set_span_in_context(trace.INVALID_SPAN),
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                links=links,
            )
        else:
            span = self._tracer().start_span(
                f"process {task_broker.task_name}",
                context=producer,
                kind=SpanKind.CONSUMER,
                attributes=attributes,
            )
        with self._lock:
            self._consuming[(worker.id, task_broker.uuid)] = span

    @hookimpl  # an observer: every impl runs, whatever a retry impl before it returned
    def worker_task_error_retry(
        self, worker: Worker, task_broker: TaskPrioritySchema, exc: BaseException
    ) -> None:
        with self._lock:
            span = self._consuming.get((worker.id, task_broker.uuid))
        if span is not None:
            span.record_exception(exc)

    @hookimpl
    def worker_execute_after(
        self, worker: Worker, task_broker: TaskPrioritySchema, model: Any
    ) -> None:
        with self._lock:
            span = self._consuming.pop((worker.id, task_broker.uuid), None)
        if span is None:
            return
        status = str(model.status)
        span.set_attribute("qtasks.task.status", status)
        if status in ("error", "retry"):
            span.set_status(Status(StatusCode.ERROR, f"task ended {status}"))
        span.end()

    @hookimpl
    async def worker_stop(self, worker: Worker) -> None:
        # Runs cut short by the shutdown never reach worker_execute_after.
        with self._lock:
            cut = [k for k in self._consuming if k[0] == worker.id]
            spans = [self._consuming.pop(k) for k in cut]
        for span in spans:
            span.set_status(Status(StatusCode.ERROR, "worker stopped during the run"))
            span.end()
        # `qtasks worker` leaves with os._exit() once its workers stopped, so atexit
        # hooks never run: a BatchSpanProcessor would lose the spans it still holds.
        # The API's provider has no force_flush; the SDK's (and most others') do. An
        # export is I/O: off the worker's event loop.
        provider = self._provider or trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            await asyncio.to_thread(flush)
