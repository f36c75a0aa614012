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
    ['"unterminated', "{ $.a = }", "{ a = 1 }", "{ $.a > x }", "[ip, user]", "%(%", "{ $.a = 1"],
)
def test_invalid_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(InvalidParameterValue):
        compile_pattern(pattern)
