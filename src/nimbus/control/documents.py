"""The JSON documents the Lambda API returns (function configuration, alias, policy), rendered from what
the registry stores. Stored configuration keeps only the fields a user sets; everything derived (ARNs,
state, defaults spelled out) is added here."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from nimbus.control import lifecycle
from nimbus.control.arn import function_arn

INTERNAL_PREFIX = "_"  # stored config keys starting with this never reach the client


def lambda_timestamp(epoch: float | None = None) -> str:
    """AWS's LastModified format: `2024-01-15T10:20:30.123+0000`."""
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


# The State of SnapStart versions whose snapshot is still being made or failed: handed to the Registry by the
# composition root (platform.py), called as (name, version, revision id) -> (State, StateReason,
# StateReasonCode) | None (None: Active).
VersionState = Callable[[str, str, str], tuple[str, str, str] | None]


def render_config(
    region: str,
    account: str,
    name: str,
    version: str,
    stored: dict[str, Any],
    revision_id: str,
    last_modified: str,
    arn_qualifier: str | None,
    version_state: VersionState | None = None,
    state: str | None = None,
    environment_given: bool = False,
) -> dict[str, Any]:
    """A FunctionConfiguration document. `arn_qualifier` qualifies FunctionArn (None: unqualified);
    `version_state` overrides State for SnapStart versions whose snapshot is not ready; `state` is the stored
    lifecycle value (control/lifecycle.py); `environment_given` keeps an empty Environment in the answer, as
    AWS does when the client sent one."""
    doc: dict[str, Any] = {
        "FunctionName": name,
        "FunctionArn": function_arn(region, account, name, arn_qualifier),
        "Runtime": stored.get("Runtime"),
        "Role": stored.get("Role"),
        "Handler": stored.get("Handler"),
        "CodeSize": stored.get("CodeSize", 0),
        "Description": stored.get("Description", ""),
        "Timeout": stored.get("Timeout", 3),
        "MemorySize": stored.get("MemorySize", 128),
        "LastModified": last_modified,
        "CodeSha256": stored.get("CodeSha256", ""),
        "Version": version,
    }
    variables = stored.get("Environment")
    if variables or environment_given:
        doc["Environment"] = {"Variables": dict(variables or {})}
    if stored.get("DeadLetterTargetArn"):  # issue 15
        doc["DeadLetterConfig"] = {"TargetArn": stored["DeadLetterTargetArn"]}
    doc["TracingConfig"] = {"Mode": stored.get("TracingMode", "PassThrough")}
    doc["RevisionId"] = revision_id
    layers = stored.get("Layers") or []
    if layers:
        sizes = {c.get("Arn"): c.get("CodeSize", 0) for c in stored.get("LayerContents") or []}
        doc["Layers"] = [{"Arn": arn, "CodeSize": sizes.get(arn, 0)} for arn in layers]
    doc.update(lifecycle.state_fields(state))
    if stored.get("Runtime"):
        doc["RuntimeVersionConfig"] = {"RuntimeVersionArn": runtime_version_arn(region, stored["Runtime"])}
    doc.update(
        {
            "PackageType": "Zip",
            "Architectures": list(stored.get("Architectures") or ["x86_64"]),
            "EphemeralStorage": {"Size": stored.get("EphemeralStorage", 512)},
            "SnapStart": snap_start_response(stored, version),
            "LoggingConfig": logging_config(name, stored.get("LoggingConfig")),
        }
    )
    if stored.get("DurableConfig"):  # durable functions (issue 18)
        doc["DurableConfig"] = dict(stored["DurableConfig"])
    if version_state is not None and doc["SnapStart"]["OptimizationStatus"] == "On":
        override = version_state(name, version, revision_id)
        if override is not None:
            doc["State"], doc["StateReason"], doc["StateReasonCode"] = override
    return {k: v for k, v in doc.items() if v is not None}


def runtime_version_arn(region: str, runtime: str) -> str:
    """A stable runtime version ARN per runtime, in AWS's form `arn:aws:lambda:<region>::runtime:<64 hex>`
    (AWS names the exact build of the runtime; nimbus has one build per runtime and nimbus release line)."""
    digest = hashlib.sha256(f"nimbus-runtime:{runtime}".encode()).hexdigest()
    return f"arn:aws:lambda:{region}::runtime:{digest}"


def snap_start_response(stored: dict[str, Any], version: str) -> dict[str, str]:
    """SnapStartResponse: ApplyOn as configured; OptimizationStatus On only for a version published with
    PublishedVersions (its environments restore from the version's snapshot, see docs/coldstarts.md)."""
    apply_on = stored.get("SnapStartApplyOn", "None")
    on = apply_on == "PublishedVersions" and version != "$LATEST"
    return {"ApplyOn": apply_on, "OptimizationStatus": "On" if on else "Off"}


def logging_config(name: str, stored: dict[str, Any] | None) -> dict[str, Any]:
    """LoggingConfig with AWS's defaults filled in (JSON format implies INFO levels)."""
    conf = dict(stored or {})
    fmt = conf.get("LogFormat", "Text")
    out: dict[str, Any] = {"LogFormat": fmt}
    if fmt == "JSON":
        out["ApplicationLogLevel"] = conf.get("ApplicationLogLevel", "INFO")
        out["SystemLogLevel"] = conf.get("SystemLogLevel", "INFO")
    out["LogGroup"] = conf.get("LogGroup") or f"/aws/lambda/{name}"
    return out


def render_alias(
    region: str,
    account: str,
    function_name: str,
    alias: str,
    version: str,
    description: str,
    weights: dict[str, float] | None,
    revision_id: str,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "AliasArn": function_arn(region, account, function_name, alias),
        "Name": alias,
        "FunctionVersion": version,
        "Description": description,
    }
    if weights:
        doc["RoutingConfig"] = {"AdditionalVersionWeights": dict(weights)}
    doc["RevisionId"] = revision_id
    return doc


def principal_of(principal: str) -> str | dict[str, str]:
    """IAM's spelling of an AddPermission principal: a service, an account root, an ARN, or `*`."""
    if principal == "*":
        return "*"
    if principal.isdigit() and len(principal) == 12:
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if principal.startswith("arn:"):
        return {"AWS": principal}
    return {"Service": principal}


def statement(resource: str, request: dict[str, Any]) -> dict[str, Any]:
    """The policy statement AddPermission adds, as AWS writes it."""
    stmt: dict[str, Any] = {
        "Sid": request["StatementId"],
        "Effect": "Allow",
        "Principal": principal_of(request["Principal"]),
        "Action": request["Action"],
        "Resource": resource,
    }
    equals: dict[str, str] = {}
    if "SourceAccount" in request:
        equals["AWS:SourceAccount"] = request["SourceAccount"]
    if "EventSourceToken" in request:
        equals["lambda:EventSourceToken"] = request["EventSourceToken"]
    if "PrincipalOrgID" in request:
        equals["aws:PrincipalOrgID"] = request["PrincipalOrgID"]
    if "FunctionUrlAuthType" in request:
        equals["lambda:FunctionUrlAuthType"] = request["FunctionUrlAuthType"]
    condition: dict[str, Any] = {}
    if equals:
        condition["StringEquals"] = equals
    if "SourceArn" in request:
        condition["ArnLike"] = {"AWS:SourceArn": request["SourceArn"]}
    if request.get("InvokedViaFunctionUrl"):
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": "true"}
    if condition:
        stmt["Condition"] = condition
    return stmt


def policy_document(statements: list[dict[str, Any]]) -> str:
    """The resource policy as the JSON string GetPolicy returns."""
    return json.dumps({"Version": "2012-10-17", "Id": "default", "Statement": statements}, separators=(",", ":"))
