"""The Telemetry / Logs API subscriptions and their delivery (sandbox/telemetry.py), with real listeners on
the host's loopback (the namespace-joining path is driven end to end in tests/e2e/test_telemetry.py)."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from nimbus.sandbox.telemetry import SubscriptionError, TelemetryHub, parse_subscription, socket_netns


def body(**overrides: Any) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": "2022-12-13", "types": ["platform", "function"],
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:8080/lambda_logs"},
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_defaults_and_destination() -> None:
    sub = parse_subscription(body(), "telemetry")
    assert (sub.max_items, sub.max_bytes, sub.timeout_ms) == (10000, 262144, 1000)  # AWS's defaults
    assert (sub.protocol, sub.host, sub.port, sub.path) == ("HTTP", "sandbox.localdomain", 8080, "/lambda_logs")
    assert sub.types == {"platform", "function"}
    tcp = parse_subscription(body(destination={"protocol": "TCP", "port": 4243}), "telemetry")
    assert (tcp.protocol, tcp.port) == ("TCP", 4243)


@pytest.mark.parametrize(("overrides", "mentions"), [
    ({"buffering": {"maxItems": 999}}, "maxItems"),
    ({"buffering": {"maxItems": 10001}}, "maxItems"),
    ({"buffering": {"maxBytes": 262143}}, "maxBytes"),
    ({"buffering": {"maxBytes": 1048577}}, "maxBytes"),
    ({"buffering": {"timeoutMs": 24}}, "timeoutMs"),
    ({"buffering": {"timeoutMs": 30001}}, "timeoutMs"),
    ({"buffering": {"timeoutMs": "100"}}, "timeoutMs"),
    ({"types": []}, "types"),
    ({"types": ["platform", "logs"]}, "types"),
    ({"schemaVersion": "2021-01-01"}, "schemaVersion"),
    ({"destination": {"protocol": "UDP", "URI": "udp://sandbox.localdomain:1"}}, "protocol"),
    ({"destination": {"protocol": "HTTP", "URI": "sandbox.localdomain:8080"}}, "URI"),
    ({"destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:9001/"}}, "reserved"),
    ({"destination": None}, "destination"),
])
def test_aws_refuses_these(overrides: dict[str, Any], mentions: str) -> None:
    with pytest.raises(SubscriptionError, match=mentions):
        parse_subscription(body(**overrides), "telemetry")


def test_bounds_are_inclusive() -> None:
    sub = parse_subscription(body(buffering={"maxItems": 1000, "maxBytes": 1048576, "timeoutMs": 25}), "telemetry")
    assert (sub.max_items, sub.max_bytes, sub.timeout_ms) == (1000, 1048576, 25)


async def test_bad_json_and_mixing_apis_are_validation_errors() -> None:
    hub = TelemetryHub("env")
    status, answer = hub.subscribe("ext-1", "ext", b"{not json", "telemetry")
    assert status == 400 and json.loads(answer)["errorType"] == "ValidationError"
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        uri = f"http://sandbox.localdomain:{port}/"
        assert hub.subscribe("ext-1", "ext", body(destination={"protocol": "HTTP", "URI": uri}), "logs")[0] == 200
        status, answer = hub.subscribe("ext-1", "ext", body(destination={"protocol": "HTTP", "URI": uri}),
                                       "telemetry")
        assert status == 400 and "Logs API" not in answer.decode() and "logs API" in answer.decode()
    finally:
        await closed(hub, server)


async def closed(hub: TelemetryHub, server: asyncio.Server) -> None:
    hub.close()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.01)  # (the connections' transports close on the next turns of the loop)


class HttpListener:
    """A listener written like AWS's samples: answers each POST 200 and keeps the batches."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.got = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            self.batches.append(json.loads(await reader.readexactly(length)))
            self.got.set()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()


async def test_http_delivery_batches_and_backlog() -> None:
    listener = HttpListener()
    server = await asyncio.start_server(listener.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hub = TelemetryHub("env")
    try:
        hub.emit("platform", "platform.initStart", {"initializationType": "on-demand", "phase": "init"})
        hub.lines("function", [(1_700_000_000_000, "init line")])
        sub = body(buffering={"timeoutMs": 25},
                   destination={"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{port}/t"})
        assert hub.subscribe("ext-1", "ext", sub, "telemetry") == (200, b"OK")
        hub.end_init()
        hub.emit("platform", "platform.start", {"requestId": "r1", "version": "$LATEST"})
        hub.lines("function", [(1_700_000_000_001, '{"level": "INFO", "message": "hi"}')])
        hub.emit("extension", "extension", "not subscribed to")
        events: list[dict[str, Any]] = []
        while len(events) < 5:
            await asyncio.wait_for(listener.got.wait(), 5)
            listener.got.clear()
            events = [e for batch in listener.batches for e in batch]
        assert [e["type"] for e in events] == ["platform.initStart", "function", "platform.telemetrySubscription",
                                               "platform.start", "function"]
        assert events[1] == {"time": "2023-11-14T22:13:20.000Z", "type": "function", "record": "init line"}
        assert events[4]["record"] == {"level": "INFO", "message": "hi"}
        assert events[2]["record"] == {"name": "ext", "state": "Subscribed", "types": ["function", "platform"]}
    finally:
        await closed(hub, server)


async def test_logs_api_shapes_over_tcp() -> None:
    lines: list[bytes] = []
    got = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            lines.append(line)
            got.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hub = TelemetryHub("env")
    try:
        sub = json.dumps({"types": ["platform", "function"], "buffering": {"timeoutMs": 25},
                          "destination": {"protocol": "TCP", "port": port}}).encode()
        assert hub.subscribe("ext-1", "ext", sub, "logs")[0] == 200
        hub.end_init()
        hub.emit("platform", "platform.initStart", {"phase": "init"})  # no such event in the Logs API
        hub.emit("platform", "platform.start", {"requestId": "r1", "version": "$LATEST", "tracing": {}})
        hub.emit("platform", "platform.runtimeDone", {"requestId": "r1", "status": "success", "metrics": {}})
        hub.emit("platform", "platform.report", {"requestId": "r1", "status": "success",
                                                 "metrics": {"durationMs": 1.5}})
        while len(lines) < 4:
            await asyncio.wait_for(got.wait(), 5)
            got.clear()
        events = [json.loads(line) for line in lines]
        assert [e["type"] for e in events] == ["platform.logsSubscription", "platform.start", "platform.end",
                                               "platform.report"]
        assert events[1]["record"] == {"requestId": "r1", "version": "$LATEST"}
        assert events[2]["record"] == {"requestId": "r1"}
        assert events[3]["record"] == {"requestId": "r1", "metrics": {"durationMs": 1.5}}
    finally:
        await closed(hub, server)


async def test_an_absent_listener_costs_nothing_but_its_records() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there
    hub = TelemetryHub("env")
    try:
        sub = body(buffering={"timeoutMs": 25},
                   destination={"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{port}/"})
        assert hub.subscribe("ext-1", "ext", sub, "telemetry")[0] == 200
        hub.emit("platform", "platform.start", {"requestId": "r1"})
        await hub.drain(2.0)
        assert not hub.subscribers["ext-1"].items
    finally:
        hub.close()


def test_socket_netns_of_a_host_socket() -> None:
    with socket.socket() as sock:
        fd = socket_netns(sock)
    if fd < 0:
        pytest.skip("SIOCGSKNS needs CAP_NET_ADMIN")
    import os

    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == os.readlink("/proc/self/ns/net")
    finally:
        os.close(fd)


async def test_subscription_routes_of_the_runtime_api() -> None:
    from nimbus.sandbox.runtimeapi import RuntimeAPI, serve
    from tests.sandbox.test_runtimeapi import EXT, MAX, Client, Listener, identity

    hub = TelemetryHub("e1")
    api = RuntimeAPI(identity(), Listener(), MAX, ["ext"], None, hub)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    server = await serve(api, sock)
    reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
    c = Client(reader, writer)
    try:
        status, headers, _ = await c.call("POST", f"{EXT}/register", b'{"events":["SHUTDOWN"]}',
                                          {"Lambda-Extension-Name": "ext"})
        ext_id = headers["lambda-extension-identifier"]
        status, _, answer = await c.call("PUT", "/2022-07-01/telemetry", body())
        assert status == 403 and json.loads(answer)["errorType"] == "Extension.MissingExtensionIdentifier"
        status, _, answer = await c.call("PUT", "/2022-07-01/telemetry", body(types=[]),
                                         {"Lambda-Extension-Identifier": ext_id})
        assert status == 400 and json.loads(answer)["errorType"] == "ValidationError"
        status, _, answer = await c.call("PUT", "/2022-07-01/telemetry/", body(),
                                         {"Lambda-Extension-Identifier": ext_id})
        assert (status, answer) == (200, b"OK")
        assert hub.subscribers and api.wants_shutdown()
        assert [b[1] for b in hub.backlog] == ["platform.extension", "platform.telemetrySubscription"]
        assert hub.backlog[0][2] == {"name": "ext", "state": "Ready", "events": ["SHUTDOWN"]}
    finally:
        c.close()
        api.close()
        server.close()
        hub.close()
        await asyncio.sleep(0.01)
