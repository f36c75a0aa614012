"""The event stream encoder of InvokeWithResponseStream, checked against botocore's own parser and the
Lambda service model (what boto3's `invoke_with_response_stream` does with the bytes)."""

from __future__ import annotations

import binascii
import struct

import botocore.session
import pytest
from botocore.eventstream import EventStream, EventStreamBuffer
from botocore.parsers import EventStreamJSONParser

from nimbus.api.streaming import encode_message, invoke_complete, payload_chunk


def _messages(data: bytes) -> list:  # type: ignore[type-arg]
    buf = EventStreamBuffer()
    buf.add_data(data)
    return list(buf)


def test_payload_chunk_parses_with_botocore_and_checks_crcs() -> None:
    (msg,) = _messages(payload_chunk(b"hello \x00\xff world"))
    assert msg.headers == {
        ":event-type": "PayloadChunk",
        ":content-type": "application/octet-stream",
        ":message-type": "event",
    }
    assert msg.payload == b"hello \x00\xff world"
    assert msg.prelude.crc == binascii.crc32(payload_chunk(b"hello \x00\xff world")[:8])


def test_message_layout_is_the_documented_one() -> None:
    data = encode_message(b"", b"abc")
    total, headers_len, prelude_crc = struct.unpack("!III", data[:12])
    assert (total, headers_len, len(data)) == (19, 0, 19)
    assert prelude_crc == binascii.crc32(data[:8])
    assert struct.unpack("!I", data[-4:])[0] == binascii.crc32(data[:-4])


def test_corrupted_message_is_refused_by_botocore() -> None:
    data = bytearray(payload_chunk(b"abc"))
    data[-5] ^= 1
    with pytest.raises(Exception, match="(?i)crc|checksum"):
        _messages(bytes(data))


def test_empty_and_large_chunks() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    a, b = _messages(payload_chunk(b"") + payload_chunk(big))
    assert a.payload == b"" and b.payload == big


def _parse_stream(data: bytes) -> list[dict]:  # type: ignore[type-arg]
    """What boto3 yields when iterating `response["EventStream"]` over `data`."""
    model = botocore.session.get_session().get_service_model("lambda")
    shape = model.operation_model("InvokeWithResponseStream").output_shape.members["EventStream"]

    class Raw:
        def stream(self):  # type: ignore[no-untyped-def]
            yield from (data[i : i + 7] for i in range(0, len(data), 7))  # split mid-message on purpose

        def close(self) -> None:
            pass

    return list(EventStream(Raw(), shape, EventStreamJSONParser(), "InvokeWithResponseStream"))


def test_boto3_sees_chunks_then_invoke_complete() -> None:
    data = payload_chunk(b"one") + payload_chunk(b"two") + invoke_complete(log_result="bG9n")
    assert _parse_stream(data) == [
        {"PayloadChunk": {"Payload": b"one"}},
        {"PayloadChunk": {"Payload": b"two"}},
        {"InvokeComplete": {"LogResult": "bG9n"}},
    ]


def test_invoke_complete_with_an_error() -> None:
    details = '{"errorMessage": "boom", "errorType": "ValueError"}'
    events = _parse_stream(invoke_complete("ValueError", details))
    assert events == [{"InvokeComplete": {"ErrorCode": "ValueError", "ErrorDetails": details}}]
