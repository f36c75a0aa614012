"""Random ids minted on the hot path (request ids, trace ids): cheap, from the OS's CSPRNG.

`uuid.uuid4()` makes one getrandom() syscall per id and builds a UUID object; an invocation mints several ids
(request id, trace id; a function URL one more), so hex digits are fetched a few kilobytes at a time.
"""

from __future__ import annotations

import os
import time


class RandomHex:
    """Hex digits from `os.urandom`, fetched 2 KiB at a time. Not thread-safe: use it from the event loop."""

    __slots__ = ("_hex", "_pos")

    def __init__(self) -> None:
        self._hex = ""
        self._pos = 0

    def take(self, n: int) -> str:
        """`n` (≤ 4096) fresh hex digits."""
        pos = self._pos
        end = pos + n
        if end > len(self._hex):
            self._hex = os.urandom(2048).hex()
            pos, end = 0, n
        self._pos = end
        return self._hex[pos:end]


random_hex = RandomHex()
_VARIANT = "89ab"  # RFC 4122 variant: the top two bits of the clock_seq_hi byte are 10


def new_request_id() -> str:
    """A random (version 4) UUID in its canonical text form, as Lambda's request ids are."""
    h = random_hex.take(31)  # 122 random bits, plus 2 more for the variant digit
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{_VARIANT[int(h[15], 16) & 3]}{h[16:19]}-{h[19:31]}"


def new_trace_id() -> str:
    """An X-Ray trace header for an unsampled invocation (`Root=1-<time>-<24 hex>;Parent=…;Sampled=0`)."""
    h = random_hex.take(40)
    return f"Root=1-{int(time.time()):08x}-{h[:24]};Parent={h[24:]};Sampled=0"
