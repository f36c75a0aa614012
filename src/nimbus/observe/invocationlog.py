"""The log events of one invocation, as Lambda writes them to the function's log stream: START, the
function's own lines, Lambda's timeout line, END and REPORT in the text format, or the `platform.*` records
of the JSON format (platformlog.py). Pure: the caller stores them (Observer.finished)."""

from __future__ import annotations

import math
import time

from nimbus.control.specs import VersionSpec
from nimbus.observe import platformlog, report
from nimbus.sandbox.types import InvokeRequest, InvokeResult, LogLine


def invocation_lines(
    spec: VersionSpec, request: InvokeRequest, result: InvokeResult, now_ms: int | None = None
) -> tuple[list[LogLine], list[str]]:
    """(stamped events for the log store, the lines of the `Tail` log result)."""
    if platformlog.is_json(spec):  # LoggingConfig JSON: platform.* records instead of START/END/REPORT
        return platformlog.invocation_lines(spec, request, result, now_ms)
    rid = request.request_id
    start = report.start_line(rid, spec.version)
    end = report.end_line(rid)
    report_line = report.report_line(
        rid,
        result.duration_ms,
        spec.memory_size,
        min(result.max_memory_mb, spec.memory_size),  # a peak past the limit is the OOM kill itself
        result.init_duration_ms,
        result.extra_report or None,
    )
    now = int(time.time() * 1000) if now_ms is None else now_ms
    # START is stamped when the handler began, so it sorts before the function's own lines.
    started = now - math.ceil(result.duration_ms)
    logs = result.logs
    if result.error_type == "Sandbox.Timedout":
        logs = [*logs, (now, timeout_line(rid, spec.timeout, now))]
    if logs:
        started = min(started, logs[0][0])
        stamped = [(started, start), *logs, (now, end), (now, report_line)]
        lines = [start, *[text for _, text in logs], end, report_line]
    else:
        stamped = [(started, start), (now, end), (now, report_line)]
        lines = [start, end, report_line]
    return stamped, lines


def timeout_line(request_id: str, timeout_s: int, now_ms: int) -> str:
    """Lambda's own line for a timeout, between the function's output and END."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ms / 1000)) + f".{now_ms % 1000:03d}Z"
    return f"{stamp} {request_id} Task timed out after {timeout_s:.2f} seconds"
