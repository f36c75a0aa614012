"""The Runtime and Extensions API state machine and its HTTP server, driven over real TCP connections (no
sandbox): AWS's status codes, bodies and headers for right and wrong usage, streaming, extensions."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nimbus.sandbox.runtimeapi import ApiIdentity, RuntimeAPI, serve
from nimbus.sandbox.types import InvokeRequest, PlatformApi

MAX = 6 * 1024 * 1024 + 100


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.changed = asyncio.Event()

    def _add(self, *event: Any) -> None:
        self.events.append(event)
        self.changed.set()

    def api_ready(self) -> None:
        self._add("ready")

    def api_init_error(self, error_type: str, payload: bytes) -> None:
        self._add("init_error", error_type, payload)

    def api_result(self, ok: bool, error_type: str | None, payload: bytes) -> None:
        self._add("result", ok, error_type, payload)

    def api_extensions_idle(self) -> None:
        self._add("idle")

    async def wait_for(self, kind: str, timeout: float = 10) -> tuple[Any, ...]:
        async def poll() -> tuple[Any, ...]:
            while True:
                for event in self.events:
                    if event[0] == kind:
                        self.events.remove(event)
                        return event
                self.changed.clear()
                await self.changed.wait()
        return await asyncio.wait_for(poll(), timeout)


class Client:
    """A keep-alive HTTP/1.1 client on one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()

    async def response(self, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def call(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
                   ) -> tuple[int, dict[str, str], bytes]:
        await self.send(method, path, body, headers)
        return await self.response()

    def close(self) -> None:
        self.writer.close()


class Harness:
    def __init__(self, api: RuntimeAPI, listener: Listener, port: int) -> None:
        self.api = api
        self.listener = listener
        self.port = port

    async def client(self) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=16 * 1024 * 1024)
        return Client(reader, writer)


def identity() -> ApiIdentity:
    return ApiIdentity("fn", "$LATEST", "index.handler", "arn:aws:lambda:us-east-1:123456789012:function:fn", "e1")


async def harness_for(extensions: list[str]) -> tuple[Harness, asyncio.Server]:
    listener = Listener()
    api = RuntimeAPI(identity(), listener, MAX, extensions, PlatformApi())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    server = await serve(api, sock)
    return Harness(api, listener, sock.getsockname()[1]), server


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness, server = await harness_for([])
    yield harness
    harness.api.close()
    server.close()


def request(rid: str = "req-1", **kw: Any) -> InvokeRequest:
    fields: dict[str, Any] = dict(request_id=rid, payload=b'{"x":1}', deadline_ms=1_900_000_000_000,
                                  invoked_arn="arn:aws:lambda:us-east-1:123456789012:function:fn:live",
                                  trace_id="Root=1-abc;Parent=def;Sampled=0")
    fields.update(kw)
    return InvokeRequest(**fields)


NEXT = "/2018-06-01/runtime/invocation/next"


async def test_next_ends_init_and_delivers_the_event_with_aws_headers(h: Harness) -> None:
    c = await h.client()
    await c.send("GET", NEXT)
    await h.listener.wait_for("ready")
    h.api.dispatch(request(client_context='{"custom":{"a":"b"}}'), 1_900_000_000_000)
    status, headers, body = await c.response()
    assert status == 200 and body == b'{"x":1}'
    assert headers["lambda-runtime-aws-request-id"] == "req-1"
    assert headers["lambda-runtime-deadline-ms"] == "1900000000000"
    assert headers["lambda-runtime-invoked-function-arn"].endswith(":function:fn:live")
    assert headers["lambda-runtime-trace-id"] == "Root=1-abc;Parent=def;Sampled=0"
    assert headers["lambda-runtime-client-context"] == '{"custom":{"a":"b"}}'
    assert "lambda-runtime-cognito-identity" not in headers  # only when set
    status, _, body = await c.call("POST", "/2018-06-01/runtime/invocation/req-1/response", b'"done"')
    assert (status, body) == (202, b'{"status":"OK"}')
    assert await h.listener.wait_for("result") == ("result", True, None, b'"done"')
    c.close()


async def test_event_dispatched_before_next_waits_for_it(h: Harness) -> None:
    c = await h.client()
    await c.send("GET", NEXT)
    await h.listener.wait_for("ready")
    h.api.dispatch(request("a"), 1)
    await c.response()
    await c.call("POST", "/2018-06-01/runtime/invocation/a/response", b"1")
    h.api.dispatch(request("b"), 1)  # the runtime is not in `next` yet
    status, headers, _ = await c.call("GET", NEXT)
    assert status == 200 and headers["lambda-runtime-aws-request-id"] == "b"
    c.close()


async def test_wrong_usage(h: Harness) -> None:
    c = await h.client()
    # Before any event: the runtime is not allowed to answer.
    status, _, body = await c.call("POST", "/2018-06-01/runtime/invocation/x/response", b"1")
    assert status == 403
    assert json.loads(body) == {"errorType": "InvalidStateTransition", "errorMessage":
                                "State transition from Started to InvocationResponse failed for runtime. "
                                "Error: State transition is not allowed"}
    await c.send("GET", NEXT)
    await h.listener.wait_for("ready")
    h.api.dispatch(request("r1"), 1)
    await c.response()
    status, _, body = await c.call("POST", "/2018-06-01/runtime/invocation/other/response", b"1")
    assert (status, json.loads(body)) == (400, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"})
    status, _, body = await c.call("POST", "/2018-06-01/runtime/invocation/r1/response", b"x" * (MAX + 1))
    assert status == 413
    assert json.loads(body) == {"errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
                                "errorType": "RequestEntityTooLarge"}
    _, ok, error_type, payload = await h.listener.wait_for("result")
    assert not ok and error_type == "Function.ResponseSizeTooLarge"
    assert json.loads(payload)["errorMessage"] == (
        "Response payload size exceeded maximum allowed payload size (6291556 bytes).")
    status, _, body = await c.call("POST", "/2018-06-01/runtime/invocation/r1/response", b"1")
    assert status == 403 and b"RuntimeResponseSentState to InvocationResponse" in body
    status, _, body = await c.call("POST", "/2018-06-01/runtime/invocation/r1/error", b"{}")
    assert status == 403 and b"to InvocationErrorResponse" in body
    # Exactly 6 MB + 100 bytes is accepted.
    await c.send("GET", NEXT)
    h.api.dispatch(request("r2"), 1)
    await c.response()
    status, _, _ = await c.call("POST", "/2018-06-01/runtime/invocation/r2/response", b"y" * MAX)
    assert status == 202
    assert len((await h.listener.wait_for("result"))[3]) == MAX
    c.close()


async def test_function_error_and_init_error(h: Harness) -> None:
    c = await h.client()
    doc = b'{"errorMessage":"bad","errorType":"Runtime.ConfigInvalid","stackTrace":[]}'
    status, _, body = await c.call("POST", "/2018-06-01/runtime/init/error", doc,
                                   {"Lambda-Runtime-Function-Error-Type": "Runtime.ConfigInvalid"})
    assert (status, body) == (202, b'{"status":"OK"}')
    assert await h.listener.wait_for("init_error") == ("init_error", "Runtime.ConfigInvalid", doc)
    status, _, _ = await c.call("GET", NEXT)
    assert status == 403
    c.close()


async def test_invocation_error(h: Harness) -> None:
    c = await h.client()
    await c.send("GET", NEXT)
    await h.listener.wait_for("ready")
    h.api.dispatch(request("e1"), 1)
    await c.response()
    doc = b'{"errorMessage":"boom","errorType":"MyError","stackTrace":["a"]}'
    status, _, _ = await c.call("POST", "/2018-06-01/runtime/invocation/e1/error", doc,
                                {"Lambda-Runtime-Function-Error-Type": "MyError"})
    assert status == 202
    assert await h.listener.wait_for("result") == ("result", False, "MyError", doc)
    c.close()


async def test_streamed_response_passes_chunks_and_trailer_errors(h: Harness) -> None:
    chunks: list[bytes] = []
    c = await h.client()
    await c.send("GET", NEXT)
    await h.listener.wait_for("ready")
    h.api.dispatch(request("s1", on_chunk=chunks.append), 1)
    await c.response()
    c.writer.write(b"POST /2018-06-01/runtime/invocation/s1/response HTTP/1.1\r\nHost: x\r\n"
                   b"Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
                   b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n"
                   b"5\r\nhello\r\n")
    for _ in range(100):
        if chunks:
            break
        await asyncio.sleep(0.01)
    assert chunks == [b"hello"]  # passed on before the stream ends
    error = base64.b64encode(b'{"errorMessage":"mid","errorType":"Stream.Broken"}').decode()
    c.writer.write(b"6\r\n world\r\n0\r\nLambda-Runtime-Function-Error-Type: Stream.Broken\r\n"
                   + f"Lambda-Runtime-Function-Error-Body: {error}\r\n\r\n".encode())
    status, _, _ = await c.response()
    assert status == 202
    assert chunks == [b"hello", b" world"]
    assert await h.listener.wait_for("result") == (
        "result", False, "Stream.Broken", b'{"errorMessage":"mid","errorType":"Stream.Broken"}')
    c.close()


async def test_streaming_mode_without_a_consumer_is_buffered(h: Harness) -> None:
    c = await h.client()
    await c.send("GET", NEXT)
    await h.listener.wait_for("ready")
    h.api.dispatch(request("s2"), 1)
    await c.response()
    c.writer.write(b"POST /2018-06-01/runtime/invocation/s2/response HTTP/1.1\r\nHost: x\r\n"
                   b"Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n")
    assert (await c.response())[0] == 202
    assert await h.listener.wait_for("result") == ("result", True, None, b"abcd")
    c.close()


async def test_unknown_paths_go_to_the_platform_app(h: Harness) -> None:
    c = await h.client()
    status, headers, body = await c.call("GET", "/2015-03-31/functions")
    assert status == 404 and headers["x-amzn-errortype"] == "UnknownOperationException"
    assert json.loads(body)["Type"] == "User"
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        request = await receive()
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"got " + request["body"]})

    assert h.api.platform_api is not None
    h.api.platform_api.bind(app)
    status, headers, body = await c.call("POST", "/2015-03-31/functions/x/invocations?Qualifier=1", b"hi")
    assert (status, body, headers["content-type"]) == (201, b"got hi", "text/plain")
    assert seen[0]["path"] == "/2015-03-31/functions/x/invocations" and seen[0]["query_string"] == b"Qualifier=1"
    assert seen[0]["nimbus.environment"]["function_name"] == "fn"
    c.close()


EXT = "/2020-01-01/extension"


async def test_extensions_register_gate_init_and_get_events() -> None:
    h, server = await harness_for(["logger"])
    try:
        runtime, ext = await h.client(), await h.client()
        await runtime.send("GET", NEXT)
        await asyncio.sleep(0.05)
        assert h.listener.events == []  # INIT waits for the launched extension
        status, headers, body = await ext.call("POST", f"{EXT}/register", b'{"events":["INVOKE","SHUTDOWN"]}',
                                               {"Lambda-Extension-Name": "logger",
                                                "Lambda-Extension-Accept-Feature": "accountId"})
        assert status == 200
        assert json.loads(body) == {"functionName": "fn", "functionVersion": "$LATEST",
                                    "handler": "index.handler", "accountId": "123456789012"}
        ext_id = headers["lambda-extension-identifier"]
        await ext.send("GET", f"{EXT}/event/next", headers={"Lambda-Extension-Identifier": ext_id})
        await h.listener.wait_for("ready")
        # Registration is closed after INIT.
        late = await h.client()
        status, _, body = await late.call("POST", f"{EXT}/register", b'{"events":[]}',
                                          {"Lambda-Extension-Name": "late"})
        assert status == 403 and json.loads(body)["errorType"] == "Extension.RegistrationClosed"
        h.api.dispatch(request("i1"), 1_900_000_000_000)
        status, headers, body = await ext.response()
        assert status == 200 and "lambda-extension-event-identifier" in headers
        assert json.loads(body) == {"eventType": "INVOKE", "deadlineMs": 1_900_000_000_000, "requestId": "i1",
                                    "invokedFunctionArn": request().invoked_arn,
                                    "tracing": {"type": "X-Amzn-Trace-Id",
                                                "value": "Root=1-abc;Parent=def;Sampled=0"}}
        assert h.api.extensions_busy
        await runtime.response()
        await runtime.call("POST", "/2018-06-01/runtime/invocation/i1/response", b"1")
        await h.listener.wait_for("result")
        assert h.api.extensions_busy
        await ext.send("GET", f"{EXT}/event/next", headers={"Lambda-Extension-Identifier": ext_id})
        await h.listener.wait_for("idle")
        assert not h.api.extensions_busy
        assert h.api.shutdown("spindown")
        status, _, body = await ext.response()
        event = json.loads(body)
        assert event["eventType"] == "SHUTDOWN" and event["shutdownReason"] == "spindown"
        assert isinstance(event["deadlineMs"], int)
        for c in (runtime, ext, late):
            c.close()
    finally:
        h.api.close()
        server.close()


async def test_extension_errors() -> None:
    h, server = await harness_for(["ext"])
    try:
        c = await h.client()
        status, _, body = await c.call("GET", f"{EXT}/event/next")
        assert status == 403 and json.loads(body)["errorType"] == "Extension.MissingExtensionIdentifier"
        status, _, body = await c.call("GET", f"{EXT}/event/next", headers={"Lambda-Extension-Identifier": "nope"})
        assert status == 403 and json.loads(body)["errorType"] == "Extension.UnknownExtensionIdentifier"
        status, _, body = await c.call("POST", f"{EXT}/register", b'{"events":["BOGUS"]}',
                                       {"Lambda-Extension-Name": "ext"})
        assert status == 403 and json.loads(body)["errorType"] == "Extension.InvalidEventType"
        # An internal extension (not launched from /opt/extensions) may not subscribe to SHUTDOWN.
        status, _, body = await c.call("POST", f"{EXT}/register", b'{"events":["SHUTDOWN"]}',
                                       {"Lambda-Extension-Name": "internal"})
        assert status == 403 and json.loads(body)["errorType"] == "Extension.InvalidEventType"
        status, headers, _ = await c.call("POST", f"{EXT}/register", b'{"events":["INVOKE"]}',
                                          {"Lambda-Extension-Name": "ext"})
        ext_id = headers["lambda-extension-identifier"]
        status, _, body = await c.call("POST", f"{EXT}/init/error", b"{}", {"Lambda-Extension-Identifier": ext_id})
        assert status == 400 and json.loads(body)["errorType"] == "Extension.MissingHeader"
        status, _, body = await c.call("POST", f"{EXT}/init/error", b"{}", {
            "Lambda-Extension-Identifier": ext_id, "Lambda-Extension-Function-Error-Type": "Extension.Broken"})
        assert (status, body) == (202, b'{"status":"OK"}')
        _, error_type, payload = await h.listener.wait_for("init_error")
        assert error_type == "Extension.InitError" and b"ext" in payload
        c.close()
    finally:
        h.api.close()
        server.close()


async def test_oversized_or_malformed_requests_close_the_connection(h: Harness) -> None:
    c = await h.client()
    c.writer.write(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + b"X-Big: " + b"a" * (2 * 1024 * 1024))
    try:  # the server answers 400 and closes; unread data may turn the close into a reset
        status, _, body = await c.response()
        assert status == 400 and json.loads(body)["errorType"] == "InvalidRequestFormat"
        assert await c.reader.read() == b""
    except (ConnectionResetError, asyncio.IncompleteReadError):
        pass
    assert not h.api.conns or all(conn.transport is None for conn in h.api.conns)
    c2 = await h.client()
    c2.writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    assert (await c2.response())[0] == 400
    c.close()
    c2.close()


async def test_an_empty_payload_is_delivered_as_an_empty_json_object(h: Harness) -> None:
    # AWS passes `{}` when Invoke has no payload; Node's aws-lambda-ric JSON.parses the body of `next`.
    c = await h.client()
    await c.send("GET", NEXT)
    await h.listener.wait_for("ready")
    h.api.dispatch(request("e", payload=b""), 1)
    status, headers, body = await c.response()
    assert (status, body) == (200, b"{}")
    assert headers["content-length"] == "2"
    c.close()


async def test_an_extension_process_exiting_fails_init_only_before_it_ends() -> None:
    h, server = await harness_for(["ext"])
    try:
        c = await h.client()
        await c.send("GET", NEXT)  # the runtime is ready; INIT still waits for "ext"
        assert h.api.extension_exited("ext") is True  # AWS: Extension.Crash
        assert h.api.state == "InitError"
        assert h.api.extension_exited("ext") is False  # reported once
        c.close()
    finally:
        h.api.close()
        server.close()
    h, server = await harness_for(["ext"])
    try:
        e = await h.client()
        status, headers, _ = await e.call("POST", "/2020-01-01/extension/register", b'{"events":["INVOKE"]}',
                                          {"Lambda-Extension-Name": "ext"})
        ext_id = headers["lambda-extension-identifier"]
        await e.send("GET", "/2020-01-01/extension/event/next", headers={"Lambda-Extension-Identifier": ext_id})
        c = await h.client()
        await c.send("GET", NEXT)
        await h.listener.wait_for("ready")
        h.api.dispatch(request("r1"), 1)  # the extension gets INVOKE and is busy with it
        await e.response()
        assert h.api.extensions_busy
        assert h.api.extension_exited("ext") is False  # after INIT: it no longer holds the environment up
        assert not h.api.extensions_busy
        await h.listener.wait_for("idle")
        e.close()
        c.close()
    finally:
        h.api.close()
        server.close()
