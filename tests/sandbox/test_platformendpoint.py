"""The platform-only endpoint of managed Python environments, without a sandbox: the listening socket handed over
the way runtime/bootstrap.py does it, every path served by the platform app with the environment's identity
(Runtime API paths included: there is none here), `Connection: close` answered before closing, and nothing
served once the environment closed it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from nimbus.sandbox.platformendpoint import PlatformEndpoint
from nimbus.sandbox.types import PlatformApi
from tests.sandbox.conftest import make_spec


async def request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 10)  # until the server closes (Connection: close)
    writer.close()
    return data


async def test_serves_only_the_platform_app_with_the_identity_and_stops_on_close(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    platform_api = PlatformApi()
    endpoint = PlatformEndpoint(spec, "env-1", 1024 * 1024, platform_api)
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok " + body})

    environ, fd = endpoint.launch_environ()
    assert environ == {"_NIMBUS_API_FD": str(fd)}
    # What the runtime does inside the sandbox: create the listener, send it over the fd, close both.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    with socket.socket(fileno=socket.dup(fd)) as channel:
        socket.send_fds(channel, [b"L"], [listener.fileno()])
    listener.close()
    endpoint.launched()
    platform_api.bind(app)
    try:
        for _ in range(200):
            if endpoint._server is not None:
                break
            await asyncio.sleep(0.01)
        assert endpoint._server is not None
        for path in ("/2015-03-31/functions/f", "/2018-06-01/runtime/invocation/next"):
            raw = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
            answer = await request(port, raw.encode())
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok hi"), answer
        assert [s["path"] for s in seen] == ["/2015-03-31/functions/f", "/2018-06-01/runtime/invocation/next"]
        assert seen[0]["nimbus.environment"] == {"function_name": spec.function_name, "function_version": "$LATEST",
                                                 "function_arn": spec.function_arn, "environment_id": "env-1"}
    finally:
        endpoint.close()
    await asyncio.sleep(0.05)
    with pytest.raises(OSError):
        await request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


async def test_a_runtime_that_sends_nothing_leaves_no_endpoint(tmp_path: Path) -> None:
    endpoint = PlatformEndpoint(make_spec(tmp_path), "env-2", 1024)
    _, fd = endpoint.launch_environ()
    endpoint.launched()  # the child end is closed: EOF without a socket
    await asyncio.sleep(0.05)
    assert endpoint._channel is None and endpoint._server is None
    endpoint.close()
