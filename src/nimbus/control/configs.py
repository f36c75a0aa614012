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
    if base is None:
        conf["PackageType"] = request.get("PackageType") or "Zip"
        if conf["PackageType"] not in ("Zip", "Image"):
            raise v.constraint(conf["PackageType"], "packageType", "Member must satisfy enum value set: [Zip, Image]")
    if conf.get("PackageType") == "Image":  # container images (issue 19): ImageConfig instead of these
        return apply_image_request(request, conf, settings, resolve_layers, creating=base is None)
    if "ImageConfig" in request:
        raise InvalidParameterValue("ImageConfig is only supported for functions with PackageType Image.")
    if not conf.get("Runtime") or not conf.get("Handler"):
        raise InvalidParameterValue(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages."
        )
    if "Handler" in request or "Runtime" in request:
        v.check_handler(conf["Handler"], conf["Runtime"])
    return apply_common(request, conf, settings, resolve_layers, creating=base is None)


def apply_image_request(
    request: dict[str, Any],
    conf: dict[str, Any],
    settings: Settings,
    resolve_layers: Callable[[list[str]], dict[str, dict[str, Any]]] | None,
    creating: bool = False,
) -> dict[str, Any]:
    """apply_request for a PackageType Image function: no runtime, handler or layers (as on AWS: the image
    holds them), and ImageConfig's overrides of the image's ENTRYPOINT, CMD and WORKDIR."""
    for key, what in (("Runtime", "Runtime"), ("Handler", "Handler")):
        if request.get(key):
            raise InvalidParameterValue(f"{what} is not supported for functions with PackageType Image: "
                                        "the image's ENTRYPOINT and CMD (or ImageConfig) say how it starts.")
    if request.get("Layers"):
        raise InvalidParameterValue("Layers are not supported for functions with PackageType Image.")
    if ((request.get("SnapStart") or {}).get("ApplyOn") or "None") != "None":
        raise InvalidParameterValue("SnapStart is not supported for functions with PackageType Image.")
    if "ImageConfig" in request:
        incoming = dict(request["ImageConfig"] or {})
        image_config: dict[str, Any] = {}
        for key in ("EntryPoint", "Command"):
            if incoming.get(key) is not None:
                values = [str(x) for x in incoming[key]]
                if len(values) > 1500:
                    raise v.constraint(values, f"imageConfig.{key[0].lower()}{key[1:]}",
                                       "Member must have length less than or equal to 1500")
                image_config[key] = values
        if incoming.get("WorkingDirectory") is not None:
            workdir = str(incoming["WorkingDirectory"])
            if len(workdir) > 1000:
                raise v.constraint(workdir, "imageConfig.workingDirectory",
                                   "Member must have length less than or equal to 1000")
            image_config["WorkingDirectory"] = workdir
        conf["ImageConfig"] = image_config
    return apply_common({k: x for k, x in request.items() if k != "Layers"}, conf, settings, resolve_layers,
                        creating=creating)


def apply_common(
    request: dict[str, Any],
    conf: dict[str, Any],
    settings: Settings,
    resolve_layers: Callable[[list[str]], dict[str, dict[str, Any]]] | None,
    creating: bool = False,
) -> dict[str, Any]:
    """The fields Zip and Image functions share (`creating`: CreateFunction rather than an update)."""
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
        conf["DurableConfig"] = v.check_durable_config(request["DurableConfig"] or {}, creating, conf)
    return conf
