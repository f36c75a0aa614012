"""Trace context in and out of functions, and spans recorded with the OpenTelemetry SDK."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nimbus.control.specs import VersionSpec
from nimbus.observe.tracing import (
    Tracer,
    _exporter_configured,
    incoming_header,
    parse_traceparent,
    parse_xray,
)
from nimbus.sandbox.types import InvokeRequest, InvokeResult

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"


def spec(mode: str = "PassThrough") -> VersionSpec:
    return VersionSpec(
        function_name="fn", version="$LATEST", function_arn="arn:aws:lambda:us-east-1:000000000000:function:fn",
        runtime="python3.12", handler="app.handler", memory_size=128, timeout=3, environment={},
        ephemeral_storage=512, architectures=("x86_64",), layers=(), logging_config={}, code_sha256="0" * 64,
        code_dir=Path("/nonexistent"), revision_id="r", tracing_mode=mode,
    )


def request(trace_id: str | None) -> InvokeRequest:
    return InvokeRequest("req-1", b"{}", 0, "arn:aws:lambda:us-east-1:000000000000:function:fn",
                         trace_id=trace_id or f"Root={ROOT};Parent={PARENT};Sampled=0")


def result(error: str | None = None, init: float | None = None) -> InvokeResult:
    return InvokeResult(b"{}", "Unhandled" if error else None, error, [], 12.5, 40, init, "stream", "env")


@pytest.fixture()
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture()
def tracer(exporter: InMemorySpanExporter) -> Tracer:
    return Tracer(SimpleSpanProcessor(exporter))


def test_parse_xray_and_traceparent_name_the_same_ids() -> None:
    x = parse_xray(f"Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a:1")
    assert x is not None and x.root == ROOT and x.parent == PARENT and x.sampled is True
    w = parse_traceparent(f"00-5759e988bd862e3fe1be46a994272793-{PARENT}-01")
    assert w == x
    assert x.trace_id == 0x5759E988BD862E3FE1BE46A994272793
    assert parse_xray("Root=garbage") is None
    assert parse_xray(None) is None
    assert parse_traceparent("00-" + "0" * 32 + "-" + PARENT + "-01") is None
    assert parse_traceparent("zz") is None


def test_incoming_header_prefers_amzn_then_translates_traceparent() -> None:
    assert incoming_header(b"Root=1-a", None) == "Root=1-a"
    assert incoming_header(None, f"00-5759e988bd862e3fe1be46a994272793-{PARENT}-00") == (
        f"Root={ROOT};Parent={PARENT};Sampled=0")
    assert incoming_header(None, "nonsense") is None
    assert incoming_header(None, None) is None


def test_exporter_is_off_unless_an_otlp_endpoint_is_configured() -> None:
    assert not _exporter_configured({})
    assert _exporter_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert _exporter_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x/v1/traces"})
    assert not _exporter_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})
    assert not _exporter_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"})
    assert not Tracer.from_env().recording or _exporter_configured(__import__("os").environ)


def test_sampled_caller_gets_a_span_that_becomes_the_functions_parent(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    upstream = f"Root={ROOT};Parent={PARENT};Sampled=1"
    req = request(upstream)
    tracer.begin(spec(), req, upstream, "PassThrough")
    tracer.finish(req, result(init=100.0))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"fn", "Init", "Invocation"}
    root = spans["fn"]
    assert root.kind == SpanKind.SERVER
    assert root.context.trace_id == 0x5759E988BD862E3FE1BE46A994272793
    assert root.parent is not None and root.parent.span_id == int(PARENT, 16)
    assert root.attributes is not None and root.attributes["faas.invocation_id"] == "req-1"
    assert root.attributes["faas.coldstart"] is True
    assert spans["Init"].parent is not None and spans["Init"].parent.span_id == root.context.span_id
    assert spans["Init"].end_time <= spans["Invocation"].start_time  # type: ignore[operator]
    # The function sees the invocation span as its parent, in X-Ray's format, sampled.
    assert req.trace_id == f"Root={ROOT};Parent={root.context.span_id:016x};Sampled=1"


def test_passthrough_records_nothing_for_an_unsampled_caller(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    upstream = f"Root={ROOT};Parent={PARENT};Sampled=0"
    req = request(upstream)
    tracer.begin(spec(), req, upstream, "PassThrough")
    tracer.finish(req, result())
    assert exporter.get_finished_spans() == ()
    assert req.trace_id == upstream  # passed through unchanged


def test_active_samples_an_invocation_without_a_caller_decision(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    req = request(None)  # the invoker generated an unsampled header
    tracer.begin(spec("Active"), req, None, "Active")
    tracer.finish(req, result(error="KeyError"))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"fn", "Invocation"}  # warm: no Init
    root = spans["fn"]
    assert root.status.status_code == StatusCode.ERROR
    assert root.parent is None
    assert root.context.trace_id == 0x5759E988BD862E3FE1BE46A994272793  # the generated X-Ray root is kept
    assert req.trace_id is not None and req.trace_id.endswith(";Sampled=1")


def test_active_respects_a_callers_decision_not_to_sample(tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    upstream = f"Root={ROOT};Sampled=0"
    req = request(upstream)
    tracer.begin(spec("Active"), req, upstream, "Active")
    tracer.finish(req, result())
    assert exporter.get_finished_spans() == ()


def test_active_without_exporter_still_marks_the_header_sampled() -> None:
    tracer = Tracer(None)
    req = request(None)
    tracer.begin(spec("Active"), req, None, "Active")
    assert req.trace_id == f"Root={ROOT};Sampled=1"
    tracer.finish(req, result())  # nothing open: no error


def test_sample_ratio_zero_samples_nothing(exporter: InMemorySpanExporter) -> None:
    tracer = Tracer(SimpleSpanProcessor(exporter), sample_ratio=0.0)
    req = request(None)
    tracer.begin(spec("Active"), req, None, "Active")
    tracer.finish(req, result())
    assert exporter.get_finished_spans() == ()
    assert req.trace_id is not None and req.trace_id.endswith("Sampled=0")


def test_a_request_whose_id_changes_after_begin_still_ends_its_span(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    upstream = f"Root={ROOT};Parent={PARENT};Sampled=1"
    req = request(upstream)
    tracer.begin(spec(), req, upstream, "PassThrough")
    req.request_id = "queued-event-id"  # what the async dispatcher does
    tracer.finish(req, result())
    root = next(s for s in exporter.get_finished_spans() if s.name == "fn")
    assert root.attributes is not None and root.attributes["faas.invocation_id"] == "queued-event-id"
