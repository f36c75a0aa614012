"""Lambda's names and ARNs: building function/alias/layer ARNs and taking apart what clients pass as a
function name (a name, a partial ARN `123456789012:function:name` or a full ARN, each optionally
qualified)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nimbus.errors import ResourceNotFound, ValidationError

# botocore's FunctionName / NamespacedFunctionName patterns, anchored.
FUNCTION_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
_LOCATOR = re.compile(
    r"^(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d):)?"
    r"(?:(?P<account>\d{12}):)?(?:(?P<function>function):)?(?P<name>[a-zA-Z0-9-_]+)"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?$"
)
NAME_RE = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")
LAYER_VERSION_ARN_RE = re.compile(
    r"^arn:(aws[a-zA-Z-]*)?:lambda:(?P<region>[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}):"
    r"(?P<account>\d{12}):layer:(?P<name>[a-zA-Z0-9-_]+):(?P<version>[0-9]+)$"
    r"|^arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+$"
)


@dataclass(frozen=True, slots=True)
class FunctionLocator:
    """What a FunctionName parameter names: the bare function name and an optional qualifier."""

    name: str
    qualifier: str | None
    account: str | None
    region: str | None


def function_arn(region: str, account: str, name: str, qualifier: str | None = None) -> str:
    """`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`."""
    arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def parse_locator(value: str, region: str, account: str, field: str = "functionName") -> FunctionLocator:
    """Take apart a FunctionName parameter.

    A malformed value is a ValidationException with botocore's pattern; an ARN naming another account or
    region names a function that cannot exist here (ResourceNotFound), as on AWS.
    """
    m = _LOCATOR.match(value) if len(value) <= 256 else None
    if m is None or (m.group("region") and not m.group("function")):
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}"
        )
    # "name:qualifier" without an account is ambiguous with "account:function"-less partial ARNs; the regex
    # reads "123456789012:name" as account + name, which is what AWS does too.
    if m.group("account") and not m.group("function") and not m.group("region"):
        # "123456789012:name" is not a partial ARN (those need "function:"): treat "a:b" as name:qualifier.
        return _name_qualifier(value, region, account, field)
    loc = FunctionLocator(m.group("name"), m.group("qualifier"), m.group("account"), m.group("region"))
    if len(loc.name) > 64:
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
            "Member must have length less than or equal to 64"
        )
    if (loc.account and loc.account != account) or (loc.region and loc.region != region):
        raise ResourceNotFound(f"Function not found: {function_arn(region, account, loc.name, loc.qualifier)}")
    return loc


def _name_qualifier(value: str, region: str, account: str, field: str) -> FunctionLocator:
    name, _, qualifier = value.partition(":")
    if not NAME_RE.match(name) or not re.match(r"^(\$LATEST|[a-zA-Z0-9-_]+)$", qualifier):
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}"
        )
    return FunctionLocator(name, qualifier, None, None)


def is_version(qualifier: str) -> bool:
    """A published version number (not `$LATEST`, not an alias)."""
    return qualifier.isdigit()
