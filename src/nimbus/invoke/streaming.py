"""Response streaming on the data plane: an invocation whose output reaches the caller chunk by chunk, as the
function produces it (InvokeWithResponseStream, function URLs in RESPONSE_STREAM mode).

It is a synchronous invocation like any other (same validation, routing, concurrency, START/END/REPORT
records: `Invoker.invoke` does all of it), with `InvokeRequest.on_chunk` set, so the sandbox hands over each
chunk the moment the runtime writes it. This module adds what streaming needs on top: the invocation types
it accepts, the response size limit (`Settings.stream_response_max_bytes`, AWS's 20 MB soft limit), and an
outcome describing how the stream ended (AWS's InvokeComplete event).

Callers (api/streaming.py, function URLs) use `invoke_stream`:

    outcome = await invoke_stream(invoker, "fn", None, b"{}", on_chunk, on_start=on_start)

`on_start(StreamStart)` is called once the invocation is admitted (routed, not throttled), before any chunk:
send the response head then. Errors that prevent the invocation (not found, throttled, bad request) raise
LambdaError before `on_start`; errors of the function never raise, they end the stream (StreamOutcome).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from nimbus.errors import ValidationError
from nimbus.invoke.service import Invoker, OutcomeKind

log = logging.getLogger("nimbus.invoke.streaming")

STREAM_INVOCATION_TYPES = ("RequestResponse", "DryRun")


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The invocation was admitted: what the response head carries."""

    executed_version: str
    request_id: str


@dataclass(slots=True)
class StreamOutcome:
    """How a streamed invocation ended."""

    kind: OutcomeKind  # "sync", or "dry_run" (nothing ran)
    executed_version: str
    request_id: str
    bytes_streamed: int = 0  # payload bytes passed to on_chunk
    function_error: str | None = None  # "Unhandled" when the invocation failed (as X-Amz-Function-Error)
    error_code: str | None = None  # InvokeComplete.ErrorCode: the error type, e.g. "ValueError"
    error_details: str | None = None  # InvokeComplete.ErrorDetails: the error document (JSON text)
    log_result: str | None = None  # InvokeComplete.LogResult: base64 log tail (log_type "Tail")


class _Relay:
    """Passes chunks on in order while they fit in the limit; never raises into the sandbox."""

    __slots__ = ("on_chunk", "limit", "sent", "over", "failed")

    def __init__(self, on_chunk: Callable[[bytes], None], limit: int) -> None:
        self.on_chunk = on_chunk
        self.limit = limit
        self.sent = 0
        self.over = False
        self.failed = False

    def __call__(self, data: bytes) -> None:
        if self.over or self.failed or not data:
            return
        if self.sent + len(data) > self.limit:
            self.over = True  # the rest of the response is dropped; the stream ends with an error
            return
        self.sent += len(data)
        try:
            self.on_chunk(data)
        except Exception:
            self.failed = True
            log.exception("response stream consumer failed; dropping the rest of the response")


async def invoke_stream(
    invoker: Invoker,
    function: str,
    qualifier: str | None,
    payload: bytes,
    on_chunk: Callable[[bytes], None],
    *,
    limit: int,
    on_start: Callable[[StreamStart], None] | None = None,
    invocation_type: str = "RequestResponse",
    log_type: str = "None",
    client_context: str | None = None,
    trace_id: str | None = None,
) -> StreamOutcome:
    """Invoke `function` (name or ARN, `qualifier` as in Invoke) streaming its response to `on_chunk`.

    `on_chunk(bytes)` is called on the event loop, in order, as each chunk arrives; it must not block (queue
    the data). `limit` is the largest response streamed (`Settings.stream_response_max_bytes`, AWS's 20 MB
    soft limit); past it the stream ends with Function.ResponseSizeTooLarge. `client_context` is the base64
    X-Amz-Client-Context value. Raises LambdaError for anything that prevents the invocation; the function's
    own failures come back in the outcome.
    """
    if invocation_type not in STREAM_INVOCATION_TYPES:
        raise ValidationError(
            f"1 validation error detected: Value '{invocation_type}' at 'invocationType' failed to satisfy "
            "constraint: Member must satisfy enum value set: [RequestResponse, DryRun]"
        )
    relay = _Relay(on_chunk, limit)
    admitted: list[StreamStart] = []

    def started(version: str, request_id: str) -> None:
        start = StreamStart(version, request_id)
        admitted.append(start)
        if on_start is not None:
            on_start(start)

    outcome = await invoker.invoke(
        function,
        qualifier,
        payload,
        invocation_type=invocation_type,
        log_type=log_type,
        client_context=client_context,
        trace_id=trace_id,
        on_chunk=relay,
        on_admitted=started,
    )
    version = outcome.executed_version or ""
    request_id = admitted[0].request_id if admitted else outcome.request_id
    result = StreamOutcome(outcome.kind, version, request_id, relay.sent)
    if outcome.kind != "sync":
        return result
    result.log_result = outcome.log_result
    if outcome.function_error:
        result.function_error = outcome.function_error
        result.error_details = outcome.payload.decode("utf-8", "replace")
        result.error_code = _error_type(outcome.payload) or result.function_error
    elif outcome.payload:
        # A sandbox that does not stream (it answered with one buffered payload): it is the only chunk.
        relay(outcome.payload)
        result.bytes_streamed = relay.sent
    if relay.over and result.function_error is None:
        result.function_error = "Unhandled"
        result.error_code = "Function.ResponseSizeTooLarge"
        result.error_details = json.dumps(
            {
                "errorMessage": f"Response payload size exceeded maximum allowed payload size ({limit} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
            }
        )
    return result


def _error_type(document: bytes) -> str | None:
    try:
        doc = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        return None
    value = doc.get("errorType") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and value else None
