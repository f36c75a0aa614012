"""Tracing: trace context in and out of functions, and OpenTelemetry spans of invocations.

- The caller's context is accepted as AWS's `X-Amzn-Trace-Id` (`Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;
  Sampled=0|1`) or W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex flags>`); both name the same ids (the X-Ray
  root's 8 + 24 hex digits are the W3C trace id). The function gets it as `_X_AMZN_TRACE_ID` (the runtime's
  `Lambda-Runtime-Trace-Id`), with `Parent` set to the invocation's span when one is recorded.
- `TracingConfig.Mode`: `PassThrough` records only what the caller sampled (`Sampled=1`); `Active` also
  samples invocations that arrive without a decision (at `NIMBUS_TRACING_SAMPLE_RATIO`).
- Spans go to the exporter the standard `OTEL_EXPORTER_OTLP_*` variables configure (OTLP/HTTP protobuf);
  tracing is off unless an OTLP endpoint is set (`OTEL_SDK_DISABLED=true` / `OTEL_TRACES_EXPORTER=none`
  keep it off). Spans are created only for sampled invocations: the hot path of an unsampled one is a few
  string checks.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from nimbus.control.specs import VersionSpec
from nimbus.sandbox.types import InvokeRequest, InvokeResult

log = logging.getLogger("nimbus.tracing")

MAX_OPEN_SPANS = 10_000  # spans of invocations still running; beyond this the oldest are ended
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class TraceHeader:
    """The parts of an X-Ray trace header nimbus uses."""

    root: str  # 1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy
    parent: str | None  # 16 hex digits
    sampled: bool | None  # None: no decision yet

    @property
    def trace_id(self) -> int:
        return int(self.root[2:10] + self.root[11:], 16)

    def render(self) -> str:
        text = f"Root={self.root}"
        if self.parent:
            text += f";Parent={self.parent}"
        if self.sampled is not None:
            text += f";Sampled={1 if self.sampled else 0}"
        return text


def _is_hex(text: str, size: int) -> bool:
    return len(text) == size and set(text) <= _HEX


def parse_xray(header: str | None) -> TraceHeader | None:
    """Parse `X-Amzn-Trace-Id` (unknown fields ignored); None when it carries no valid Root."""
    if not header:
        return None
    root = parent = None
    sampled: bool | None = None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root":
            root = value.lower()
        elif key == "Parent":
            parent = value.lower()
        elif key == "Sampled":
            sampled = {"1": True, "0": False}.get(value)
    if root is None:
        return None
    pieces = root.split("-")
    if len(pieces) != 3 or pieces[0] != "1" or not _is_hex(pieces[1], 8) or not _is_hex(pieces[2], 24):
        return None
    if parent is not None and not _is_hex(parent, 16):
        parent = None
    return TraceHeader(root, parent, sampled)


def parse_traceparent(header: str | None) -> TraceHeader | None:
    """Parse a W3C `traceparent` into the equivalent X-Ray ids; None when invalid."""
    if not header:
        return None
    parts = header.strip().lower().split("-")
    if len(parts) < 4 or not _is_hex(parts[0], 2) or parts[0] == "ff":
        return None
    trace_id, span_id, flags = parts[1], parts[2], parts[3]
    if not _is_hex(trace_id, 32) or not _is_hex(span_id, 16) or not _is_hex(flags[:2], 2):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceHeader(f"1-{trace_id[:8]}-{trace_id[8:]}", span_id, bool(int(flags[:2], 16) & 1))


def incoming_header(amzn: bytes | str | None, traceparent: bytes | str | None) -> str | None:
    """The trace header an invocation request carries: `X-Amzn-Trace-Id` as given, else the W3C
    `traceparent` translated to it, else None."""
    if amzn:
        return amzn.decode("latin-1") if isinstance(amzn, bytes) else amzn
    if traceparent:
        text = traceparent.decode("latin-1") if isinstance(traceparent, bytes) else traceparent
        parsed = parse_traceparent(text)
        return parsed.render() if parsed is not None else None
    return None


def new_root(now: float | None = None) -> str:
    return f"1-{int(time.time() if now is None else now):08x}-{random.getrandbits(96):024x}"


class _IdGenerator(IdGenerator):
    """Random ids, except that the next trace id can be imposed (a caller's X-Ray root without a parent)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self.forced_trace_id: int | None = None

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        if self.forced_trace_id is not None:
            return self.forced_trace_id
        return self._random.generate_trace_id()


def _exporter_configured(env: dict[str, str] | os._Environ[str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "otlp").lower()
    if "otlp" not in exporters.split(","):
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


class Tracer:
    """Decides sampling, rewrites the trace header passed to functions, and records spans."""

    def __init__(self, processor: SpanProcessor | None = None, sample_ratio: float = 1.0) -> None:
        self.sample_ratio = sample_ratio
        self._ids = _IdGenerator()
        # Spans of invocations in flight, by the request object's identity (the async dispatcher replaces a
        # request's id with the queued event's after the request is built).
        self._open: dict[int, tuple[Any, int]] = {}
        self.provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        if processor is not None:
            resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "nimbus"})
            self.provider = TracerProvider(resource=resource, id_generator=self._ids)
            self.provider.add_span_processor(processor)
            self._tracer = self.provider.get_tracer("nimbus")

    @classmethod
    def from_env(cls, sample_ratio: float = 1.0) -> Tracer:
        """A tracer exporting with OTLP/HTTP when the OTEL_EXPORTER_OTLP_* variables name an endpoint."""
        if not _exporter_configured(os.environ):
            return cls(None, sample_ratio)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        log.info("tracing: exporting spans with OTLP/HTTP")
        return cls(BatchSpanProcessor(OTLPSpanExporter()), sample_ratio)

    @property
    def recording(self) -> bool:
        return self._tracer is not None

    def shutdown(self) -> None:
        for span, _ in list(self._open.values()):
            span.end()
        self._open.clear()
        if self.provider is not None:
            self.provider.shutdown()

    # ----------------------------------------------------------------------------------------- hot path

    def begin(self, spec: VersionSpec, request: InvokeRequest, upstream: str | None, mode: str) -> None:
        """Decide sampling for `request`, start its span when sampled, and set the header the function gets.

        `upstream` is the caller's header (None when it sent none); `request.trace_id` already holds a fresh
        unsampled header in that case."""
        if upstream is None and mode != "Active":
            return  # PassThrough without a caller's decision: not sampled, header as generated
        parsed = parse_xray(request.trace_id)
        if parsed is None:  # a malformed header from the caller: start a fresh trace
            parsed = TraceHeader(new_root(), None, None)
        elif upstream is None:  # generated by the invoker: its Parent names no span, the trace starts here
            parsed = TraceHeader(parsed.root, None, None)
        sampled = parsed.sampled
        if sampled is None or upstream is None:
            sampled = mode == "Active" and (self.sample_ratio >= 1.0 or random.random() < self.sample_ratio)
        if not sampled or self._tracer is None:
            request.trace_id = TraceHeader(parsed.root, parsed.parent, sampled).render()
            return
        if parsed.parent:
            parent_ctx = SpanContext(parsed.trace_id, int(parsed.parent, 16), is_remote=True,
                                     trace_flags=TraceFlags(TraceFlags.SAMPLED))
            context = trace.set_span_in_context(NonRecordingSpan(parent_ctx))
        else:
            context = trace.set_span_in_context(trace.INVALID_SPAN)
            self._ids.forced_trace_id = parsed.trace_id
        try:
            span = self._tracer.start_span(
                spec.function_name,
                context=context,
                kind=SpanKind.SERVER,
                attributes={
                    "faas.name": spec.function_name,
                    "faas.version": spec.version,
                    "faas.invocation_id": request.request_id,
                    "cloud.resource_id": request.invoked_arn,
                    "cloud.provider": "aws",
                    "faas.max_memory": spec.memory_size * 1024 * 1024,
                    "aws.xray.trace_id": parsed.root,
                },
            )
        finally:
            self._ids.forced_trace_id = None
        span_id = f"{span.get_span_context().span_id:016x}"
        request.trace_id = TraceHeader(parsed.root, span_id, True).render()
        if len(self._open) >= MAX_OPEN_SPANS:  # invocations that never finished (crashed callers)
            oldest = next(iter(self._open))
            self._open.pop(oldest)[0].end()
        self._open[id(request)] = (span, time.time_ns())

    def finish(self, request: InvokeRequest, result: InvokeResult | None) -> None:
        """End the invocation's span (with its Init and Invocation phases as children)."""
        entry = self._open.pop(id(request), None)
        if entry is None or self._tracer is None:
            return
        span, started_ns = entry
        span.set_attribute("faas.invocation_id", request.request_id)
        end_ns = time.time_ns()
        if result is not None:
            context = trace.set_span_in_context(span)
            handler_start = max(started_ns, end_ns - int(result.duration_ms * 1e6))
            if result.init_duration_ms is not None:
                init_start = max(started_ns, handler_start - int(result.init_duration_ms * 1e6))
                init = self._tracer.start_span("Init", context=context, start_time=init_start)
                init.end(end_time=handler_start)
            restore_ms = _restore_ms(result)
            if restore_ms is not None:
                restore_start = max(started_ns, handler_start - int(restore_ms * 1e6))
                restore = self._tracer.start_span("Restore", context=context, start_time=restore_start)
                restore.end(end_time=handler_start)
            invocation = self._tracer.start_span("Invocation", context=context, start_time=handler_start)
            invocation.end(end_time=end_ns)
            span.set_attribute("faas.coldstart", result.init_duration_ms is not None)
            if result.function_error:
                span.set_status(Status(StatusCode.ERROR, result.error_type or result.function_error))
                span.set_attribute("error.type", result.error_type or "Unhandled")
        else:
            span.set_status(Status(StatusCode.ERROR, "invocation failed"))
        span.end(end_time=end_ns)


def _restore_ms(result: InvokeResult) -> float | None:
    value = getattr(result, "restore_duration_ms", None)
    if value is None:
        text = result.extra_report.get("Restore Duration") if result.extra_report else None
        if text:
            try:
                value = float(text.split()[0])
            except ValueError:
                value = None
    return None if value is None else float(value)
