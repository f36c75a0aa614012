"""Turning CreateFunction / UpdateFunctionConfiguration requests into the stored configuration of
`$LATEST`, validating every field against Lambda's rules (see `validation`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nimbus.config import Settings
from nimbus.control import validation as v
from nimbus.control.layertree import LAYER_CONTENTS
from nimbus.errors import InvalidParameterValue

ENVIRONMENT_GIVEN = "_environment_given"  # internal: the client sent an Environment (maybe empty)

DEFAULTS: dict[str, Any] = {
    "Description": "",
    "Timeout": 3,
    "MemorySize": 128,
    "TracingMode": "PassThrough",
    "Architectures": ["x86_64"],
    "EphemeralStorage": 512,
    "SnapStartApplyOn": "None",
    "Layers": [],
    "Environment": {},
    "LoggingConfig": {},
}


def apply_request(
    request: dict[str, Any],
    settings: Settings,
    base: dict[str, Any] | None,
    resolve_layers: Callable[[list[str]], dict[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The stored config after applying `request` (AWS field names, only the fields the client sent) to
    `base` (None for a new function). Raises Lambda's errors for any invalid field. `resolve_layers` maps
    layer version ARNs to their content (control/layers.py); without it every layer is unknown."""
    conf: dict[str, Any] = dict(DEFAULTS) if base is None else dict(base)
    if "Role" in request:
        v.check_role(request["Role"])
        conf["Role"] = request["Role"]
    if "Runtime" in request:
        v.check_runtime(request["Runtime"])
        conf["Runtime"] = request["Runtime"]
    if "Handler" in request:
        conf["Handler"] = request["Handler"]
    if request.get("PackageType", "Zip") != "Zip":
        raise InvalidParameterValue("PackageType Image is not supported by this server; use Zip.")
    if not conf.get("Runtime") or not conf.get("Handler"):
        raise InvalidParameterValue(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages."
        )
    if "Handler" in request or "Runtime" in request:
        v.check_handler(conf["Handler"], conf["Runtime"])
    if "Description" in request:
        v.check_description(request["Description"])
        conf["Description"] = request["Description"]
    if "Timeout" in request:
        v.check_timeout(request["Timeout"], settings)
        conf["Timeout"] = request["Timeout"]
    if "MemorySize" in request:
        v.check_memory(request["MemorySize"], settings)
        conf["MemorySize"] = request["MemorySize"]
    if "Environment" in request:
        variables = dict((request["Environment"] or {}).get("Variables") or {})
        v.check_environment(variables, settings)
        conf["Environment"] = variables
        conf[ENVIRONMENT_GIVEN] = True  # AWS echoes `Environment: {Variables: {}}` once one was sent
    if "TracingConfig" in request:
        mode = (request["TracingConfig"] or {}).get("Mode") or "PassThrough"
        v.check_tracing(mode)
        conf["TracingMode"] = mode
    if "Layers" in request:
        layers = list(request["Layers"] or [])
        found = resolve_layers(layers) if resolve_layers is not None else {}
        v.check_layers(layers, settings, found)
        conf["Layers"] = layers
        conf[LAYER_CONTENTS] = [found[arn] for arn in layers]
    if "Architectures" in request:
        archs = list(request["Architectures"] or [])
        v.check_architectures(archs)
        conf["Architectures"] = archs
    if "EphemeralStorage" in request:
        size = (request["EphemeralStorage"] or {}).get("Size")
        if size is None:
            raise v.constraint(None, "ephemeralStorage.size", "Member must not be null")
        v.check_ephemeral(size, settings)
        conf["EphemeralStorage"] = size
    if "SnapStart" in request:
        apply_on = (request["SnapStart"] or {}).get("ApplyOn") or "None"
        if apply_on not in ("PublishedVersions", "None"):
            raise v.constraint(
                apply_on, "snapStart.applyOn", "Member must satisfy enum value set: [PublishedVersions, None]"
            )
        conf["SnapStartApplyOn"] = apply_on
    if "DeadLetterConfig" in request:  # issue 15: an SQS queue (or SNS topic ARN, stored only)
        target = (request["DeadLetterConfig"] or {}).get("TargetArn") or ""
        v.check_pattern(target, r"(arn:(aws[a-zA-Z-]*)?:(sqs|sns):[a-z0-9-]+:\d{12}:[\w.-]+)?",
                        "deadLetterConfig.targetArn", max_len=1024)
        conf["DeadLetterTargetArn"] = target or None
    if "LoggingConfig" in request:
        incoming = {k: x for k, x in (request["LoggingConfig"] or {}).items() if x is not None}
        merged = {**conf.get("LoggingConfig", {}), **incoming}
        if merged.get("LogFormat", "Text") == "Text":
            # Back to Text drops the levels only JSON carries (unless this request sets them: an error).
            for key in ("ApplicationLogLevel", "SystemLogLevel"):
                if key not in incoming:
                    merged.pop(key, None)
        v.check_logging(merged)
        conf["LoggingConfig"] = merged
    if "DurableConfig" in request:  # durable functions (issue 18)
        conf["DurableConfig"] = v.check_durable_config(request["DurableConfig"] or {}, base is None, conf)
    return conf
