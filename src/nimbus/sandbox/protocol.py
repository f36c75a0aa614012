"""The host side of the wire between an environment and nimbus: frames on a Unix stream socket.

The runtime side lives in runtime/bootstrap.py (stdlib only, it cannot import nimbus); the format is
described there and both ends are tested against each other. One INVOKE frame out, one RESULT frame back
per warm invocation: a single write and (usually) a single read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from nimbus.sandbox.types import InvokeRequest, LogLine

INVOKE = 1
READY = 2
RESULT = 3
# Response streaming (api/streaming.py): the host sends INVOKE_STREAM (same layout as INVOKE) instead of
# INVOKE, and the runtime answers with any number of CHUNK frames (`u32 length, u8 4` + raw bytes, written
# as soon as the handler yields them) before its RESULT frame.
CHUNK = 4
INVOKE_STREAM = 5

_U32 = struct.Struct("!I")
_INVOKE_HEAD = struct.Struct("!IBq")
_RESULT_HEAD = struct.Struct("!BBQQ")
_LINE_HEAD = struct.Struct("!QI")


class ProtocolError(Exception):
    """The environment sent something that is not a frame: it is broken (or hostile) and is discarded."""


@dataclass(slots=True)
class ResultFrame:
    kind: int  # READY or RESULT
    ok: bool
    duration_ns: int
    max_rss_kb: int
    error_type: str | None
    payload: bytes
    logs: list[LogLine]


def encode_invoke(request: InvokeRequest, deadline_ms: int | None = None) -> bytes:
    """The INVOKE frame for `request` (deadline overridable), length prefix included."""
    rid = request.request_id.encode()
    arn = request.invoked_arn.encode()
    context = request.client_context.encode() if request.client_context else b""
    identity = request.identity.encode() if request.identity else b""
    trace = request.trace_id.encode() if request.trace_id else b""
    payload = request.payload
    deadline = request.deadline_ms if deadline_ms is None else deadline_ms
    kind = INVOKE if request.on_chunk is None else INVOKE_STREAM
    size = 9 + 24 + len(rid) + len(arn) + len(context) + len(identity) + len(trace) + len(payload)
    pack = _U32.pack
    # One join, no intermediate tuples: this runs once per invocation.
    return b"".join(
        (
            _INVOKE_HEAD.pack(size, kind, deadline),
            pack(len(rid)), rid,
            pack(len(arn)), arn,
            pack(len(context)), context,
            pack(len(identity)), identity,
            pack(len(trace)), trace,
            pack(len(payload)), payload,
        )
    )  # fmt: skip


def decode_result(frame: bytes | memoryview) -> ResultFrame:
    """Parse a READY/RESULT frame body (without its length prefix)."""
    try:
        kind, status, duration_ns, rss = _RESULT_HEAD.unpack_from(frame, 0)
        pos = _RESULT_HEAD.size
        (n,) = _U32.unpack_from(frame, pos)
        pos += 4
        error_type = bytes(frame[pos : pos + n]).decode() if n else None
        pos += n
        (n,) = _U32.unpack_from(frame, pos)
        pos += 4
        payload = bytes(frame[pos : pos + n])
        if len(payload) != n:
            raise ProtocolError("truncated payload")
        pos += n
        (count,) = _U32.unpack_from(frame, pos)
        pos += 4
        logs: list[LogLine] = []
        unpack_line = _LINE_HEAD.unpack_from
        for _ in range(count):
            ms, n = unpack_line(frame, pos)
            pos += 12
            logs.append((ms, bytes(frame[pos : pos + n]).decode("utf-8", "replace")))
            pos += n
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(str(e)) from e
    if kind not in (READY, RESULT) or pos != len(frame):
        raise ProtocolError(f"bad frame (kind {kind}, {pos} of {len(frame)} bytes parsed)")
    return ResultFrame(kind, status == 0, duration_ns, rss, error_type, payload, logs)


class FrameReader:
    """Accumulates bytes from the socket and yields complete frame bodies."""

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        """Add `data`; return the frames it completed. Raises ProtocolError on an oversized frame."""
        buf = self._buf
        if not buf and len(data) >= 4:
            # Fast path: one whole frame in one read (the common warm case) needs no copy into the buffer.
            (n,) = _U32.unpack_from(data, 0)
            if len(data) == n + 4:
                if n > self.max_frame:
                    raise ProtocolError(f"frame of {n} bytes exceeds {self.max_frame}")
                return [data[4:]]
        buf += data
        frames: list[bytes] = []
        while len(buf) >= 4:
            (n,) = _U32.unpack_from(buf, 0)
            if n > self.max_frame:
                raise ProtocolError(f"frame of {n} bytes exceeds {self.max_frame}")
            if len(buf) < n + 4:
                break
            frames.append(bytes(buf[4 : n + 4]))
            del buf[: n + 4]
        return frames
