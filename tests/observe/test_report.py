"""The platform lines must match CloudWatch's byte for byte."""

from __future__ import annotations

import base64

from nimbus.observe import report

RID = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"


def test_start_and_end_lines() -> None:
    assert report.start_line(RID, "$LATEST") == f"START RequestId: {RID} Version: $LATEST"
    assert report.start_line(RID, "3") == f"START RequestId: {RID} Version: 3"
    assert report.end_line(RID) == f"END RequestId: {RID}"


def test_report_line_warm() -> None:
    line = report.report_line(RID, 26.731, 128, 75)
    assert line == (
        f"REPORT RequestId: {RID}\tDuration: 26.73 ms\tBilled Duration: 27 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 75 MB\t"
    )


def test_report_line_cold_has_init_duration_after_max_memory() -> None:
    line = report.report_line(RID, 2.75, 128, 56, init_duration_ms=113.514)
    assert line == (
        f"REPORT RequestId: {RID}\tDuration: 2.75 ms\tBilled Duration: 117 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 56 MB\tInit Duration: 113.51 ms\t"
    )


def test_report_line_extra_fields_come_last_in_order() -> None:
    line = report.report_line(RID, 3000.0, 256, 40, init_duration_ms=10.0, extra={"Status": "timeout"})
    assert line.endswith("Max Memory Used: 40 MB\tInit Duration: 10.00 ms\tStatus: timeout\t")
    assert "Billed Duration: 3010 ms\t" in line  # INIT is billed (AWS, since August 2025)


def test_billed_duration_rounds_up_with_a_minimum_of_one_ms() -> None:
    assert report.billed_ms(0.0) == 1
    assert report.billed_ms(0.2) == 1
    assert report.billed_ms(1.0) == 1
    assert report.billed_ms(1.01) == 2
    assert report.billed_ms(27.4) == 28
    assert report.billed_ms(1233.96, 463.512) == 1698  # INIT is billed too


def test_tail_is_base64_of_lines_with_newlines() -> None:
    assert base64.b64decode(report.tail(["a", "b"])) == b"a\nb\n"
    assert report.tail([]) == ""


def test_tail_keeps_the_last_bytes() -> None:
    lines = [f"line {i}" for i in range(2000)]
    data = base64.b64decode(report.tail(lines, limit_bytes=4096))
    assert len(data) == 4096
    assert data.endswith(b"line 1999\n")


def test_tail_cuts_on_a_utf8_boundary() -> None:
    text = "é" * 3000  # 2 bytes each, then the newline: the last 100 bytes start mid-character
    data = base64.b64decode(report.tail([text], limit_bytes=100))
    assert len(data) == 99
    assert data.decode("utf-8") == "é" * 49 + "\n"
