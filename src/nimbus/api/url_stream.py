"""Function URLs in RESPONSE_STREAM mode: the function's output goes to the client as it is produced
(`invoke/streaming.py`). A stream may start with AWS's HTTP-integration prelude, a JSON object
`{statusCode, headers, cookies}` followed by 8 NUL bytes (what Node's `awslambda.HttpResponseStream` writes);
without one the response is 200 `application/octet-stream`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Send

from nimbus.control.urls import UrlTarget
from nimbus.invoke.service import Invoker
from nimbus.invoke.streaming import invoke_stream

SEPARATOR = b"\x00" * 8
PRELUDE_MAX = 64 * 1024


def _prelude(buf: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None | bool:
    """(status, headers, rest of body) when `buf` starts with a complete prelude; None when more bytes are
    needed to tell; False when the stream has no prelude."""
    if buf.lstrip()[:1] != b"{":
        return False if buf.strip() else None
    end = buf.find(SEPARATOR)
    if end < 0:
        return None if len(buf) < PRELUDE_MAX else False
    try:
        doc: Any = json.loads(buf[:end])
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    headers = [(str(k).lower().encode("latin-1", "replace"), str(v).encode("latin-1", "replace"))
               for k, v in (doc.get("headers") or {}).items()]
    headers += [(b"set-cookie", str(c).encode("latin-1", "replace")) for c in doc.get("cookies") or []]
    if not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", b"application/octet-stream"))
    try:
        status = int(doc.get("statusCode", 200))
    except (TypeError, ValueError):
        status = 200
    return status, headers, buf[end + len(SEPARATOR):]


async def stream_url(invoker: Invoker, target: UrlTarget, payload: bytes, extra_headers: list[tuple[bytes, bytes]],
                     request_id: str, send: Send, limit: int) -> bool:
    """Invoke and stream the answer to `send`. False when the function failed before any byte was sent (the
    caller answers 502); LambdaErrors that prevent the invocation propagate."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    task = asyncio.ensure_future(
        invoke_stream(invoker, target.function_name, target.qualifier, payload, queue.put_nowait, limit=limit))
    task.add_done_callback(lambda _t: queue.put_nowait(None))
    buf = b""
    head_sent = False

    async def head(status: int, headers: list[tuple[bytes, bytes]]) -> None:
        nonlocal head_sent
        head_sent = True
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, *extra_headers, (b"x-amzn-requestid", request_id.encode())]})

    try:
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            if head_sent:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                continue
            buf += chunk
            found = _prelude(buf)
            if found is None:
                continue
            if found is False:
                await head(200, [(b"content-type", b"application/octet-stream")])
                rest = buf
            else:
                assert not isinstance(found, bool)
                status, headers, rest = found
                await head(status, headers)
            buf = b""
            if rest:
                await send({"type": "http.response.body", "body": rest, "more_body": True})
        outcome = task.result()
    except BaseException:
        task.cancel()
        if head_sent:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return True
        raise
    if not head_sent:
        if outcome.function_error:
            return False
        found = _prelude(buf)
        if isinstance(found, tuple):
            status, headers, buf = found
            await head(status, headers)
        else:
            await head(200, [(b"content-type", b"application/octet-stream")])
    await send({"type": "http.response.body", "body": buf, "more_body": False})
    return True
