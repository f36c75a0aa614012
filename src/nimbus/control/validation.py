"""Lambda's limits and field rules for function configuration, with AWS's error types and messages.
Every limit comes from `Settings`; the API layer only checks JSON types, the rules live here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from nimbus.config import Settings
from nimbus.control.arn import LAYER_VERSION_ARN_RE, NAME_RE
from nimbus.errors import InvalidParameterValue, ValidationError
from nimbus.runtimes import KNOWN_RUNTIMES, available_runtimes, unavailable_reason

ROLE_PATTERN = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
HANDLER_PATTERN = r"[^\s]+"
ENV_KEY_PATTERN = r"[a-zA-Z]([a-zA-Z0-9_])+"
ALIAS_PATTERN = r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)"
STATEMENT_ID_PATTERN = r"([a-zA-Z0-9-_]+)"
ACTION_PATTERN = r"(lambda:[*]|lambda:[a-zA-Z]+|[*])"
TAG_PATTERN = r"([\w\s_.:/=+\-@]*)"
LOG_GROUP_PATTERN = r"[\.\-_/#A-Za-z0-9]+"
ARCHITECTURES = ("x86_64", "arm64")
TAGS_MAX = 50

# Keys the platform sets itself; AWS refuses them in a function's Environment.
RESERVED_ENV_KEYS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


def constraint(value: Any, field: str, rule: str) -> ValidationError:
    """AWS's schema-violation message: `1 validation error detected: Value 'x' at 'f' failed to ...`."""
    text = str(value)
    shown = "null" if value is None else f"'{text if len(text) <= 1024 else text[:1024] + '...'}'"
    return ValidationError(
        f"1 validation error detected: Value {shown} at '{field}' failed to satisfy constraint: {rule}"
    )


def check_pattern(value: str, pattern: str, field: str, max_len: int | None = None, min_len: int = 0) -> None:
    if max_len is not None and len(value) > max_len:
        raise constraint(value, field, f"Member must have length less than or equal to {max_len}")
    if len(value) < min_len:
        raise constraint(value, field, f"Member must have length greater than or equal to {min_len}")
    if not re.fullmatch(pattern, value):
        raise constraint(value, field, f"Member must satisfy regular expression pattern: {pattern}")


def check_range(value: int | float, field: str, low: int | float, high: int | float) -> None:
    if value < low:
        raise constraint(value, field, f"Member must have value greater than or equal to {low}")
    if value > high:
        raise constraint(value, field, f"Member must have value less than or equal to {high}")


def check_function_name(name: str) -> None:
    """A bare function name as stored: 1–64 of `[a-zA-Z0-9-_]`."""
    if not NAME_RE.match(name):
        check_pattern(name, r"[a-zA-Z0-9-_]+", "functionName", max_len=64, min_len=1)


# The runtime enum as AWS prints it today, in its order (LocalStack snapshot test_create_lambda_exceptions,
# recorded against AWS), and the runtimes AWS no longer accepts for creating or updating functions
# (TestRuntimeValidation::test_create_deprecated_function_runtime_with_validation_enabled).
AWS_RUNTIME_ENUM = (
    "nodejs20.x, python3.14, provided.al2023, python3.12, python3.13, nodejs24.x, nodejs22.x, java25, python3.10, "
    "python3.11, java21, ruby3.3, ruby3.4, ruby3.2, python3.8, python3.9, java17, nodejs16.x, dotnet10, dotnet8, "
    "java11, dotnet6, nodejs18.x, provided.al2, java8.al2"
)
DEPRECATED_RUNTIMES = frozenset(
    {"provided", "python3.7", "python3.6", "python2.7", "nodejs14.x", "nodejs12.x", "nodejs10.x", "nodejs8.10",
     "nodejs6.10", "nodejs4.3", "nodejs4.3-edge", "nodejs", "java8", "go1.x", "ruby2.7", "ruby2.5",
     "dotnetcore3.1", "dotnetcore2.1", "dotnetcore2.0", "dotnetcore1.0"}
)


def check_runtime(runtime: str) -> None:
    """Known to Lambda, still accepted for new code, and runnable on this host."""
    if runtime not in KNOWN_RUNTIMES:
        raise InvalidParameterValue(
            f"Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: "
            f"[{AWS_RUNTIME_ENUM}] or be a valid ARN"
        )
    if runtime in DEPRECATED_RUNTIMES:
        raise InvalidParameterValue(
            f"The runtime parameter of {runtime} is no longer supported for creating or updating AWS Lambda "
            "functions. We recommend you use a supported runtime while creating or updating functions."
        )
    available = available_runtimes()
    if runtime not in available:
        here = ", ".join(sorted(available)) or "none"
        raise InvalidParameterValue(
            f"The runtime parameter of {runtime} is not supported by this server. "
            f"{unavailable_reason(runtime)} Runtimes available here: {here}.".replace(".  ", ". ")
        )


def check_handler(handler: str, runtime: str | None) -> None:
    check_pattern(handler, HANDLER_PATTERN, "handler", max_len=128)
    if runtime and runtime.startswith("python"):
        module, dot, func = handler.rpartition(".")
        if not dot or not module or not func or module.endswith("/") or "." in func:
            raise InvalidParameterValue(
                f"Handler '{handler}' is not valid for runtime {runtime}: expected 'module.function' "
                "(e.g. lambda_function.lambda_handler), the module path relative to the code root."
            )


def check_role(role: str) -> None:
    check_pattern(role, ROLE_PATTERN, "role", max_len=10000)


def check_memory(memory: int, settings: Settings) -> None:
    check_range(memory, "memorySize", settings.memory_min, settings.memory_max)


def check_timeout(timeout: int, settings: Settings) -> None:
    check_range(timeout, "timeout", 1, settings.timeout_max)


def check_description(description: str) -> None:
    if len(description) > 256:
        raise constraint(description, "description", "Member must have length less than or equal to 256")


def check_ephemeral(size: int, settings: Settings) -> None:
    check_range(size, "ephemeralStorage.size", settings.ephemeral_min, settings.ephemeral_max)


def check_architectures(archs: list[str]) -> None:
    shown = "[" + ", ".join(archs) + "]"
    if len(archs) != 1:
        raise constraint(
            shown, "architectures", "Member must have length less than or equal to 1"
            if archs else "Member must have length greater than or equal to 1"
        )
    if archs[0] not in ARCHITECTURES:
        raise constraint(
            shown,
            "architectures",
            "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64], "
            "Member must not be null]",
        )


def check_environment(variables: Mapping[str, str], settings: Settings) -> None:
    reserved = [k for k in variables if k in RESERVED_ENV_KEYS]
    if reserved:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment variables you "
            "have provided contains reserved keys that are currently not supported for modification. "
            f"Reserved keys used in this request: {', '.join(reserved)}"
        )
    for key in variables:
        if not re.fullmatch(ENV_KEY_PATTERN, key):
            # AWS's wording: no value is shown for a map-key violation (keys need 2+ characters)
            raise ValidationError(
                "1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: "
                f"Map keys must satisfy constraint: [Member must satisfy regular expression pattern: "
                f"{ENV_KEY_PATTERN}]"
            )
    dumped = json.dumps(dict(variables), separators=(",", ":"), ensure_ascii=False)
    if len(dumped.encode()) > settings.env_vars_max_bytes:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment variables you "
            f"have provided exceeded the {settings.env_vars_max_bytes // 1024}KB limit. "
            f"String measured: {dumped[:1024]}"
        )


def check_layers(layers: list[str], settings: Settings, existing: Iterable[str] = ()) -> None:
    """Layer version ARNs: well formed, at most `layers_max`, one version per layer, and existing.

    `existing` holds the layer version ARNs that exist (control/layers.py resolves them).
    """
    if len(layers) > settings.layers_max:
        raise InvalidParameterValue(f"Cannot reference more than {settings.layers_max} layers.")
    known = set(existing)
    seen: dict[str, str] = {}
    for arn in layers:
        if len(arn) > 2048 or not LAYER_VERSION_ARN_RE.match(arn):
            raise constraint(
                "[" + ", ".join(layers) + "]",
                "layers",
                "Member must satisfy constraint: [Member must have length less than or equal to 2048, "
                "Member must have length greater than or equal to 1, Member must satisfy regular expression "
                "pattern: (arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:"
                "\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+), "
                "Member must not be null]",
            )
        if arn.split(":")[3] not in ("", settings.region):
            # AWS's answer (LocalStack snapshot test_layer_function_exceptions, recorded against AWS)
            raise InvalidParameterValue(
                "Layers are not in the same region as the function. "
                f"Layers are expected to be in region {settings.region}."
            )
    for arn in layers:
        base = arn.rsplit(":", 1)[0]
        if base in seen:
            raise InvalidParameterValue(
                "Two different versions of the same layer are not allowed to be referenced in the same "
                f"function. {seen[base]} and {arn} are versions of the same layer."
            )
        seen[base] = arn
        if arn not in known:
            raise InvalidParameterValue(f"Layer version {arn} does not exist.")


def check_tracing(mode: str) -> None:
    if mode not in ("Active", "PassThrough"):
        raise constraint(mode, "tracingConfig.mode", "Member must satisfy enum value set: [Active, PassThrough]")


def check_logging(config: Mapping[str, Any]) -> None:
    fmt = config.get("LogFormat")
    if fmt is not None and fmt not in ("JSON", "Text"):
        raise constraint(fmt, "loggingConfig.logFormat", "Member must satisfy enum value set: [JSON, Text]")
    app = config.get("ApplicationLogLevel")
    if app is not None and app not in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"):
        raise constraint(
            app,
            "loggingConfig.applicationLogLevel",
            "Member must satisfy enum value set: [TRACE, DEBUG, INFO, WARN, ERROR, FATAL]",
        )
    system = config.get("SystemLogLevel")
    if system is not None and system not in ("DEBUG", "INFO", "WARN"):
        raise constraint(
            system, "loggingConfig.systemLogLevel", "Member must satisfy enum value set: [DEBUG, INFO, WARN]"
        )
    group = config.get("LogGroup")
    if group is not None:
        check_pattern(group, LOG_GROUP_PATTERN, "loggingConfig.logGroup", max_len=512, min_len=1)
    if (app or system) and (fmt or "Text") != "JSON":
        raise InvalidParameterValue(
            "ApplicationLogLevel and SystemLogLevel can only be set when LogFormat is JSON."
        )


def check_tags(tags: Mapping[str, str], existing: int = 0) -> None:
    for key, value in tags.items():
        check_pattern(key, TAG_PATTERN, "tags.key", max_len=128, min_len=1)
        check_pattern(value, TAG_PATTERN, "tags.value", max_len=256)
        if key.lower().startswith("aws:"):
            raise InvalidParameterValue("Tag keys cannot start with the reserved prefix 'aws:'.")
    if existing + len(tags) > TAGS_MAX:
        raise InvalidParameterValue("Number of tags exceeds resource tag limit.")  # AWS: LS test_tag_limits
    from nimbus.control.networktags import check_tags as check_network_tags  # nimbus:network* (docs/network.md)

    check_network_tags(tags)


def check_alias_name(name: str) -> None:
    check_pattern(name, ALIAS_PATTERN, "name", max_len=128, min_len=1)


def check_alias_version(version: str) -> None:
    check_pattern(version, r"(\$LATEST|[0-9]+)", "functionVersion", max_len=1024, min_len=1)


# Durable functions (issue 18). AWS's console defaults; the model gives only the bounds.
DURABLE_TIMEOUT_DEFAULT = 86_400
DURABLE_RETENTION_DEFAULT = 14


def check_durable_config(
    request: Mapping[str, Any], creating: bool, current: Mapping[str, Any]
) -> dict[str, Any]:
    """The stored DurableConfig: bounds of the model; durability can only be turned on at creation."""
    if not creating and not current.get("DurableConfig"):
        raise InvalidParameterValue("DurableConfig can only be set when the function is created.")
    merged: dict[str, Any] = {
        "ExecutionTimeout": DURABLE_TIMEOUT_DEFAULT,
        "RetentionPeriodInDays": DURABLE_RETENTION_DEFAULT,
        **(current.get("DurableConfig") or {}),
        **{k: x for k, x in request.items() if x is not None},
    }
    timeout, retention = merged["ExecutionTimeout"], merged["RetentionPeriodInDays"]
    if not isinstance(timeout, int) or not 1 <= timeout <= 31_622_400:
        raise constraint(timeout, "durableConfig.executionTimeout",
                         "Member must have value less than or equal to 31622400 and greater than or equal to 1")
    if not isinstance(retention, int) or not 1 <= retention <= 90:
        raise constraint(retention, "durableConfig.retentionPeriodInDays",
                         "Member must have value less than or equal to 90 and greater than or equal to 1")
    return merged
