"""Function names, partial and full ARNs, qualifiers."""

from __future__ import annotations

import pytest

from nimbus.control.arn import function_arn, parse_locator
from nimbus.errors import CrossAccountDenied, ResourceNotFound, ValidationError

R, A = "us-east-1", "000000000000"


@pytest.mark.parametrize(
    ("value", "name", "qualifier"),
    [
        ("fn", "fn", None),
        ("fn:live", "fn", "live"),
        ("fn:$LATEST", "fn", "$LATEST"),
        ("000000000000:function:fn", "fn", None),
        ("000000000000:function:fn:3", "fn", "3"),
        ("arn:aws:lambda:us-east-1:000000000000:function:fn", "fn", None),
        ("arn:aws:lambda:us-east-1:000000000000:function:fn:live", "fn", "live"),
        ("123456789012", "123456789012", None),
        ("arn:aws:lambda:us-east-1:fn", "fn", None),  # AWS's pattern reads it as region + name
    ],
)
def test_locators(value: str, name: str, qualifier: str | None) -> None:
    loc = parse_locator(value, R, A)
    assert (loc.name, loc.qualifier) == (name, qualifier)


@pytest.mark.parametrize("value", ["", "bad name", "fn:bad qualifier", "a" * 300, "fn:1:2"])
def test_malformed(value: str) -> None:
    with pytest.raises(ValidationError):
        parse_locator(value, R, A)


def test_name_and_qualifier_problems_are_listed_together() -> None:
    with pytest.raises(ValidationError, match=r"^2 validation errors detected: Value 'bad name' at 'functionName'.*; "
                                              r"Value 'q!' at 'qualifier'"):
        parse_locator("bad name", R, A, qualifier="q!")


def test_long_name_is_not_found() -> None:
    with pytest.raises(ResourceNotFound, match=r"function:x{65}$"):
        parse_locator("x" * 65, R, A)


def test_other_account_is_denied_and_other_region_unreachable() -> None:
    with pytest.raises(ResourceNotFound, match=r"^Functions from 'eu-west-1' are not reachable in this region "
                                               r"\('us-east-1'\)$"):
        parse_locator("arn:aws:lambda:eu-west-1:000000000000:function:fn", R, A)
    with pytest.raises(CrossAccountDenied):
        parse_locator("111111111111:function:fn", R, A)


def test_function_arn() -> None:
    assert function_arn(R, A, "fn") == "arn:aws:lambda:us-east-1:000000000000:function:fn"
    assert function_arn(R, A, "fn", "2") == "arn:aws:lambda:us-east-1:000000000000:function:fn:2"
