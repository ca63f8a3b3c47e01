"""OpenTelemetry, when asked for: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (and the ``cachebot[otel]`` extra
installed), each request is one trace with a span per graph node and per layer batch of purges, exported over
OTLP/HTTP to the tracing system a team already runs (Jaeger, Tempo, Phoenix…).

- The trace id is the request id (both are 128-bit hex), so ``cachebot trace <id>`` and the tracing UI name the
  same thing, and the parts of one request run at different times (the request, the approval an hour later in
  another process, a recovery after a crash) land in the one trace. Each part is a span of its own
  (``cachebot.request`` / ``cachebot.decision`` / ``cachebot.recovery``) whose parent is the request's id:
  tracing UIs show them side by side under a root that is never sent.
- Spans come from the run's stream (the Agent hands each chunk to ``RunSpans.saw``): a checkpoint announcing a
  node starts its span, the node's update ends it; each purge batch a layer answers is a child of ``execute``
  with ``cachebot.layer``, ``cachebot.items``, ``cachebot.attempts``, ``cachebot.retries`` and
  ``cachebot.status``. A layer sends its batches one after another, so a batch began when the layer's previous
  one ended (or when ``execute`` began).
- Nothing here is imported or exported unless the variable is set: OpenTelemetry's packages load on the first
  traced run, never at start-up. The language model's own calls are traced by LangSmith (see the README).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Any

log = logging.getLogger(__name__)

ENDPOINT_VAR = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE_NAME = "cachebot"
_tracer: Any = None  # the tracer once made (or given by use_provider)
_unavailable = False  # the extra is not installed: warned once


def use_provider(provider: Any) -> None:
    """Trace through this ``TracerProvider`` (an application embedding cachebot, or tests with the SDK's
    ``InMemorySpanExporter``) instead of one made from the OTLP environment variables; None forgets it."""
    global _tracer
    _tracer = provider.get_tracer(SERVICE_NAME) if provider is not None else None


def tracer() -> Any:
    """The tracer, or None when tracing is off (no ``OTEL_EXPORTER_OTLP_ENDPOINT``) or cannot be had."""
    global _tracer, _unavailable
    if not os.environ.get(ENDPOINT_VAR) or _unavailable:
        return None
    if _tracer is None:
        try:
            _tracer = _otlp_tracer()
        except ImportError:
            _unavailable = True
            log.warning("%s is set but OpenTelemetry is not installed: pip install 'cachebot[otel]'", ENDPOINT_VAR)
            return None
    return _tracer


def _otlp_tracer() -> Any:
    """A provider exporting over OTLP/HTTP as the standard variables say (endpoint, headers, service name), or the
    one the host already installed (``opentelemetry-instrument``)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current.get_tracer(SERVICE_NAME)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider.get_tracer(SERVICE_NAME)


def run_spans(request_id: str | None, thread_id: str, kind: str) -> RunSpans | None:
    """Spans for one part of a request (``kind``: request, decision, recovery); None when tracing is off."""
    traced = tracer()
    if traced is None or not request_id:
        return None
    try:
        return RunSpans(traced, request_id, thread_id, kind)
    except Exception:  # tracing must never stop a purge
        log.exception("could not start tracing request %s", request_id)
        return None


def _ns() -> int:
    return time.time_ns()


class RunSpans:
    """The spans of one run of the graph, fed from its stream (``saw``) and ended by ``close``."""

    def __init__(self, traced: Any, request_id: str, thread_id: str, kind: str):
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        self._trace = trace
        request = SpanContext(trace_id=int(request_id, 16), span_id=int(request_id[:16], 16) or 1, is_remote=True,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED))
        self._tracer = traced
        attributes = {"cachebot.request_id": request_id, "cachebot.thread_id": thread_id}
        self._root = traced.start_span(f"cachebot.{kind}", context=trace.set_span_in_context(
            NonRecordingSpan(request)), attributes=attributes)
        self._nodes: dict[str, Any] = {}
        self._batch_start: dict[str, int] = {}

    def saw(self, mode: str, chunk: Any) -> None:
        try:
            if mode == "checkpoints" and isinstance(chunk, dict):
                for node in chunk.get("next") or ():
                    if not node.startswith("__"):  # LangGraph's own input step is not one of ours
                        self._start(node)
            elif mode == "updates" and isinstance(chunk, dict):
                for node in chunk:
                    if node == "__interrupt__":
                        for waiting in list(self._nodes):
                            self._end(waiting, "waiting")
                    else:
                        self._end(node, "ok")
            elif mode == "custom" and isinstance(chunk, dict) and chunk.get("sent"):
                self._batch(chunk)
        except Exception:
            log.exception("could not trace a step")

    def close(self, error: BaseException | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        try:
            for node in list(self._nodes):
                self._end(node, "error" if error is not None else "stopped", error)
            if error is not None:
                self._root.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))
            self._root.end()
        except Exception:
            log.exception("could not end the request's trace")

    def _start(self, node: str) -> None:
        if node in self._nodes:  # a node announced again (approval after a refused click) ends the first one
            self._end(node, "ok")
        now = _ns()
        context = self._trace.set_span_in_context(self._root)
        self._nodes[node] = self._tracer.start_span(node, context=context, start_time=now,
                                                    attributes={"cachebot.node": node})
        if node == "execute":
            self._batch_start = {"": now}

    def _end(self, node: str, status: str, error: BaseException | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = self._nodes.pop(node, None)
        if span is None:
            return
        span.set_attribute("cachebot.status", status)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))
        span.end(end_time=_ns())

    def _batch(self, chunk: dict[str, Any]) -> None:
        sent = chunk["sent"]
        layer = str(chunk.get("layer") or getattr(sent[0], "layer", ""))
        now = _ns()
        started = self._batch_start.get(layer) or self._batch_start.get("") or now
        self._batch_start[layer] = now
        statuses = Counter(str(getattr(o.status, "value", o.status)) for o in sent)
        attempts = sum(int(o.attempts or 0) for o in sent)
        parent = self._nodes.get("execute", self._root)
        span = self._tracer.start_span(f"purge {layer}", context=self._trace.set_span_in_context(parent),
                                       start_time=started, attributes={
            "cachebot.layer": layer,
            "cachebot.operation": str(getattr(sent[0].operation, "value", sent[0].operation)),
            "cachebot.items": len(sent),
            "cachebot.attempts": attempts,
            "cachebot.retries": sum(max(0, int(o.attempts or 0) - 1) for o in sent),
            "cachebot.status": ", ".join(f"{status}={n}" for status, n in sorted(statuses.items())),
        })
        if statuses.get("failed"):
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, f"{statuses['failed']} of {len(sent)} purges failed"))
        span.end(end_time=now)
