"""Lambda's names and ARNs: building function/alias/layer ARNs and taking apart what clients pass as a
function name (a name, a partial ARN `123456789012:function:name` or a full ARN, each optionally
qualified)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nimbus.errors import CrossAccountDenied, InvalidParameterValue, ResourceNotFound, ValidationError

# The FunctionName pattern AWS prints today in its validation messages for operations on an existing function
# (GetFunction, DeleteFunction, Invoke, ...), and the one CreateFunction prints (no dots, no .PUBLISHED):
# recorded in LocalStack's AWS-validated snapshots (test_lambda_api.snapshot.json,
# test_function_name_and_qualifier_validation).
FUNCTION_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?"
)
CREATE_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
QUALIFIER_PATTERN = r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+"
_LOCATOR = re.compile(
    r"(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:)?(?P<region>(?:eusc-)?[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d:)?"
    r"(?P<account>\d{12}:)?(?:(?P<function>function):)?(?P<name>[a-zA-Z0-9-_\.]+)"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9-_]+))?"
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


def validation_errors(errors: list[str]) -> ValidationError:
    """AWS's schema-violation message listing every problem: `N validation errors detected: a; b`."""
    count = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} detected"
    return ValidationError(f"{count}: {'; '.join(errors)}")


def pattern_error(value: str | None, field: str, pattern: str) -> str:
    shown = "null" if value is None else f"'{value}'"
    return (f"Value {shown} at '{field}' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {pattern}")


def length_error(value: str, field: str, max_len: int) -> str:
    return (f"Value '{value}' at '{field}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {max_len}")


def qualifier_errors(qualifier: str | None, field: str = "qualifier") -> list[str]:
    """The schema problems of a Qualifier parameter (1-128 characters of AWS's qualifier pattern)."""
    if qualifier is None:
        return []
    if len(qualifier) > 128:
        return [length_error(qualifier, field, 128)]
    if not re.fullmatch(QUALIFIER_PATTERN, qualifier):
        return [pattern_error(qualifier, field, QUALIFIER_PATTERN)]
    return []


def parse_locator(
    value: str, region: str, account: str, field: str = "functionName", qualifier: str | None = None,
    default_qualifier: str | None = None,
) -> FunctionLocator:
    """Take apart a FunctionName parameter (with the operation's Qualifier parameter, if any), in AWS's order:
    every schema problem of both at once (ValidationException listing each), then an ARN of another
    account (403 AccessDeniedException) or region ("Functions from '<region>' are not reachable ..."), then
    a name longer than 64 characters, which names no function (ResourceNotFoundException, naming the
    qualifier, or `default_qualifier` without one: Invoke says `$LATEST`)."""
    m = _LOCATOR.fullmatch(value)
    errors = [] if m is not None else [pattern_error(value, field, FUNCTION_NAME_PATTERN)]
    if m is not None and len(value) > 170:  # botocore's NamespacedFunctionName; checked after the pattern
        errors.append(length_error(value, field, 170))
    errors += qualifier_errors(qualifier)
    if errors or m is None:
        raise validation_errors(errors)
    arn_region = (m.group("region") or "").rstrip(":") or None
    arn_account = (m.group("account") or "").rstrip(":") or None
    loc = FunctionLocator(m.group("name"), m.group("qualifier"), arn_account, arn_region)
    if arn_account and arn_account != account:
        raise CrossAccountDenied()
    if arn_region and arn_region != region:
        raise ResourceNotFound(f"Functions from '{arn_region}' are not reachable in this region ('{region}')")
    if not NAME_RE.match(loc.name):
        raise ResourceNotFound(
            f"Function not found: "
            f"{function_arn(region, account, loc.name, qualifier or loc.qualifier or default_qualifier)}"
        )
    return loc


_CREATE_LOCATOR = re.compile(CREATE_NAME_PATTERN)


def create_name(value: str, region: str, account: str) -> str:
    """The function name CreateFunction's FunctionName gives, checked as AWS does (LocalStack snapshots
    test_create_lambda_exceptions and test_function_name_and_qualifier_validation[*-create_function]): the
    create pattern and 140 characters, both reported; a qualifier is refused with the pattern; another
    region or account as for other operations; then a name over 64 characters is InvalidParameterValue."""
    m = _CREATE_LOCATOR.fullmatch(value)
    errors = [] if m is not None else [pattern_error(value, "functionName", CREATE_NAME_PATTERN)]
    if len(value) > 140:
        errors.insert(0, length_error(value, "functionName", 140))
    if errors:
        raise validation_errors(errors)
    loc = parse_locator(value, region, account) if len(value.split(":")) > 1 else None
    if loc is not None and loc.qualifier is not None:
        raise validation_errors([pattern_error(value, "functionName", CREATE_NAME_PATTERN)])
    name = loc.name if loc is not None else value
    if len(name) > 64:
        raise InvalidParameterValue(
            f"1 validation error detected: {length_error(name, 'functionName', 64)}"
        )
    return name


def is_version(qualifier: str) -> bool:
    """A published version number (not `$LATEST`, not an alias)."""
    return qualifier.isdigit()
