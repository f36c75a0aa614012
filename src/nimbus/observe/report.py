"""Lambda's platform log lines (START / END / REPORT), the billed-duration rule and the `X-Amz-Log-Result` tail,
exactly as AWS prints them. Pure functions: no I/O, no clock unless one is passed in."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping


def start_line(request_id: str, version: str) -> str:
    """`START RequestId: <id> Version: <version>` (space-separated, unlike REPORT)."""
    return f"START RequestId: {request_id} Version: {version}"


def end_line(request_id: str) -> str:
    """`END RequestId: <id>`."""
    return f"END RequestId: {request_id}"


def billed_ms(duration_ms: float, init_ms: float | None = None) -> int:
    """Billed duration, the one rule: INIT plus the handler's duration, rounded up to the next whole
    millisecond, at least 1 ms (AWS bills the INIT phase since 1 August 2025)."""
    return max(1, math.ceil(duration_ms + (init_ms or 0.0)))


def report_line(
    request_id: str,
    duration_ms: float,
    memory_size_mb: int,
    max_memory_mb: int,
    init_duration_ms: float | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The REPORT line: tab-separated fields, each followed by a tab (AWS ends the line with one too).

    Order as in CloudWatch: Duration, Billed Duration, Memory Size, Max Memory Used, then Init Duration
    (cold starts only), then any `extra` fields in the given order (e.g. `Status: timeout`). Billed Duration
    includes the INIT phase, as AWS bills it since 1 August 2025.
    """
    # One f-string: this runs on every invocation.
    line = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {billed_ms(duration_ms, init_duration_ms)} ms\t"
        f"Memory Size: {memory_size_mb} MB\t"
        f"Max Memory Used: {max_memory_mb} MB\t"
    )
    if init_duration_ms is not None:
        line += f"Init Duration: {init_duration_ms:.2f} ms\t"
    if extra:
        line += "".join([f"{key}: {value}\t" for key, value in extra.items()])
    return line


def tail(lines: Iterable[str], limit_bytes: int = 4096) -> str:
    """Base64 of the last `limit_bytes` of the invocation's log text (each line plus a newline), cut on a
    UTF-8 character boundary, as the `X-Amz-Log-Result` header carries it."""
    data = "".join(line + "\n" for line in lines).encode("utf-8", errors="replace")
    if len(data) > limit_bytes:
        data = data[len(data) - limit_bytes :]
        # Drop continuation bytes (10xxxxxx) of a character whose start was cut off.
        skip = 0
        while skip < len(data) and data[skip] & 0xC0 == 0x80:
            skip += 1
        data = data[skip:]
    return base64.b64encode(data).decode("ascii")
