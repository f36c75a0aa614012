"""The Lambda Runtime API (`/2018-06-01/runtime/...`) and Extensions API (`/2020-01-01/extension/...`) of one
execution environment: the state machine AWS's runtime manager enforces, and a lean HTTP/1.1 server for it.

nimbus serves these on the listening socket the environment's launcher created at 127.0.0.1:9001 inside the
sandbox (runtime/apilauncher.py), so a runtime reaches its endpoint without the host's loopback being
reachable. Any other path goes to the platform app (`types.PlatformApi`, handed to `RuntimeAPI`; 404 in
Lambda's error shape without one).

The runtime side follows AWS's runtime manager (the runtime interface emulator's `rapid`): `next` ends INIT
(together with every extension's first `next`), `/response` or `/error` answers the invocation delivered by
`next` (202 {"status":"OK"}), 400 InvalidRequestID for another id, 403 InvalidStateTransition when nothing
is waiting for an answer (e.g. a second response), 413 RequestEntityTooLarge over 6 MB + 100 bytes. Streamed
responses (`Lambda-Runtime-Function-Response-Mode: streaming`, chunked) are passed on chunk by chunk, with
errors in the trailers `Lambda-Runtime-Function-Error-Type` / `-Error-Body` (base64).

This module owns HTTP and the protocol; what an answer means for the invocation is the environment's
(apienvironment.py), told through `ApiListener`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httptools

from nimbus.sandbox.telemetry import LOGS_PATH, TELEMETRY_PATH, TelemetryHub
from nimbus.sandbox.types import ASGIApp, InvokeRequest, Message, PlatformApi, Scope

log = logging.getLogger(__name__)


MAX_EXTENSIONS = 10
SHUTDOWN_GRACE_MS = 2000  # external extensions get 2,000 ms after SHUTDOWN (AWS's figure)
RUNTIME_PREFIX = "/2018-06-01/runtime/"
EXTENSION_PREFIX = "/2020-01-01/extension/"
STATE_MESSAGE = "State transition from {} to {} failed for runtime. Error: State transition is not allowed"
ACCEPTED = b'{"status":"OK"}'
MAX_HEAD_BYTES = 1024 * 1024  # URL + headers (+ trailers) of one request


@dataclass(frozen=True, slots=True)
class ApiIdentity:
    """What the environment tells registering extensions (and the platform app) about itself."""

    function_name: str
    function_version: str
    handler: str
    function_arn: str
    environment_id: str

    @property
    def account_id(self) -> str:
        parts = self.function_arn.split(":")
        return parts[4] if len(parts) > 4 else ""


class ApiListener(Protocol):
    """The environment's side: what the runtime and the extensions did."""

    def api_ready(self) -> None:
        """INIT is over: the runtime and every extension called `next`."""

    def api_init_error(self, error_type: str, payload: bytes) -> None:
        """The runtime (or an extension) reported an INIT failure."""

    def api_result(self, ok: bool, error_type: str | None, payload: bytes) -> None:
        """The runtime answered the current invocation (payload b"" after a stream delivered its chunks)."""

    def api_extensions_idle(self) -> None:
        """Every extension that received the last event called `next` again."""


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _error_body(error_type: str, message: str) -> bytes:
    return _json({"errorMessage": message, "errorType": error_type})


_REASONS = {200: b"OK", 202: b"Accepted", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found",
            413: b"Request Entity Too Large", 500: b"Internal Server Error"}


def http_response(status: int, body: bytes, headers: list[tuple[str, str]] | None = None,
                  content_type: bytes = b"application/json") -> bytes:
    """A complete HTTP/1.1 response, head and body joined (one send)."""
    head = [b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            % (status, _REASONS.get(status, b"Unknown"), content_type, len(body))]
    if headers:
        head.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)


class _Invocation:
    __slots__ = ("request", "deadline_ms", "event")

    def __init__(self, request: InvokeRequest, deadline_ms: int) -> None:
        self.request = request
        self.deadline_ms = deadline_ms
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", request.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", request.invoked_arn),
        ]
        if request.trace_id:
            headers.append(("Lambda-Runtime-Trace-Id", request.trace_id))
        if request.client_context:
            headers.append(("Lambda-Runtime-Client-Context", request.client_context))
        if request.identity:
            headers.append(("Lambda-Runtime-Cognito-Identity", request.identity))
        # An Invoke without a payload delivers `{}`, as on AWS (and nimbus's Python runtime): runtimes parse
        # the event as JSON (aws-lambda-ric's JSON.parse fails on an empty body).
        self.event = http_response(200, request.payload or b"{}", headers)


class _Extension:
    __slots__ = ("id", "name", "events", "external", "state", "waiting", "queue", "gone")

    def __init__(self, name: str, events: set[str], external: bool) -> None:
        self.id = str(uuid.uuid4())
        self.name = name
        self.events = events
        self.external = external
        self.state = "Registered"  # Registered -> Ready (in next) <-> Running (has an event)
        self.waiting: _Conn | None = None
        self.queue: list[bytes] = []
        self.gone = False  # its connection closed while it waited: it exited


class RuntimeAPI:
    """The Runtime and Extensions API state of one environment."""

    def __init__(self, identity: ApiIdentity, listener: ApiListener, max_response: int,
                 external_extensions: list[str], platform_api: PlatformApi | None = None,
                 telemetry: TelemetryHub | None = None) -> None:
        self.identity = identity
        self.telemetry = telemetry  # the Telemetry / Logs API subscriptions (telemetry.py)
        self.platform_api = platform_api  # serves every path other than the Runtime and Extensions APIs
        self.listener = listener
        self.max_response = max_response
        self.expected = set(external_extensions)  # launched by the launcher: INIT waits for them
        self.state = "Started"  # Started | Running | RuntimeResponseSentState | InitError (RIE's names)
        self.initialized = False
        self.extensions: dict[str, _Extension] = {}
        self._next: _Conn | None = None  # the runtime's connection waiting in `next`
        self._pending: _Invocation | None = None  # dispatched, not yet taken by `next`
        self.current: _Invocation | None = None  # delivered to the runtime, not yet answered
        self._ext_busy = 0  # extensions holding an event they have not finished
        self.shutting_down = False
        self.conns: set[_Conn] = set()

    # ------------------------------------------------------------------ environment side

    def dispatch(self, request: InvokeRequest, deadline_ms: int) -> None:
        """Hand an invocation to the runtime (now if it waits in `next`) and INVOKE events to extensions."""
        inv = _Invocation(request, deadline_ms)
        conn = self._next
        if conn is not None:
            self._next = None
            self.current = inv
            conn.send(inv.event)
        else:
            self._pending = inv
        if self.extensions:
            event = _json({
                "eventType": "INVOKE",
                "deadlineMs": deadline_ms,
                "requestId": request.request_id,
                "invokedFunctionArn": request.invoked_arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": request.trace_id or ""},
            })
            for ext in self.extensions.values():
                if "INVOKE" in ext.events and not ext.gone:
                    self._send_event(ext, event)

    def cancel(self) -> None:
        """The invocation ended without an answer (timeout): forget it."""
        self._pending = None
        self.current = None

    @property
    def extensions_busy(self) -> bool:
        return self._ext_busy > 0

    def wants_shutdown(self) -> bool:
        """Some extension is registered for SHUTDOWN and still there."""
        return any("SHUTDOWN" in e.events and not e.gone for e in self.extensions.values())

    def shutdown(self, reason: str, grace_ms: int = SHUTDOWN_GRACE_MS) -> bool:
        """Send SHUTDOWN to the extensions registered for it; True when there are any (the caller waits for
        `api_extensions_idle`, at most the grace period, then kills)."""
        self.shutting_down = True
        targets = [e for e in self.extensions.values() if "SHUTDOWN" in e.events and not e.gone]
        if not targets:
            return False
        event = _json({"eventType": "SHUTDOWN", "shutdownReason": reason,
                       "deadlineMs": int(time.time() * 1000) + grace_ms})
        for ext in targets:
            self._send_event(ext, event)
        return True

    def close(self) -> None:
        for conn in list(self.conns):
            conn.abort()
        self.conns.clear()
        self._next = None

    # ------------------------------------------------------------------ runtime routes

    def runtime_next(self, conn: _Conn) -> None:
        if self.state == "InitError" or self.current is not None or self._next is not None:
            state = "Running" if self.current is not None else self.state
            conn.send(http_response(403, _error_body("InvalidStateTransition", STATE_MESSAGE.format(state, "Ready"))))
            return
        self.state = "Running"
        if not self.initialized:
            self._check_init()
        inv = self._pending
        if inv is not None:
            self._pending = None
            self.current = inv
            conn.send(inv.event)
        else:
            self._next = conn

    def check_answer(self, request_id: str, target: str) -> bytes | None:
        """The error response for a /response or /error now, or None when it is acceptable."""
        if self.state != "Running":
            return http_response(403, _error_body("InvalidStateTransition", STATE_MESSAGE.format(self.state, target)))
        current = self.current
        if current is None or current.request.request_id != request_id:
            return http_response(400, _error_body("InvalidRequestID", "Invalid request ID"))
        return None

    def answered(self, ok: bool, error_type: str | None, payload: bytes) -> None:
        self.state = "RuntimeResponseSentState"
        self.current = None
        self.listener.api_result(ok, error_type, payload)

    def init_error(self, conn: _Conn, error_type: str, body: bytes) -> None:
        if self.initialized or self.state not in ("Started", "Running"):
            conn.send(http_response(403, _error_body(
                "InvalidStateTransition", STATE_MESSAGE.format(self.state, "InitError"))))
            return
        self.state = "InitError"
        conn.send(http_response(202, ACCEPTED))
        self.listener.api_init_error(error_type, body)

    # ------------------------------------------------------------------ extension routes

    def register(self, conn: _Conn, name: str, body: bytes, accept_feature: str) -> None:
        if not name:
            return conn.send(http_response(403, _error_body(
                "Extension.InvalidExtensionName", "Empty extension name")))
        if self.initialized:
            return conn.send(http_response(403, _error_body(
                "Extension.RegistrationClosed", "Extension registration closed already")))
        if len(self.extensions) >= MAX_EXTENSIONS:
            return conn.send(http_response(403, _error_body(
                "Extension.TooManyExtensions", f"Too many extensions: at most {MAX_EXTENSIONS} can register")))
        if any(e.name == name for e in self.extensions.values()):
            return conn.send(http_response(403, _error_body(
                "Extension.InvalidExtensionName", f"Extension {name} is already registered")))
        try:
            doc = json.loads(body or b"{}")
            events = doc.get("events", []) if isinstance(doc, dict) else None
            if not isinstance(events, list):
                raise ValueError("events must be a list")
        except (ValueError, AttributeError) as e:
            return conn.send(http_response(403, _error_body("InvalidRequestFormat", str(e))))
        external = name in self.expected
        for event in events:
            if event not in ("INVOKE", "SHUTDOWN") or (event == "SHUTDOWN" and not external):
                return conn.send(http_response(403, _error_body(
                    "Extension.InvalidEventType", f"Invalid event type for extension {name}: {event}")))
        ext = _Extension(name, set(events), external)
        self.extensions[ext.id] = ext
        if self.telemetry is not None:
            self.telemetry.emit("platform", "platform.extension", {"name": name, "state": "Ready",
                                                                    "events": list(events)})
        reply: dict[str, str] = {
            "functionName": self.identity.function_name,
            "functionVersion": self.identity.function_version,
            "handler": self.identity.handler,
        }
        if "accountId" in accept_feature:
            reply["accountId"] = self.identity.account_id
        conn.send(http_response(200, _json(reply), [("Lambda-Extension-Identifier", ext.id)]))

    def _extension(self, conn: _Conn, ext_id: str) -> _Extension | None:
        if not ext_id:
            conn.send(http_response(403, _error_body(
                "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header")))
            return None
        ext = self.extensions.get(ext_id)
        if ext is None:
            conn.send(http_response(403, _error_body(
                "Extension.UnknownExtensionIdentifier", "Unknown extension " + ext_id)))
        return ext

    def extension_next(self, conn: _Conn, ext_id: str) -> None:
        ext = self._extension(conn, ext_id)
        if ext is None:
            return
        if ext.queue:  # an event came while it was busy (e.g. SHUTDOWN after INVOKE): it stays busy
            self._deliver(ext, conn, ext.queue.pop(0))
        elif ext.state == "Running":
            ext.state = "Ready"
            ext.waiting = conn
            conn.waiting_extension = ext
            self._ext_busy -= 1
            if self._ext_busy == 0:
                self.listener.api_extensions_idle()
        else:
            ext.state = "Ready"
            ext.waiting = conn
            conn.waiting_extension = ext
        if not self.initialized:
            self._check_init()

    def subscribe(self, conn: _Conn, ext_id: str, body: bytes, kind: str) -> None:
        """`PUT /2022-07-01/telemetry` (kind "telemetry") or `PUT /2020-08-15/logs` ("logs")."""
        ext = self._extension(conn, ext_id)
        if ext is None:
            return
        if self.telemetry is None:
            return conn.send(http_response(500, _error_body(
                "Telemetry.Unavailable", "The Telemetry API is not available in this environment")))
        status, answer = self.telemetry.subscribe(ext.id, ext.name, body, kind)
        conn.send(http_response(status, answer, content_type=b"application/json" if status != 200
                                else b"text/plain"))
        return None

    def extension_error(self, conn: _Conn, ext_id: str, error_type: str, kind: str) -> None:
        ext = self._extension(conn, ext_id)
        if ext is None:
            return
        if not error_type:
            conn.send(http_response(400, _error_body(
                "Extension.MissingHeader", "Missing Lambda-Extension-Function-Error-Type header")))
            return
        conn.send(http_response(202, ACCEPTED))
        ext.gone = True
        if kind == "init" and not self.initialized:
            self.state = "InitError"
            message = f"Extension {ext.name} failed to initialize: {error_type}"
            self.listener.api_init_error("Extension.InitError", _error_body("Extension.InitError", message))

    def _send_event(self, ext: _Extension, event: bytes) -> None:
        if ext.state != "Running":
            ext.state = "Running"
            self._ext_busy += 1
        conn = ext.waiting
        if conn is not None:
            ext.waiting = None
            conn.waiting_extension = None
            self._deliver(ext, conn, event)
        else:
            ext.queue.append(event)

    def _deliver(self, ext: _Extension, conn: _Conn, event: bytes) -> None:
        if ext.state != "Running":
            ext.state = "Running"
            self._ext_busy += 1
        conn.send(http_response(200, event, [("Lambda-Extension-Event-Identifier", str(uuid.uuid4()))]))

    def extension_exited(self, name: str) -> bool:
        """The process of the external extension `name` ended. True when that fails INIT (AWS reports
        `Extension.Crash`, even for exit code 0); after INIT the extension just stops getting events."""
        if not self.initialized:
            if self.state == "InitError":
                return False
            self.state = "InitError"
            return True
        for ext in list(self.extensions.values()):
            if ext.name == name and ext.state != "Exited":
                self.extension_gone(ext)
        return False

    def extension_gone(self, ext: _Extension) -> None:
        """Its connection closed while it waited in `next`, or its process ended: the extension exited."""
        if ext.state == "Exited":
            return
        ext.gone = True
        ext.waiting = None
        if ext.state == "Running":
            self._ext_busy -= 1
            if self._ext_busy == 0:
                self.listener.api_extensions_idle()
        ext.state = "Exited"
        if not self.initialized:
            self._check_init()

    def _check_init(self) -> None:
        if self.state != "Running":
            return
        names = {e.name for e in self.extensions.values()}
        if not self.expected <= names:
            return
        if any(e.state == "Registered" and not e.gone for e in self.extensions.values()):
            return
        self.initialized = True
        self.listener.api_ready()


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection from inside the sandbox (keep-alive, requests answered in order)."""

    def __init__(self, api: RuntimeAPI) -> None:
        self.api = api
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.in_body = False
        self.route: Callable[[], None] | None = None
        self.stream_request_id = ""
        self.streaming = False
        self.rejected: bytes | None = None
        self.waiting_extension: _Extension | None = None
        self.platform_task: asyncio.Task[None] | None = None
        self.partial = False  # a request has begun and is not complete yet
        self.head_bytes = 0
        self.sock: Any = None
        self.answered = False  # the current request has had its answer written
        self.close_after_answer = False  # `Connection: close` (or HTTP/1.0) on a request answered later

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.api.conns.add(self)
        self.sock = transport.get_extra_info("socket")

    def connection_lost(self, exc: Exception | None) -> None:
        api = self.api
        api.conns.discard(self)
        if api._next is self:
            api._next = None
        ext = self.waiting_extension
        if ext is not None:
            self.waiting_extension = None
            api.extension_gone(ext)
        if self.streaming:
            self.streaming = False
            api.answered(False, "Runtime.TruncatedResponse", _error_body(
                "Runtime.TruncatedResponse", "Response stream truncated: the runtime closed the connection"))
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            # The parser buffers a request's head until it is complete: bound it (the function's code is
            # not trusted with the server's memory). Counted per read, so a head may exceed it by one read.
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self.send(http_response(400, _error_body("InvalidRequestFormat", "Request head too large")))
                self.close()
                return
        try:
            self.parser.feed_data(data)
            if self.partial and self.sock is not None:
                # Half a request (its head, say): acknowledge now. Clients that write head and body in two
                # sends without TCP_NODELAY (common in hand-written bootstraps) otherwise wait for our
                # delayed ACK, 40 ms per request (DESIGN.md's traps).
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except httptools.HttpParserError:
            self.send(http_response(400, _error_body("InvalidRequestFormat", "Malformed HTTP request")))
            self.close()
        except httptools.HttpParserUpgrade:
            self.close()

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
        self.answered = True
        if self.close_after_answer:
            self.close_after_answer = False
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.partial = True
        self.answered = False
        self.url = b""
        self.headers = {}
        self.body = []
        self.size = 0
        self.in_body = False
        self.route = None
        self.rejected = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.in_body = True
        self.head_bytes = 0
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        method = self.parser.get_method()
        self.route = self._route(method, path)

    def on_body(self, body: bytes) -> None:
        if self.streaming:
            self._stream_chunk(body)
            return
        self.size += len(body)
        if self.route is not None and self.size <= self.api.max_response:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.partial = False
        self.in_body = False
        route = self.route
        if self.rejected is not None:
            self.send(self.rejected)
        elif route is not None:
            route()
        task = self.platform_task
        if not self.parser.should_keep_alive() and (task is None or task.done()):
            # (a platform request answers first, then closes: _run_platform). A long poll (`next`) is
            # answered later: clients that send `Connection: close`, as urllib does, still get their answer.
            if self.answered:
                self.close()
            else:
                self.close_after_answer = True

    # routing
    def _route(self, method: bytes, path: str) -> Callable[[], None] | None:
        api = self.api
        if path.startswith(RUNTIME_PREFIX):
            rest = path[len(RUNTIME_PREFIX):]
            if rest == "invocation/next" and method == b"GET":
                return lambda: api.runtime_next(self)
            if rest.startswith("invocation/") and method == b"POST":
                request_id, _, action = rest[len("invocation/"):].rpartition("/")
                if action == "response":
                    return self._response_route(request_id)
                if action == "error":
                    return lambda: self._error(request_id)
            if rest == "init/error" and method == b"POST":
                return lambda: api.init_error(self, self._header(b"lambda-runtime-function-error-type")
                                              or "Runtime.Unknown", self._body())
        elif path.rstrip("/") in (TELEMETRY_PATH, LOGS_PATH) and method == b"PUT":
            kind = "telemetry" if path.startswith(TELEMETRY_PATH) else "logs"
            return lambda: api.subscribe(self, self._header(b"lambda-extension-identifier"), self._body(), kind)
        elif path == "/2018-06-01/ping" and method == b"GET":
            return lambda: self.send(http_response(200, b"pong", content_type=b"text/plain"))
        elif path.startswith(EXTENSION_PREFIX):
            rest = path[len(EXTENSION_PREFIX):]
            ext_id = self._header(b"lambda-extension-identifier")
            if rest == "register" and method == b"POST":
                return lambda: api.register(self, self._header(b"lambda-extension-name"), self._body(),
                                            self._header(b"lambda-extension-accept-feature"))
            if rest == "event/next" and method == b"GET":
                return lambda: api.extension_next(self, ext_id)
            if rest in ("init/error", "exit/error") and method == b"POST":
                kind = rest.split("/")[0]
                return lambda: api.extension_error(
                    self, ext_id, self._header(b"lambda-extension-function-error-type"), kind)
        return self._platform_route(method, path)

    def _header(self, name: bytes) -> str:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else ""

    def _body(self) -> bytes:
        body = self.body
        return body[0] if len(body) == 1 else b"".join(body)

    def _response_route(self, request_id: str) -> Callable[[], None] | None:
        api = self.api
        mode = self._header(b"lambda-runtime-function-response-mode")
        if mode and mode != "streaming":
            self.rejected = http_response(
                400, _error_body("InvalidFunctionResponseMode", "Invalid function response mode"))
            if api.check_answer(request_id, "InvocationResponse") is None:
                api.answered(False, "Runtime.InvalidResponseModeHeader", _error_body(
                    "Runtime.InvalidResponseModeHeader", f"Invalid response mode header value: {mode}"))
            return None
        problem = api.check_answer(request_id, "InvocationResponse")
        if problem is not None:
            self.rejected = problem
            return None
        current = api.current
        on_chunk = current.request.on_chunk if current is not None else None
        if mode == "streaming" and on_chunk is not None:
            self.streaming = True
            self.stream_request_id = request_id
            return self._stream_done
        return lambda: self._buffered_response(request_id)

    def _buffered_response(self, request_id: str) -> None:
        api = self.api
        if api.check_answer(request_id, "InvocationResponse") is not None:  # answered meanwhile (timeout)
            return self.send(http_response(403, _error_body("InvalidStateTransition", STATE_MESSAGE.format(
                api.state, "InvocationResponse"))))
        if self.size > api.max_response:
            self.send(http_response(413, _error_body(
                "RequestEntityTooLarge", f"Exceeded maximum allowed payload size ({api.max_response} bytes).")))
            api.answered(False, "Function.ResponseSizeTooLarge", _error_body(
                "Function.ResponseSizeTooLarge",
                f"Response payload size exceeded maximum allowed payload size ({api.max_response} bytes)."))
            return None
        body = self._body()
        trailer_error = self._trailer_error()
        self.send(http_response(202, ACCEPTED))
        if trailer_error is not None:
            api.answered(False, trailer_error[0], trailer_error[1])
        else:
            api.answered(True, None, body)
        return None

    def _stream_chunk(self, data: bytes) -> None:
        current = self.api.current
        if current is not None and current.request.request_id == self.stream_request_id:
            on_chunk = current.request.on_chunk
            if on_chunk is not None and data:
                on_chunk(data)

    def _stream_done(self) -> None:
        self.streaming = False
        api = self.api
        if api.current is None or api.current.request.request_id != self.stream_request_id:
            return self.send(http_response(403, _error_body("InvalidStateTransition", STATE_MESSAGE.format(
                api.state, "InvocationResponse"))))
        trailer_error = self._trailer_error()
        self.send(http_response(202, ACCEPTED))
        if trailer_error is not None:
            api.answered(False, trailer_error[0], trailer_error[1])
        else:
            api.answered(True, None, b"")
        return None

    def _trailer_error(self) -> tuple[str, bytes] | None:
        """A mid-stream error the runtime reported in the trailers (type, error document)."""
        error_type = self._header(b"lambda-runtime-function-error-type")
        if not error_type or self.headers is None:
            return None
        encoded = self.headers.get(b"lambda-runtime-function-error-body", b"")
        try:
            body = base64.b64decode(encoded, validate=False) if encoded else b""
        except (binascii.Error, ValueError):
            body = b""
        return error_type, body or _error_body(error_type, "")

    def _error(self, request_id: str) -> None:
        api = self.api
        problem = api.check_answer(request_id, "InvocationErrorResponse")
        if problem is not None:
            return self.send(problem)
        self.send(http_response(202, ACCEPTED))
        error_type = self._header(b"lambda-runtime-function-error-type") or "Runtime.Unknown"
        api.answered(False, error_type, self._body())
        return None

    # the platform app (any other path)
    def _platform_route(self, method: bytes, path: str) -> Callable[[], None]:
        return lambda: self._start_platform(method, path)

    def _start_platform(self, method: bytes, path: str) -> None:
        app = None if self.api.platform_api is None else self.api.platform_api.app
        if app is None:
            self.send(http_response(404, _json({"Type": "User", "message": f"Unknown operation: "
                                                f"{method.decode('latin-1')} {path}"}),
                                    [("x-amzn-ErrorType", "UnknownOperationException")]))
            return
        assert self.transport is not None
        self.transport.pause_reading()  # one request at a time on this connection
        raw_path, _, query = self.url.partition(b"?")
        identity = self.api.identity
        scope: Scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method.decode("latin-1"), "scheme": "http", "path": path, "raw_path": raw_path,
            "query_string": query, "root_path": "",
            "headers": [(k, v) for k, v in self.headers.items()],
            "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 9001),
            "nimbus.environment": {
                "function_name": identity.function_name, "function_version": identity.function_version,
                "function_arn": identity.function_arn, "environment_id": identity.environment_id,
            },
        }
        body = self._body()
        keep_alive = self.parser.should_keep_alive()
        self.platform_task = asyncio.get_running_loop().create_task(self._run_platform(app, scope, body, keep_alive))

    async def _run_platform(self, app: ASGIApp, scope: Scope, body: bytes, keep_alive: bool) -> None:
        sent = False
        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # nothing more: wait like an idle client until cancelled
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for k, v in message.get("headers", []):
                    if k.lower() not in (b"content-length", b"connection", b"transfer-encoding"):
                        headers.append((k.decode("latin-1"), v.decode("latin-1")))
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        try:
            await app(scope, receive, send)
        except Exception:
            log.exception("platform app failed on %s %s", scope["method"], scope["path"])
            status, headers, chunks = 500, [], [_json({"Type": "Service", "message": "Internal error"})]
        data = b"".join(chunks)
        content_type = b"application/json"
        for k, v in headers:
            if k.lower() == "content-type":
                content_type = v.encode("latin-1")
        headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
        self.send(http_response(status, data, headers, content_type=content_type))
        if not keep_alive:
            self.close()
        elif self.transport is not None:
            self.transport.resume_reading()


async def serve(api: RuntimeAPI, sock: Any) -> asyncio.Server:
    """Serve `api` on the listening socket `sock` (from the sandbox) on the running loop."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Conn(api), sock=sock)


# --------------------------------------------------------------------------------------------------
# Platform-only endpoints: managed Python environments have no Runtime API (their runtime speaks nimbus's
# framed protocol), but their 127.0.0.1:9001 serves the platform app like every environment's does.


class _NoRuntime:
    """The ApiListener of a platform-only endpoint: there is no runtime on it to hear from."""

    def api_ready(self) -> None:
        pass

    def api_init_error(self, error_type: str, payload: bytes) -> None:
        pass

    def api_result(self, ok: bool, error_type: str | None, payload: bytes) -> None:
        pass

    def api_extensions_idle(self) -> None:
        pass


class _PlatformConn(_Conn):
    """A connection to a platform-only endpoint: every path goes to the platform app."""

    def _route(self, method: bytes, path: str) -> Callable[[], None] | None:
        return self._platform_route(method, path)


def platform_endpoint(identity: ApiIdentity, max_body: int, platform_api: PlatformApi | None) -> RuntimeAPI:
    """The state of a platform-only endpoint (its connections, the identity its scope carries); requests
    with bodies over `max_body` bytes are cut there."""
    return RuntimeAPI(identity, _NoRuntime(), max_body, [], platform_api)


async def serve_platform(api: RuntimeAPI, sock: Any) -> asyncio.Server:
    """Serve only the platform app (any path) for `api` on the listening socket `sock` from the sandbox."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _PlatformConn(api), sock=sock)
