"""The wire between host and runtime: the host's encoder/decoder against the bootstrap's own."""

from __future__ import annotations

import importlib.util
import os
import socket
from types import ModuleType

import pytest

from nimbus.sandbox.backends.runtime_files import RUNTIME_SRC
from nimbus.sandbox.protocol import READY, RESULT, FrameReader, ProtocolError, decode_result, encode_invoke
from nimbus.sandbox.types import InvokeRequest


def load_bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nimbus_bootstrap_under_test", RUNTIME_SRC / "bootstrap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # importing it has no side effects: main() runs only as __main__
    return module


@pytest.fixture(scope="module")
def bootstrap() -> ModuleType:
    return load_bootstrap()


def test_invoke_frame_round_trip(bootstrap: ModuleType) -> None:
    request = InvokeRequest(
        request_id="rid-1",
        payload=b'{"x": "\xc3\xa9"}',
        deadline_ms=1_700_000_000_123,
        invoked_arn="arn:aws:lambda:us-east-1:000000000000:function:f:live",
        client_context='{"custom": {}}',
        identity=None,
        trace_id="Root=1-abc",
    )
    a, b = socket.socketpair()
    with a, b:
        a.sendall(encode_invoke(request, deadline_ms=42) + encode_invoke(request))
        channel = bootstrap.Channel(b.fileno())
        first, second = channel.read_frame(), channel.read_frame()
    deadline, fields = channel.parse_invoke(first)
    assert deadline == 42
    assert fields == [b"rid-1", request.invoked_arn.encode(), b'{"custom": {}}', b"", b"Root=1-abc", request.payload]
    assert channel.parse_invoke(second)[0] == request.deadline_ms


def test_result_frame_round_trip(bootstrap: ModuleType) -> None:
    lines = [(1_700_000_000_000, "hello"), (1_700_000_000_001, "h\u00e9 \u2603\nsecond line")]
    r, w = os.pipe()
    try:
        channel = bootstrap.Channel(w)
        channel.send_result(RESULT, False, 1_500_000, 20480, "KeyError", b'{"errorType": "KeyError"}', lines)
        channel.send_result(READY, True, 0, 1, None, b"", [])
        os.close(w)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
    finally:
        os.close(r)
    reader = FrameReader(1 << 20)
    frames = reader.feed(data[:7]) + reader.feed(data[7:])
    assert len(frames) == 2
    result, ready = decode_result(frames[0]), decode_result(frames[1])
    assert (result.kind, result.ok, result.duration_ns, result.max_rss_kb) == (RESULT, False, 1_500_000, 20480)
    assert result.error_type == "KeyError" and result.payload == b'{"errorType": "KeyError"}'
    assert result.logs == lines
    assert (ready.kind, ready.ok, ready.error_type, ready.payload, ready.logs) == (READY, True, None, b"", [])


def test_frame_reader_rejects_oversized_frames() -> None:
    reader = FrameReader(max_frame=100)
    with pytest.raises(ProtocolError):
        reader.feed((1000).to_bytes(4, "big") + b"x" * 10)


def test_decode_rejects_garbage() -> None:
    with pytest.raises(ProtocolError):
        decode_result(b"\x03\x00garbage")
    with pytest.raises(ProtocolError):
        decode_result(b"\x09" + b"\x00" * 40)
