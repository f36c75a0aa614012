"""The Telemetry API (`PUT /2022-07-01/telemetry`) and the older Logs API (`PUT /2020-08-15/logs`) of one
execution environment: extensions subscribe a listener inside the sandbox and get the environment's platform
events, function output and extension output in batches, as AWS's Lambda does.

- Subscriptions are checked as AWS documents them: `schemaVersion` (2022-07-01, 2022-12-13, 2025-01-29),
  `types` (platform / function / extension), `buffering` (maxItems 1,000-10,000, default 10,000; maxBytes
  262,144-1,048,576, default 262,144; timeoutMs 25-30,000, default 1,000), `destination` (HTTP with
  `http://sandbox.localdomain:PORT/path`, or TCP with a port; port 9001 is reserved). A bad body is answered
  400 `{"errorType": "ValidationError", "errorMessage": ...}`; an extension that subscribed through one API
  cannot subscribe through the other.
- Delivery: HTTP POSTs of JSON arrays (keep-alive), or one JSON document a line over TCP, sent when a buffer
  reaches maxItems/maxBytes or its oldest record is timeoutMs old. The host reaches the listener inside the
  environment's own network namespace: a short-lived thread `setns(CLONE_NEWNET)`s into it, makes and
  connects the socket there, and hands it to the event loop (a thread's namespace is its own, so nothing else
  moves). `sandbox.localdomain` is 127.0.0.1 in every sandbox's /etc/hosts.
- Events recorded before an extension subscribes (INIT's `platform.initStart`, the runtime's first lines) are
  kept (bounded) and delivered to it when it subscribes, as Lambda buffers INIT's telemetry for subscribers.

The environment (apienvironment.py) produces the records (`emit`); this module owns subscriptions, buffers and
delivery. Nothing here blocks the environment: a slow or absent listener loses records
(`platform.logsDropped`), never an invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import fcntl
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

TELEMETRY_PATH = "/2022-07-01/telemetry"
LOGS_PATH = "/2020-08-15/logs"
SCHEMA_VERSIONS = ("2022-07-01", "2022-12-13", "2025-01-29")
TYPES = ("platform", "function", "extension")
MAX_ITEMS = (1000, 10000, 10000)  # (min, max, default)
MAX_BYTES = (262144, 1048576, 262144)
TIMEOUT_MS = (25, 30000, 1000)
RESERVED_PORT = 9001
LOCAL_HOSTS = ("sandbox.localdomain", "sandbox", "localhost", "127.0.0.1")
BACKLOG_ITEMS = 1000  # records kept for extensions that have not subscribed yet (INIT's)
CONNECT_TIMEOUT = 1.0
SEND_TIMEOUT = 5.0
SIOCGSKNS = 0x894C  # ioctl: the network namespace of a socket, as an fd
CLONE_NEWNET = 0x40000000
# Logs API (2020-08-15) names for the platform records it also had; the others are Telemetry API only.
LOGS_API_TYPES = {"platform.start": "platform.start", "platform.runtimeDone": "platform.end",
                  "platform.report": "platform.report", "platform.extension": "platform.extension",
                  "platform.telemetrySubscription": "platform.logsSubscription",
                  "platform.logsDropped": "platform.logsDropped"}


class SubscriptionError(Exception):
    """A subscription body AWS would refuse (answered 400 ValidationError)."""


def now_iso(ms: float | None = None) -> str:
    """AWS's event time: ISO 8601 UTC with milliseconds (`2022-10-12T00:03:50.000Z`)."""
    t = datetime.datetime.fromtimestamp((ms if ms is not None else _now_ms()) / 1000, datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _now_ms() -> float:
    return time.time() * 1000


@dataclass(frozen=True, slots=True)
class Subscription:
    """One extension's checked subscription."""

    api: str  # "telemetry" | "logs"
    types: frozenset[str]
    max_items: int
    max_bytes: int
    timeout_ms: int
    protocol: str  # "HTTP" | "TCP"
    host: str
    port: int
    path: str
    uri: str


def _bounded(buffering: dict[str, Any], key: str, limits: tuple[int, int, int]) -> int:
    value = buffering.get(key, limits[2])
    if isinstance(value, bool) or not isinstance(value, int):
        raise SubscriptionError(f"buffering.{key} must be an integer")
    if not limits[0] <= value <= limits[1]:
        raise SubscriptionError(f"buffering.{key} must be between {limits[0]} and {limits[1]}, got {value}")
    return value


def parse_subscription(body: bytes, api: str) -> Subscription:
    """The subscription a `PUT /telemetry` (api "telemetry") or `PUT /logs` ("logs") body asks for."""
    try:
        doc = json.loads(body or b"")
    except ValueError as e:
        raise SubscriptionError(f"Invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise SubscriptionError("the subscription must be a JSON object")
    schema = doc.get("schemaVersion")
    if api == "telemetry" and schema is not None and schema not in SCHEMA_VERSIONS:
        raise SubscriptionError(f"schemaVersion must be one of {', '.join(SCHEMA_VERSIONS)}, got {schema!r}")
    types = doc.get("types")
    if not isinstance(types, list) or not types or any(t not in TYPES for t in types):
        raise SubscriptionError(f"types must be a non-empty list of {', '.join(TYPES)}")
    buffering = doc.get("buffering", {})
    if not isinstance(buffering, dict):
        raise SubscriptionError("buffering must be an object")
    max_items = _bounded(buffering, "maxItems", MAX_ITEMS)
    max_bytes = _bounded(buffering, "maxBytes", MAX_BYTES)
    timeout_ms = _bounded(buffering, "timeoutMs", TIMEOUT_MS)
    dest = doc.get("destination")
    if not isinstance(dest, dict):
        raise SubscriptionError("destination is required")
    protocol = dest.get("protocol")
    uri = dest.get("URI", "")
    if protocol == "HTTP":
        parts = urlsplit(uri) if isinstance(uri, str) else None
        if parts is None or parts.scheme != "http" or not parts.hostname:
            raise SubscriptionError("destination.URI must be http://sandbox.localdomain:PORT/PATH")
        try:
            port = parts.port or 80
        except ValueError:
            raise SubscriptionError("destination.URI has an invalid port") from None
        host, path = parts.hostname, parts.path or "/"
        if parts.query:
            path += "?" + parts.query
    elif protocol == "TCP":
        raw_port = dest.get("port")
        host, path = "sandbox.localdomain", ""
        if raw_port is None and isinstance(uri, str) and uri:  # "tcp://sandbox.localdomain:PORT" / "host:PORT"
            parts = urlsplit(uri if "://" in uri else "tcp://" + uri)
            host, raw_port = parts.hostname or host, parts.port
        if isinstance(raw_port, bool) or not isinstance(raw_port, int):
            raise SubscriptionError("destination.port must be an integer for TCP")
        port = raw_port
    else:
        raise SubscriptionError("destination.protocol must be HTTP or TCP")
    if not 1 <= port <= 65535:
        raise SubscriptionError(f"destination port {port} is out of range")
    if port == RESERVED_PORT:
        raise SubscriptionError(f"destination port {RESERVED_PORT} is reserved")
    return Subscription(api, frozenset(types), max_items, max_bytes, timeout_ms, protocol, host, port, path,
                        str(uri))


def socket_netns(sock: socket.socket) -> int:
    """An fd of the network namespace `sock` was made in (the sandbox's), or -1 when that cannot be had."""
    try:
        return fcntl.ioctl(sock.fileno(), SIOCGSKNS)
    except OSError as e:
        log.debug("no network namespace of the sandbox's socket: %s", e)
        return -1


def _connect_in(netns_fd: int, host: str, port: int) -> socket.socket:
    """A TCP socket connected to host:port inside the namespace `netns_fd` (-1: the caller's own)."""
    result: list[socket.socket | BaseException] = []

    def run() -> None:
        try:
            if netns_fd >= 0:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(netns_fd, CLONE_NEWNET) != 0:  # this thread only
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns: {os.strerror(err)}")
            addr = "127.0.0.1" if host in LOCAL_HOSTS else host
            sock = socket.create_connection((addr, port), timeout=CONNECT_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            result.append(sock)
        except BaseException as e:  # handed to the caller
            result.append(e)

    thread = threading.Thread(target=run, name="nimbus-telemetry-connect", daemon=True)
    thread.start()
    thread.join()
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class _Subscriber:
    """One subscription's buffer and its delivery task."""

    def __init__(self, hub: TelemetryHub, name: str, sub: Subscription) -> None:
        self.hub = hub
        self.name = name
        self.sub = sub
        self.items: list[bytes] = []
        self.size = 0
        self.dropped = 0
        self.dropped_bytes = 0
        self.wake = asyncio.Event()
        self.flush_now = False
        self.timer: asyncio.TimerHandle | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        self.task = asyncio.get_running_loop().create_task(self._deliver_loop())

    def add(self, item: bytes) -> None:
        # AWS: a batch may reach 2 x maxBytes; beyond that records are dropped (and counted) until delivery
        # catches up.
        if self.size + len(item) > 2 * self.sub.max_bytes:
            self.dropped += 1
            self.dropped_bytes += len(item)
            return
        self.items.append(item)
        self.size += len(item)
        self.idle.clear()
        if len(self.items) >= self.sub.max_items or self.size >= self.sub.max_bytes:
            self.wake.set()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.sub.timeout_ms / 1000, self.wake.set)

    def flush(self) -> None:
        if self.items:
            self.wake.set()

    async def _deliver_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if self.dropped:
                record = {"reason": "Consumer seems to have fallen behind as it has not acknowledged receipt of "
                          "logs.", "droppedRecords": self.dropped, "droppedBytes": self.dropped_bytes}
                self.dropped = self.dropped_bytes = 0
                item = self.hub.encode("platform.logsDropped", record, None, self.sub.api)
                if item is not None:
                    self.items.append(item)
            batch, self.items, self.size = self.items, [], 0
            while batch:
                chunk = batch[: self.sub.max_items]
                batch = batch[self.sub.max_items:]
                await self._send(chunk)
            if not self.items:
                self.idle.set()

    async def _send(self, items: list[bytes]) -> None:
        for attempt in (1, 2):  # a kept-alive connection may have been closed by the listener: reconnect once
            try:
                await asyncio.wait_for(self._send_once(items), SEND_TIMEOUT)
                return
            except Exception as e:  # whatever the listener did (bad HTTP, closed, slow): never the loop's end
                self._close()
                if attempt == 2:
                    log.info("telemetry for %s of environment %s: %d records not delivered (%s)",
                             self.name, self.hub.env_id, len(items), e)

    async def _send_once(self, items: list[bytes]) -> None:
        if self.writer is None or self.writer.is_closing():
            sock = await asyncio.to_thread(_connect_in, self.hub.netns_fd, self.sub.host, self.sub.port)
            self.reader, self.writer = await asyncio.open_connection(sock=sock)
        assert self.reader is not None and self.writer is not None
        if self.sub.protocol == "TCP":
            self.writer.write(b"".join(item + b"\n" for item in items))
            await self.writer.drain()
            return
        body = b"[" + b",".join(items) + b"]"
        head = (f"POST {self.sub.path} HTTP/1.1\r\nHost: {self.sub.host}:{self.sub.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode("latin-1")
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        length = 0
        close = status_line.startswith(b"HTTP/1.0")
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "connection":
                close = value.strip().lower() == "close"
        if length:
            await self.reader.readexactly(length)
        if close:  # (and listeners that answer without a length but close: reconnect next time)
            self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def drain(self, timeout: float) -> None:
        self.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.task.cancel()
        self._close()


class TelemetryHub:
    """The telemetry of one environment: its subscribers, and records kept for those to come."""

    def __init__(self, env_id: str, netns_fd: int = -1) -> None:
        self.env_id = env_id
        self.netns_fd = netns_fd  # the sandbox's network namespace (-1: the host's, e.g. the process backend)
        self.subscribers: dict[str, _Subscriber] = {}  # by extension id
        self.apis: dict[str, str] = {}  # extension id -> the API it subscribed through
        self.backlog: list[tuple[str, str, object, float]] = []  # (category, type, record, time ms)
        self.keep_backlog = True
        self.closed = False

    @property
    def active(self) -> bool:
        """Records are wanted: someone subscribed, or INIT is still running (records kept for subscribers)."""
        return bool(self.subscribers) or (self.keep_backlog and not self.closed)

    def set_netns(self, fd: int) -> None:
        if self.netns_fd >= 0 and fd != self.netns_fd:
            os.close(self.netns_fd)
        self.netns_fd = fd

    # -------------------------------------------------------------------------------- subscriptions

    def subscribe(self, ext_id: str, ext_name: str, body: bytes, api: str) -> tuple[int, bytes]:
        """Handle a subscription request; (status, body) of the answer."""
        previous = self.apis.get(ext_id)
        if previous is not None and previous != api:
            return 400, _error("ValidationError", f"Extension {ext_name} already subscribed through the "
                               f"{previous} API: it cannot subscribe through the {api} API as well")
        try:
            sub = parse_subscription(body, api)
        except SubscriptionError as e:
            return 400, _error("ValidationError", str(e))
        old = self.subscribers.pop(ext_id, None)
        if old is not None:
            old.close()
        subscriber = _Subscriber(self, ext_name, sub)
        self.subscribers[ext_id] = subscriber
        self.apis[ext_id] = api
        for category, type_, record, at in self.backlog:
            self._offer(subscriber, category, type_, record, at)
        self.emit("platform", "platform.telemetrySubscription",
                  {"name": ext_name, "state": "Subscribed", "types": sorted(sub.types)})
        return 200, b"OK"

    # -------------------------------------------------------------------------------- records

    def emit(self, category: str, type_: str, record: object, at_ms: float | None = None) -> None:
        """Record one event (`category` platform/function/extension) for every subscriber that wants it."""
        if self.closed:
            return
        at = at_ms if at_ms is not None else _now_ms()
        if self.keep_backlog and len(self.backlog) < BACKLOG_ITEMS:
            self.backlog.append((category, type_, record, at))
        for subscriber in self.subscribers.values():
            self._offer(subscriber, category, type_, record, at)

    def lines(self, category: str, lines: list[tuple[int, str]]) -> None:
        """Log lines (ms timestamp, text): string records, or objects for lines that are JSON objects."""
        if self.closed or (not self.subscribers and not self.keep_backlog):
            return
        for at, text in lines:
            record: object = text
            if text[:1] == "{":
                with contextlib.suppress(ValueError):
                    parsed = json.loads(text)
                    if isinstance(parsed, dict):
                        record = parsed
            self.emit(category, category, record, at)

    def _offer(self, subscriber: _Subscriber, category: str, type_: str, record: object, at: float) -> None:
        if category not in subscriber.sub.types:
            return
        item = self.encode(type_, record, at, subscriber.sub.api)
        if item is not None:
            subscriber.add(item)

    @staticmethod
    def encode(type_: str, record: object, at: float | None, api: str) -> bytes | None:
        """One event as the subscriber's API writes it (None: the Logs API has no such event)."""
        if api == "logs" and type_.startswith("platform."):
            mapped = LOGS_API_TYPES.get(type_)
            if mapped is None:
                return None
            if isinstance(record, dict):
                keep = {"platform.start": ("requestId", "version"), "platform.end": ("requestId",),
                        "platform.report": ("requestId", "metrics")}.get(mapped)
                if keep is not None:
                    record = {k: v for k, v in record.items() if k in keep}
            type_ = mapped
        return json.dumps({"time": now_iso(at), "type": type_, "record": record},
                          separators=(",", ":")).encode()

    def end_init(self) -> None:
        """INIT is over: later records go only to the subscribers there are."""
        self.keep_backlog = False
        self.backlog = []

    def flush(self) -> None:
        for subscriber in self.subscribers.values():
            subscriber.flush()

    async def drain(self, timeout: float) -> None:
        """Deliver what is buffered now (before the environment ends), waiting at most `timeout` seconds."""
        if self.subscribers:
            await asyncio.gather(*(s.drain(timeout) for s in self.subscribers.values()))

    def close(self) -> None:
        self.closed = True
        for subscriber in self.subscribers.values():
            subscriber.close()
        self.subscribers.clear()
        self.backlog = []
        if self.netns_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.netns_fd)
            self.netns_fd = -1


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()

