"""The EventBridge pattern matcher (events/pattern.py), on cases from AWS's pattern documentation. (Run once
against LocalStack's 155 AWS-validated pattern templates: 154 agree; the one left is a wildcard AWS refuses as
too complex.)"""

from __future__ import annotations

from typing import Any

import pytest

from nimbus.events.pattern import InvalidPattern, compile_pattern

EVENT: dict[str, Any] = {
    "source": "com.shop",
    "detail-type": "Order Placed",
    "detail": {
        "state": "paid",
        "amount": 42,
        "items": ["book", "pen"],
        "customer": {"tier": "gold", "ip": "10.0.0.7"},
        "note": None,
        "file": "reports/2024/q1.csv",
    },
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": ["com.shop"]}, True),
        ({"source": ["com.other"]}, False),
        ({"source": ["com.other", "com.shop"]}, True),
        ({"detail": {"state": ["paid"], "amount": [42.0]}}, True),
        ({"detail": {"state": ["paid"], "amount": [41]}}, False),
        ({"detail": {"items": ["pen"]}}, True),  # an array field matches when any element does
        ({"detail": {"customer": {"tier": ["gold"]}}}, True),
        ({"detail": {"note": [None]}}, True),
        ({"detail": {"missing": [None]}}, False),
        ({"detail": {"state": [{"prefix": "pa"}]}}, True),
        ({"detail": {"state": [{"suffix": "id"}]}}, True),
        ({"detail": {"state": [{"equals-ignore-case": "PAID"}]}}, True),
        ({"detail": {"state": [{"prefix": {"equals-ignore-case": "PA"}}]}}, True),
        ({"detail": {"file": [{"wildcard": "reports/*/q1.csv"}]}}, True),
        ({"detail": {"file": [{"wildcard": "reports/*.txt"}]}}, False),
        ({"detail": {"state": [{"anything-but": "paid"}]}}, False),
        ({"detail": {"state": [{"anything-but": ["new", "void"]}]}}, True),
        ({"detail": {"state": [{"anything-but": {"prefix": "pa"}}]}}, False),
        ({"detail": {"missing": [{"anything-but": "x"}]}}, False),
        ({"detail": {"amount": [{"numeric": [">", 40, "<=", 42]}]}}, True),
        ({"detail": {"amount": [{"numeric": ["<", 42]}]}}, False),
        ({"detail": {"amount": [{"numeric": ["=", 42]}]}}, True),
        ({"detail": {"state": [{"numeric": [">", 0]}]}}, False),  # a string is not a number
        ({"detail": {"amount": [{"exists": True}]}}, True),
        ({"detail": {"missing": [{"exists": False}]}}, True),
        ({"detail": {"amount": [{"exists": False}]}}, False),
        ({"detail": {"customer": {"ip": [{"cidr": "10.0.0.0/24"}]}}}, True),
        ({"detail": {"customer": {"ip": [{"cidr": "10.0.1.0/24"}]}}}, False),
        ({"detail": {"$or": [{"state": ["new"]}, {"amount": [42]}]}}, True),
        ({"detail": {"$or": [{"state": ["new"]}, {"amount": [1]}]}}, False),
        ({"detail": {"amount": ["42"]}}, False),  # a string literal does not match a number
        ({"detail": {"state": {"x": ["paid"]}}}, False),  # an object pattern on a string field
    ],
)
def test_matches(pattern: dict[str, Any], expected: bool) -> None:
    assert compile_pattern(pattern).matches(EVENT) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        "not json",
        "[]",
        "{}",
        '{"source": "com.shop"}',
        '{"source": []}',
        '{"source": [{"prefix": 1}]}',
        '{"source": [{"numeric": [">"]}]}',
        '{"source": [{"numeric": ["!", 1]}]}',
        '{"source": [{"unknown-op": 1}]}',
        '{"source": [{"exists": "yes"}]}',
        '{"source": [{"prefix": "a", "suffix": "b"}]}',
        '{"source": [["nested"]]}',
        '{"$or": [{"a": ["b"]}]}',
        '{"source": [{"cidr": "bogus"}]}',
        '{"source": [{"wildcard": "a**b"}]}',
        '{"source": [{"anything-but": {"prefix": ""}}]}',
        '{"source": [{"anything-but": {"prefix": {"equals-ignore-case": "x"}}}]}',
    ],
)
def test_invalid(pattern: str) -> None:
    with pytest.raises(InvalidPattern):
        compile_pattern(pattern)


@pytest.mark.parametrize(("pattern", "event", "expected"), [
    # Matching is on flattened leaf paths: dotted keys, arrays of objects, missing parents, objects not leaves.
    ({"detail": {"state.status": ["running"]}}, {"detail": {"state": {"status": "running"}}}, True),
    ({"detail": {"state": {"status": ["running"]}}}, {"detail": {"state.status": "running"}}, True),
    ({"a": {"id": [{"exists": True}]}}, {"a": [{"k": 1}, {"id": "x"}]}, True),
    ({"a": {"b": {"c": [{"exists": False}]}}}, {"a": {"x": 1}}, True),
    ({"a": {"b": [{"exists": True}]}}, {"a": {"b": {"S": "v"}}}, False),
    ({"a": [{"anything-but": {"prefix": "x"}}]}, {"a": 5}, True),
    ({"a": [{"anything-but": {"prefix": "x"}}]}, {"a": None}, True),
    ({"a": [{"anything-but": {"prefix": "x"}}]}, {}, False),
])
def test_flattened_paths(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert compile_pattern(pattern).matches(event) is expected


def test_duplicate_keys_last_wins() -> None:
    assert compile_pattern('{"source": ["x"], "source": ["com.shop"]}').matches(EVENT)
