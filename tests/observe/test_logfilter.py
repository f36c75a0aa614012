"""Filter patterns: the supported CloudWatch subset, and rejection of what is not supported."""

from __future__ import annotations

import pytest

from nimbus.errors import InvalidParameterValue
from nimbus.observe.logfilter import compile_pattern


def match(pattern: str, message: str) -> bool:
    return compile_pattern(pattern).matches(message)


def test_empty_pattern_matches_everything() -> None:
    assert match("", "anything")
    assert match("   ", "anything")
    assert compile_pattern(None).matches("x")


def test_terms_must_all_match_case_sensitively() -> None:
    assert match("ERROR timeout", "ERROR: request timeout")
    assert not match("ERROR timeout", "ERROR: request failed")
    assert not match("ERROR", "error: lower case")
    assert compile_pattern("ERROR timeout").required_terms == ("ERROR", "timeout")


def test_quoted_phrases() -> None:
    assert match('"Task timed out"', "2024 Task timed out after 3.00 seconds")
    assert not match('"Task timed out"', "Task has timed out")
    assert match('"say \\"hi\\""', 'they say "hi" often')


def test_optional_terms() -> None:
    assert match("?ERROR ?WARN", "WARN disk")
    assert match("?ERROR ?WARN", "ERROR disk")
    assert not match("?ERROR ?WARN", "INFO disk")
    assert match('disk ?ERROR ?"be careful"', "disk: be careful")
    assert not match("disk ?ERROR ?WARN", "WARN cpu")


def test_excluded_terms() -> None:
    assert match("ERROR -healthcheck", "ERROR in handler")
    assert not match("ERROR -healthcheck", "ERROR in healthcheck")


def test_regex_terms() -> None:
    assert match("%ERR(OR)?%", "an ERR here")
    assert not match("%^ERROR%", "no ERROR at start")


def test_json_patterns() -> None:
    msg = '{"level": "ERROR", "latency": 720, "user": {"id": 42, "name": "ada"}, "tags": ["a", "b"], "ok": true}'
    assert match('{ $.level = "ERROR" }', msg)
    assert match("{ $.level = ERROR }", msg)
    assert not match('{ $.level = "INFO" }', msg)
    assert match('{ $.level != "INFO" }', msg)
    assert match("{ $.latency > 500 }", msg)
    assert not match("{ $.latency < 500 }", msg)
    assert match("{ $.latency >= 720 && $.user.id = 42 }", msg)
    assert match('{ $.level = "INFO" || $.user.name = "a*" }', msg)
    assert match('{ ($.level = "INFO" || $.level = "ERROR") && $.tags[1] = "b" }', msg)
    assert match("{ $.ok IS TRUE }", msg)
    assert match("{ $.missing NOT EXISTS }", msg)
    assert not match("{ $.missing EXISTS }", msg)
    assert not match('{ $.level = "ERROR" }', "plain text ERROR")
    # JSON after a prefix (e.g. a timestamp and request id) still matches.
    assert match('{ $.level = "ERROR" }', "2024-01-01T00:00:00Z abc " + msg)


@pytest.mark.parametrize(
    "pattern",
    ['"unterminated', "{ $.a = }", "{ a = 1 }", "{ $.a > x }", "%(%", "{ $.a = 1",
     "[ip, user", "[ip,, user]", "[1ip]", "[a, b > x]", "[a, b = c = d]"],
)
def test_invalid_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(InvalidParameterValue):
        compile_pattern(pattern)


REPORT = ("REPORT RequestId: 8f5f\tDuration: 120.50 ms\tBilled Duration: 121 ms\tMemory Size: 128 MB\t"
          "Max Memory Used: 7 MB\t")
ACCESS = '127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 404 2326'


@pytest.mark.parametrize(
    ("pattern", "message", "expected"),
    [
        ("[type = REPORT, ...]", REPORT, True),
        ("[type = START, ...]", REPORT, False),
        ('[kind, rid_label, rid, d_label = "Duration:", ms > 100, ...]', REPORT, True),
        ('[kind, rid_label, rid, d_label = "Duration:", ms > 200, ...]', REPORT, False),
        ("[ip, id, user, timestamp, request, status = 4* || status = 5*, bytes]", ACCESS, True),
        ("[ip, id, user, timestamp, request = *GET*, status = 404, bytes > 2000]", ACCESS, True),
        ("[ip, id, user, timestamp, request = *POST*, ...]", ACCESS, False),
        ("[ip, ..., status != 404, bytes]", ACCESS, False),
        ("[ip, ..., bytes]", ACCESS, True),
        ("[..., status = 404, ...]", ACCESS, True),
        ("[ip, user]", ACCESS, False),  # a field count that differs does not match
        ('[ip, id, user = frank && ip = "127.*", ...]', ACCESS, True),
    ],
)
def test_space_delimited_patterns(pattern: str, message: str, expected: bool) -> None:
    # Lambda's own docs filter REPORT lines this way; quoted and bracketed fields count as one field.
    assert compile_pattern(pattern).matches(message) is expected
