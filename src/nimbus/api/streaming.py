"""`POST /2021-11-15/functions/{name}/response-streaming-invocations`: InvokeWithResponseStream.

The answer is `application/vnd.amazon.eventstream`: one `PayloadChunk` event per chunk the function
produced, sent the moment it arrives (no buffering: each event is written on its own and leaves with the
next turn of the event loop), then one `InvokeComplete` event (ErrorCode / ErrorDetails when the function
failed, LogResult with `X-Amz-Log-Type: Tail`). The data-plane side is `nimbus.invoke.streaming`.

Event stream framing (AWS's binary format, as botocore.eventstream parses it): `u32 total length, u32
headers length, u32 CRC32 of those 8 bytes`, headers, payload, `u32 CRC32 of everything before it`. A
header is `u8 name length, name, u8 type (7 = string), u16 value length, value`.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import struct
from collections.abc import AsyncIterator
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from nimbus.api.body import read_body
from nimbus.errors import RequestTooLarge, ValidationError
from nimbus.invoke.streaming import StreamOutcome, StreamStart, invoke_stream
from nimbus.platform import Platform

log = logging.getLogger("nimbus.api.streaming")

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_PRELUDE = struct.Struct("!II")
_U32 = struct.Struct("!I")
_STRING = 7


def _header(name: str, value: str) -> bytes:
    n = name.encode()
    v = value.encode()
    return bytes((len(n),)) + n + bytes((_STRING,)) + struct.pack("!H", len(v)) + v


# The headers of the two events never change: encode them once.
_CHUNK_HEADERS = (
    _header(":event-type", "PayloadChunk")
    + _header(":content-type", "application/octet-stream")
    + _header(":message-type", "event")
)
_COMPLETE_HEADERS = (
    _header(":event-type", "InvokeComplete")
    + _header(":content-type", "application/json")
    + _header(":message-type", "event")
)


def encode_message(headers: bytes, payload: bytes) -> bytes:
    """One event stream message from its encoded headers and payload."""
    total = 12 + len(headers) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(headers))
    head = prelude + _U32.pack(binascii.crc32(prelude))
    body = head + headers + payload
    return body + _U32.pack(binascii.crc32(body))


def payload_chunk(data: bytes) -> bytes:
    """A `PayloadChunk` event carrying `data` as its raw payload."""
    return encode_message(_CHUNK_HEADERS, data)


def invoke_complete(error_code: str | None = None, error_details: str | None = None,
                    log_result: str | None = None) -> bytes:
    """The final `InvokeComplete` event (members left out when unset)."""
    doc = {
        key: value
        for key, value in (("ErrorCode", error_code), ("ErrorDetails", error_details), ("LogResult", log_result))
        if value is not None
    }
    return encode_message(_COMPLETE_HEADERS, json.dumps(doc, separators=(",", ":")).encode())


def complete_event(outcome: StreamOutcome) -> bytes:
    return invoke_complete(outcome.error_code, outcome.error_details, outcome.log_result)


async def invoke_with_response_stream(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    settings = platform.settings
    name = unquote(request.path_params["name"])
    headers = request.headers
    invocation_type = headers.get("x-amz-invocation-type", "RequestResponse")
    log_type = headers.get("x-amz-log-type", "None")
    if log_type not in ("None", "Tail"):
        raise ValidationError(
            f"1 validation error detected: Value '{log_type}' at 'logType' failed to satisfy constraint: "
            "Member must satisfy enum value set: [Tail, None]"
        )
    try:
        payload = await read_body(request, settings.sync_payload_max_bytes)
    except RequestTooLarge:
        raise RequestTooLarge(
            f"Request must be smaller than {settings.sync_payload_max_bytes} bytes for the "
            "InvokeWithResponseStream operation"
        ) from None
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[bytes | None] = asyncio.Queue()
    started: asyncio.Future[StreamStart] = loop.create_future()

    def on_start(start: StreamStart) -> None:
        if not started.done():
            started.set_result(start)

    def on_chunk(data: bytes) -> None:
        events.put_nowait(payload_chunk(data))

    task = asyncio.create_task(
        invoke_stream(
            platform.invoker,
            name,
            request.query_params.get("Qualifier"),
            payload,
            on_chunk,
            limit=settings.stream_response_max_bytes,
            on_start=on_start,
            invocation_type=invocation_type,
            log_type=log_type,
            client_context=headers.get("x-amz-client-context"),
            trace_id=headers.get("x-amzn-trace-id"),
        )
    )

    def finished(done: asyncio.Task[StreamOutcome]) -> None:
        events.put_nowait(None)
        if not done.cancelled():
            done.exception()  # retrieved here too: nobody may be left to read it (client gone)

    task.add_done_callback(finished)
    await asyncio.wait((task, started), return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        started.cancel()
        outcome = task.result()  # raises the LambdaError that prevented the invocation
        if outcome.kind == "dry_run":
            return Response(
                status_code=204,
                headers={"X-Amz-Executed-Version": outcome.executed_version, "x-amzn-RequestId": outcome.request_id},
            )
        start = StreamStart(outcome.executed_version, outcome.request_id)
    else:
        start = started.result()

    async def frames() -> AsyncIterator[bytes]:
        while (event := await events.get()) is not None:
            yield event
        try:
            outcome = task.result()
        except Exception as exc:  # the invocation broke after the head was sent: end the stream cleanly
            log.exception("streamed invocation failed", extra={"request_id": start.request_id})
            yield invoke_complete("ServiceException", f"An internal error occurred: {type(exc).__name__}")
            return
        yield complete_event(outcome)

    return StreamingResponse(
        frames(),
        status_code=200,
        media_type=CONTENT_TYPE,
        headers={"X-Amz-Executed-Version": start.executed_version, "x-amzn-RequestId": start.request_id},
    )


routes: list[BaseRoute] = [
    Route(
        "/2021-11-15/functions/{name}/response-streaming-invocations",
        invoke_with_response_stream,
        methods=["POST"],
    ),
]
