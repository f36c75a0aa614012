"""Lambda's platform records in the JSON log format (`LoggingConfig.LogFormat = JSON`): `platform.start`,
`platform.runtimeDone` and `platform.report` replace the START / END / REPORT text lines, each kept or dropped
by `SystemLogLevel` as AWS maps them (start and report are INFO, runtimeDone is DEBUG; WARN keeps none of
them); the function's own lines are kept or dropped by `ApplicationLogLevel` as Lambda's log-level filter
does (the `"level"` of a JSON line, else INFO). Shapes follow the Telemetry API schema that CloudWatch
shows for JSON-format functions, e.g.

    {"time":"2024-07-01T08:54:54.127Z","type":"platform.report","record":{"requestId":"…","metrics":
     {"durationMs":17.493,"billedDurationMs":18,"memorySizeMB":128,"maxMemoryUsedMB":75,"initDurationMs":235.086},
     "status":"success"}}
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from nimbus.control.specs import VersionSpec
from nimbus.observe import report
from nimbus.sandbox.types import InvokeRequest, InvokeResult, LogLine

LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30}
EVENT_LEVELS = {"platform.start": 20, "platform.runtimeDone": 10, "platform.report": 20, "platform.initStart": 20}
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def is_json(spec: VersionSpec) -> bool:
    return spec.logging_config.get("LogFormat") == "JSON"


_second: list[Any] = [None, ""]  # the last second formatted, and its text


def stamp(ms: int) -> str:
    """`2024-07-01T08:54:54.127Z`."""
    second = ms // 1000
    if _second[0] != second:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{ms % 1000:03d}Z"


def record(event_type: str, ms: int, body: Any) -> str:
    return _encode({"time": stamp(ms), "type": event_type, "record": body})


def enabled(spec: VersionSpec, event_type: str) -> bool:
    """Whether `SystemLogLevel` (INFO by default) lets this platform event through."""
    threshold = LEVELS.get(str(spec.logging_config.get("SystemLogLevel") or "INFO"), 20)
    return EVENT_LEVELS.get(event_type, 20) >= threshold


APP_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40, "FATAL": 50,
              "CRITICAL": 50}


def line_level(text: str) -> int:
    """A function output line's level as Lambda's log-level filter reads it: a JSON object's `"level"`
    (case-insensitive; `log_level`, which older Python runtimes put on unhandled-error records, counts too),
    else INFO — plain text, `print()` output and records with a missing or invalid level are INFO."""
    if text[:1] == "{":
        try:
            doc = json.loads(text)
        except ValueError:
            return 20
        if isinstance(doc, dict):
            level = doc.get("level", doc.get("log_level"))
            if isinstance(level, str):
                return APP_LEVELS.get(level.upper(), 20)
    return 20


def filter_application(spec: VersionSpec, logs: list[LogLine]) -> list[LogLine]:
    """The function's own lines that `ApplicationLogLevel` (INFO by default) lets through. Only lines that
    can be below the threshold are parsed: at INFO, JSON lines naming DEBUG or TRACE."""
    threshold = APP_LEVELS.get(str(spec.logging_config.get("ApplicationLogLevel") or "INFO").upper(), 20)
    if threshold <= 5 or not logs:
        return logs
    if threshold <= 20:
        words = ("trace",) if threshold <= 10 else ("debug", "trace")
        return [line for line in logs
                if line[1][:1] != "{" or not any(w in line[1].lower() for w in words)
                or line_level(line[1]) >= threshold]
    return [line for line in logs if line_level(line[1]) >= threshold]


def status_of(result: InvokeResult) -> str:
    """`success`, `error` (a function error), `timeout` or `failure` (the runtime or sandbox failed)."""
    status = (result.extra_report or {}).get("Status")
    if status == "timeout" or result.error_type == "Sandbox.Timedout":
        return "timeout"
    if result.function_error is None:
        return "success"
    if status == "error" or (result.error_type or "").startswith(("Runtime.", "Sandbox.")):
        return "failure"
    return "error"


_SAFE = re.compile(r"[A-Za-z0-9$._:;=/+ -]*")


def _q(text: str) -> str:
    """A JSON string literal (ids, versions and trace headers need no escaping: skip the encoder)."""
    return f'"{text}"' if _SAFE.fullmatch(text) else _encode(text)


def _n(value: float) -> str:
    return repr(round(value, 3))


def invocation_lines(
    spec: VersionSpec, request: InvokeRequest, result: InvokeResult, now_ms: int | None = None
) -> tuple[list[LogLine], list[str]]:
    """The invocation's log events in JSON format: (stamped lines for the log store, lines for the tail).
    Built with f-strings (this runs per invocation): the same text `record()` would give."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    rid = _q(request.request_id)
    started = now - math.ceil(result.duration_ms)
    logs = result.logs
    if logs:
        started = min(started, logs[0][0])
        logs = filter_application(spec, logs)
    status = status_of(result)
    threshold = LEVELS.get(str(spec.logging_config.get("SystemLogLevel") or "INFO"), 20)
    now_stamp = stamp(now)
    head: list[LogLine] = []
    tail: list[LogLine] = []
    if threshold <= 20:  # platform.start (INFO)
        tracing = (f',"tracing":{{"type":"X-Amzn-Trace-Id","value":{_q(request.trace_id)}}}'
                   if request.trace_id else "")
        head.append((started, f'{{"time":"{stamp(started)}","type":"platform.start","record":{{"requestId":{rid},'
                              f'"version":{_q(spec.version)}{tracing}}}}}'))
    if status == "timeout":
        tail.append((now, f'{{"timestamp":"{now_stamp}","level":"ERROR","requestId":{rid},'
                          f'"message":"Task timed out after {spec.timeout:.2f} seconds"}}'))
    error = f',"errorType":{_q(result.error_type or "Unhandled")}' if result.function_error else ""
    duration = _n(result.duration_ms)
    if threshold <= 10:  # platform.runtimeDone (DEBUG)
        tail.append((now, f'{{"time":"{now_stamp}","type":"platform.runtimeDone","record":{{"requestId":{rid},'
                          f'"status":"{status}","metrics":{{"durationMs":{duration},'
                          f'"producedBytes":{len(result.payload)}}}{error}}}}}'))
    if threshold <= 20:  # platform.report (INFO)
        init = result.init_duration_ms
        billed = report.billed_ms(result.duration_ms, init)
        init_field = f',"initDurationMs":{_n(init)}' if init is not None else ""
        if result.extra_report and "Restore Duration" in result.extra_report:  # a SnapStart environment's first
            init_field += _restore_fields(result.extra_report)
        tail.append((now, f'{{"time":"{now_stamp}","type":"platform.report","record":{{"requestId":{rid},'
                          f'"metrics":{{"durationMs":{duration},"billedDurationMs":{billed},'
                          f'"memorySizeMB":{spec.memory_size},'
                          f'"maxMemoryUsedMB":{min(result.max_memory_mb, spec.memory_size)}{init_field}}},'
                          f'"status":"{status}"{error if status != "success" else ""}}}}}'))
    stamped = [*head, *logs, *tail]
    return stamped, [text for _, text in stamped]


def _restore_fields(extra: dict[str, str]) -> str:
    """The Telemetry API report metric `restoreDurationMs`, from the text REPORT's `Restore Duration: 12.34 ms`."""
    try:
        return f',"restoreDurationMs":{_n(float(str(extra.get("Restore Duration", "")).split()[0]))}'
    except (ValueError, IndexError):
        return ""


def init_start(spec: VersionSpec, runtime_version: str, runtime_version_arn: str, ms: int) -> str | None:
    """`platform.initStart` (what INIT_START is in the text format), or None when SystemLogLevel drops it."""
    if not enabled(spec, "platform.initStart"):
        return None
    return record("platform.initStart", ms, {
        "initializationType": "on-demand", "phase": "init", "runtimeVersion": runtime_version,
        "runtimeVersionArn": runtime_version_arn, "functionName": spec.function_name,
        "functionVersion": spec.version,
    })


_START_LINE = re.compile(r"^(INIT_START|RESTORE_START) Runtime Version: (\S+)\tRuntime Version ARN: (\S+)$")


def start_lines(spec: VersionSpec, lines: list[LogLine]) -> list[LogLine]:
    """An environment's first lines in the JSON format: INIT_START / RESTORE_START become `platform.initStart` /
    `platform.restoreStart` (or vanish under SystemLogLevel); the function's own INIT output stays."""
    out: list[LogLine] = []
    for ms, text in lines:
        match = _START_LINE.match(text)
        if match is None:
            out.append((ms, text))
            continue
        kind, version, arn = match.groups()
        if kind == "INIT_START":
            converted = init_start(spec, version, arn, ms)
        elif enabled(spec, "platform.restoreStart"):
            converted = record("platform.restoreStart", ms, {
                "runtimeVersion": version, "runtimeVersionArn": arn, "functionName": spec.function_name,
                "functionVersion": spec.version,
            })
        else:
            converted = None
        if converted is not None:
            out.append((ms, converted))
    return out
