"""Platform records of the JSON log format, and SystemLogLevel filtering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nimbus.control.specs import VersionSpec
from nimbus.observe import platformlog
from nimbus.sandbox.types import InvokeRequest, InvokeResult

RID = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
NOW = 1_767_225_600_127  # 2026-01-01T00:00:00.127Z


def spec(**logging: Any) -> VersionSpec:
    return VersionSpec(
        function_name="fn", version="$LATEST", function_arn="arn:aws:lambda:us-east-1:000000000000:function:fn",
        runtime="python3.12", handler="app.handler", memory_size=128, timeout=3, environment={},
        ephemeral_storage=512, architectures=("x86_64",), layers=(), logging_config={"LogFormat": "JSON", **logging},
        code_sha256="0" * 64, code_dir=Path("/nonexistent"), revision_id="r",
    )


def result(**kw: Any) -> InvokeResult:
    base: dict[str, Any] = {"payload": b'{"a":1}', "function_error": None, "error_type": None,
                            "logs": [(NOW - 5, "hello")], "duration_ms": 17.4931, "max_memory_mb": 75,
                            "init_duration_ms": 235.0861, "log_stream": "s", "environment_id": "e"}
    base.update(kw)
    return InvokeResult(**base)


REQUEST = InvokeRequest(RID, b"{}", 0, "arn", trace_id="Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0")


def test_start_and_report_replace_the_text_lines() -> None:
    stamped, lines = platformlog.invocation_lines(spec(), REQUEST, result(), NOW)
    assert [text for _, text in stamped] == lines
    docs = [json.loads(x) if x.startswith("{") else x for x in lines]
    assert docs[1] == "hello"
    start, report = docs[0], docs[2]
    assert start == {"time": "2026-01-01T00:00:00.109Z", "type": "platform.start",
                     "record": {"requestId": RID, "version": "$LATEST",
                                "tracing": {"type": "X-Amzn-Trace-Id", "value": REQUEST.trace_id}}}
    assert report == {"time": "2026-01-01T00:00:00.127Z", "type": "platform.report", "record": {
        "requestId": RID, "metrics": {"durationMs": 17.493, "billedDurationMs": 253, "memorySizeMB": 128,
                                      "maxMemoryUsedMB": 75, "initDurationMs": 235.086},
        "status": "success"}}
    assert stamped[0][0] <= stamped[1][0] <= stamped[2][0]
    # The fast f-string rendering is the same JSON the generic encoder gives.
    assert lines[2] == platformlog.record("platform.report", NOW, report["record"])


def test_system_log_level_debug_adds_runtime_done_and_warn_drops_all() -> None:
    _, lines = platformlog.invocation_lines(spec(SystemLogLevel="DEBUG"), REQUEST, result(), NOW)
    types = [json.loads(x).get("type") for x in lines if x.startswith("{")]
    assert types == ["platform.start", "platform.runtimeDone", "platform.report"]
    done = json.loads(lines[2])["record"]
    assert done == {"requestId": RID, "status": "success", "metrics": {"durationMs": 17.493, "producedBytes": 7}}
    _, quiet = platformlog.invocation_lines(spec(SystemLogLevel="WARN"), REQUEST, result(), NOW)
    assert quiet == ["hello"]


def test_error_timeout_and_failure_statuses() -> None:
    _, lines = platformlog.invocation_lines(
        spec(SystemLogLevel="DEBUG"), REQUEST, result(function_error="Unhandled", error_type="KeyError"), NOW)
    report = json.loads(lines[-1])["record"]
    assert report["status"] == "error" and report["errorType"] == "KeyError"
    timeout = result(function_error="Unhandled", error_type="Sandbox.Timedout", extra_report={"Status": "timeout"})
    _, lines = platformlog.invocation_lines(spec(), REQUEST, timeout, NOW)
    docs = [json.loads(x) for x in lines if x.startswith("{")]
    assert docs[1]["message"] == "Task timed out after 3.00 seconds" and docs[1]["level"] == "ERROR"
    assert docs[-1]["record"]["status"] == "timeout"
    crash = result(function_error="Unhandled", error_type="Runtime.ExitError", extra_report={"Status": "error"})
    assert platformlog.status_of(crash) == "failure"


def test_only_json_format_uses_platform_records() -> None:
    assert platformlog.is_json(spec())
    text = VersionSpec(**{**{f: getattr(spec(), f) for f in VersionSpec.__dataclass_fields__},
                          "logging_config": {"LogFormat": "Text"}})
    assert not platformlog.is_json(text)


def test_odd_characters_are_escaped() -> None:
    request = InvokeRequest('id"with\\quotes', b"{}", 0, "arn", trace_id=None)
    _, lines = platformlog.invocation_lines(spec(), request, result(error_type='Bad"Type', function_error="Unhandled"),
                                            NOW)
    assert json.loads(lines[0])["record"]["requestId"] == 'id"with\\quotes'
    assert json.loads(lines[-1])["record"]["errorType"] == 'Bad"Type'


def test_application_log_level_filters_the_functions_lines_as_lambda_does() -> None:
    lines_in = [
        (NOW - 9, "plain print"),  # no level: INFO
        (NOW - 8, '{"timestamp": "t", "level": "DEBUG", "message": "d", "requestId": "r"}'),
        (NOW - 7, '{"level": "trace", "msg": "t"}'),
        (NOW - 6, '{"level": "info", "msg": "i"}'),
        (NOW - 5, '{"timestamp": "t", "level": "WARNING", "message": "w"}'),
        (NOW - 4, '{"level": "bogus", "msg": "invalid level: INFO"}'),
        (NOW - 3, '{"timestamp": "t", "log_level": "ERROR", "errorType": "ValueError"}'),
        (NOW - 2, '{"level": "CRITICAL", "message": "c"}'),
        (NOW - 1, "{not json"),
    ]

    def kept(level: str | None) -> list[int]:
        conf = {"ApplicationLogLevel": level} if level else {}
        _, lines = platformlog.invocation_lines(spec(SystemLogLevel="WARN", **conf), REQUEST,
                                                result(logs=lines_in), NOW)
        return [[text for _, text in lines_in].index(x) for x in lines]

    everything = list(range(9))
    assert kept("TRACE") == everything
    assert kept("DEBUG") == [0, 1, 3, 4, 5, 6, 7, 8]
    assert kept(None) == kept("INFO") == [0, 3, 4, 5, 6, 7, 8]
    assert kept("WARN") == [4, 6, 7]  # print() output is INFO: dropped, as on AWS
    assert kept("ERROR") == [6, 7]
    assert kept("FATAL") == [7]
    assert platformlog.line_level('{"level": "Warn"}') == 30
    assert platformlog.line_level('["level", "ERROR"]') == 20


def test_a_snapstart_restore_is_reported_as_restore_duration() -> None:
    restored = result(init_duration_ms=None, extra_report={"Restore Duration": "12.27 ms",
                                                           "Billed Restore Duration": "13 ms"})
    _, lines = platformlog.invocation_lines(spec(), REQUEST, restored, NOW)
    metrics = json.loads(lines[-1])["record"]["metrics"]
    assert metrics["restoreDurationMs"] == 12.27 and "initDurationMs" not in metrics
    assert platformlog._restore_fields({"Restore Duration": "n/a"}) == ""
