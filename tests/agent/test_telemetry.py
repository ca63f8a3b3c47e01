"""OpenTelemetry (agent/telemetry.py): with OTEL_EXPORTER_OTLP_ENDPOINT set, each request is one trace, with a span
per node and per purge batch; the SDK's in-memory exporter stands in for the collector."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent import telemetry
from tests.agent.conftest import warm

PRICING = "https://shop.example/pricing"


@pytest.fixture
def spans(monkeypatch):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setenv(telemetry.ENDPOINT_VAR, "http://127.0.0.1:4318")  # never reached: the exporter is ours
    telemetry.use_provider(provider)
    yield exporter
    telemetry.use_provider(None)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_each_request_is_one_trace_with_a_span_per_node_and_per_layer_batch(make_agent, fresh_stack, spans):
    warm(fresh_stack, "/pricing", "/")
    agent = make_agent(approval={"threshold": 1, "approvers": ["alice"]})
    agent.ask(f"purge {PRICING}", user="bob", thread_id="t-otel")
    agent.decide("t-otel", "approve", user="alice")
    request_id = agent.audit.latest_request("t-otel")["id"]
    agent.ask("help", user="bob", thread_id="t-other")

    finished = spans.get_finished_spans()
    mine = [s for s in finished if s.context.trace_id == int(request_id, 16)]
    assert {s.context.trace_id for s in finished} == {int(request_id, 16),
                                                      int(agent.audit.latest_request("t-other")["id"], 16)}
    parts = {s.name: s for s in mine if s.name.startswith("cachebot.")}
    assert set(parts) == {"cachebot.request", "cachebot.decision"}  # asked, then approved: one trace
    nodes = [s.name for s in sorted(mine, key=lambda s: s.start_time) if s.attributes.get("cachebot.node")]
    assert nodes == ["understand", "resolve", "plan", "approval", "approval", "execute", "verify", "report"]
    waiting = next(s for s in mine if s.name == "approval" and s.parent.span_id == parts["cachebot.request"]
                   .context.span_id)
    assert waiting.attributes["cachebot.status"] == "waiting"

    execute = next(s for s in mine if s.name == "execute")
    batches = [s for s in mine if s.name.startswith("purge ")]
    assert batches and all(b.parent.span_id == execute.context.span_id for b in batches)
    assert {b.attributes["cachebot.layer"] for b in batches} == {"appcache", "varnish", "edge"}
    for batch in batches:
        assert batch.attributes["cachebot.items"] >= 1 and batch.attributes["cachebot.attempts"] >= 1
        assert batch.attributes["cachebot.retries"] >= 0 and "=" in batch.attributes["cachebot.status"]
        assert execute.start_time <= batch.start_time <= batch.end_time <= execute.end_time


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_without_the_endpoint_nothing_is_traced(make_agent, spans, monkeypatch):
    monkeypatch.delenv(telemetry.ENDPOINT_VAR)
    make_agent().ask("help", user="bob")
    assert spans.get_finished_spans() == ()
