"""The plan: what a deploy creates, updates and deletes, from the service as described (ServiceSpec + built
packages) and the server's current state (RemoteState). Pure: it calls nothing; `cli/deployer.py` reads the
state and applies the plan. Unchanged code is recognised by CodeSha256 and unchanged configuration key by key,
so a second deploy of the same files plans nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nimbus.project.model import LAYER_REF, FunctionSpec, LayerSpec, ServiceSpec
from nimbus.project.package import Package

LIVE = "live"
SERVICE_TAG = "nimbus:service"
STAGE_TAG = "nimbus:stage"
SCHEDULE_ROLE = "arn:aws:iam::000000000000:role/nimbus-scheduler"


@dataclass
class RemoteFunction:
    """A function as the server has it: GetFunction's answer, its `live` alias and its published versions."""

    name: str
    config: dict[str, Any]
    tags: dict[str, str]
    concurrency: int | None
    alias: dict[str, Any] | None
    versions: list[dict[str, Any]]
    url: dict[str, Any] | None = None
    invoke_config: dict[str, Any] | None = None
    provisioned: int | None = None  # on the live alias (read only for functions that ask for it)


@dataclass
class RemoteState:
    """What the server runs for one service and stage. `schedules`/`mappings` are None when the server has no
    such API."""

    functions: dict[str, RemoteFunction]
    schedules: dict[str, dict[str, Any]] | None
    mappings: dict[str, list[dict[str, Any]]] | None
    http_api: RemoteHttpApi | None = None  # the service's HTTP API in this stage, if deployed
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # layer name -> its newest version


@dataclass
class RemoteHttpApi:
    """The service's HTTP API as apigatewayv2 returns it: the API, its routes and integrations."""

    api: dict[str, Any]
    routes: list[dict[str, Any]]
    integrations: list[dict[str, Any]]

    def route_targets(self) -> dict[str, tuple[str, str]]:
        """routeKey -> (function name, payload version) as deployed."""
        by_id = {i["integrationId"]: i for i in self.integrations}
        out: dict[str, tuple[str, str]] = {}
        for route in self.routes:
            integration = by_id.get(str(route.get("target", "")).removeprefix("integrations/"))
            if integration is not None:
                uri = str(integration.get("integrationUri", ""))
                name = uri.split(":function:", 1)[-1].split(":", 1)[0]
                out[route["routeKey"]] = (name, str(integration.get("payloadFormatVersion", "2.0")))
        return out


@dataclass
class FunctionChange:
    """One function's change. `action` is create, update, alias (only the live alias moves) or delete."""

    action: str
    name: str
    spec: FunctionSpec | None = None
    package: Package | None = None
    code: bool = False
    config_keys: list[str] = field(default_factory=list)
    publish: bool = False
    alias_version: str | None = None  # an existing version the alias moves to (when not publishing)
    tags: bool = False
    concurrency: bool = False
    url: bool = False
    destinations: bool = False
    provisioned: bool = False

    def summary(self) -> str:
        parts: list[str] = []
        if self.code:
            parts.append("code")
        parts += self.config_keys
        for flag, label in ((self.tags, "tags"), (self.concurrency, "reserved concurrency"), (self.url, "url"),
                            (self.destinations, "destinations"), (self.provisioned, "provisioned concurrency")):
            if flag:
                parts.append(label)
        if self.alias_version:
            parts.append(f"alias {LIVE} -> version {self.alias_version}")
        return ", ".join(parts)


@dataclass
class EventChange:
    """A schedule (Scheduler API) or an event source mapping to create, update or delete."""

    action: str
    kind: str  # schedule | mapping | http-api
    name: str  # schedule name, queue ARN for a mapping, API name for an HTTP API
    function: str
    body: dict[str, Any] = field(default_factory=dict)
    current: dict[str, Any] | None = None


@dataclass
class LayerChange:
    """A new version of one of the service's own layers (its content changed, or it has none yet)."""

    layer: LayerSpec
    package: Package


@dataclass
class Plan:
    """Everything one deploy changes, in the order it is applied (layers first, deletions last)."""

    service: ServiceSpec
    functions: list[FunctionChange]
    events: list[EventChange]
    unchanged: list[str]
    layers: list[LayerChange] = field(default_factory=list)
    layer_arns: dict[str, str] = field(default_factory=dict)  # layer key -> version ARN, for unchanged layers

    @property
    def empty(self) -> bool:
        return not self.functions and not self.events and not self.layers


def resolve_layers(layers: list[str], arns: dict[str, str]) -> list[str]:
    """A function's layer list with `layer:<key>` entries replaced by the version ARNs known so far."""
    return [arns.get(entry.removeprefix(LAYER_REF), entry) if entry.startswith(LAYER_REF) else entry
            for entry in layers]


def desired_config(spec: FunctionSpec, layer_arns: dict[str, str] | None = None) -> dict[str, Any]:
    """The function's configuration in Lambda's shape (UpdateFunctionConfiguration's keys), its own layers
    resolved through `layer_arns`."""
    return {
        "Runtime": spec.runtime, "Handler": spec.handler, "MemorySize": spec.memory, "Timeout": spec.timeout,
        "Description": spec.description, "Environment": {"Variables": spec.environment},
        "Layers": resolve_layers(spec.layers, layer_arns or {}),
        "Role": spec.role, "SnapStart": {"ApplyOn": "PublishedVersions" if spec.snap_start else "None"},
    }


def current_config(config: dict[str, Any]) -> dict[str, Any]:
    """GetFunctionConfiguration's answer reduced to the keys `desired_config` sets."""
    return {
        "Runtime": config.get("Runtime"), "Handler": config.get("Handler"), "MemorySize": config.get("MemorySize"),
        "Timeout": config.get("Timeout"), "Description": config.get("Description") or "",
        "Environment": {"Variables": (config.get("Environment") or {}).get("Variables") or {}},
        "Layers": [layer["Arn"] for layer in config.get("Layers") or []], "Role": config.get("Role"),
        "SnapStart": {"ApplyOn": (config.get("SnapStart") or {}).get("ApplyOn") or "None"},
    }


def desired_tags(service: ServiceSpec, spec: FunctionSpec) -> dict[str, str]:
    return {**spec.tags, SERVICE_TAG: service.service, STAGE_TAG: service.stage}


def desired_invoke_config(spec: FunctionSpec) -> dict[str, Any] | None:
    if not spec.destinations:
        return None
    names = {"onSuccess": "OnSuccess", "onFailure": "OnFailure"}
    return {names[k]: {"Destination": v} for k, v in spec.destinations.items()}


def schedule_name(spec: FunctionSpec, index: int) -> str:
    """`<function name>-schedule-<n>`, cut to the Scheduler's 64 characters."""
    suffix = f"-schedule-{index + 1}"
    return spec.name[: 64 - len(suffix)] + suffix


def _published_with(remote: RemoteFunction, sha: str) -> str | None:
    found = [v for v in remote.versions if v.get("CodeSha256") == sha and v["Version"] != "$LATEST"]
    return max(found, key=lambda v: int(v["Version"]))["Version"] if found else None


def make(service: ServiceSpec, packages: dict[str, Package], state: RemoteState,
         layer_packages: dict[str, Package] | None = None) -> Plan:
    """The plan turning `state` into `service`."""
    layer_changes: list[LayerChange] = []
    layer_arns: dict[str, str] = {}
    for layer in service.layers:
        package = (layer_packages or {})[layer.key]
        newest = state.layers.get(layer.name)
        if newest is not None and (newest.get("Content") or {}).get("CodeSha256") == package.sha256:
            layer_arns[layer.key] = newest["LayerVersionArn"]
        else:
            layer_changes.append(LayerChange(layer, package))
    changes: list[FunctionChange] = []
    unchanged: list[str] = []
    for spec in service.functions:
        package = packages[spec.name]
        remote = state.functions.get(spec.name)
        if remote is None:
            changes.append(FunctionChange("create", spec.name, spec, package, code=True, publish=True,
                                          url=spec.url is not None, destinations=bool(spec.destinations),
                                          concurrency=spec.reserved_concurrency is not None,
                                          provisioned=bool(spec.provisioned_concurrency)))
            continue
        change = FunctionChange("update", spec.name, spec, package)
        change.code = remote.config.get("CodeSha256") != package.sha256
        want, have = desired_config(spec, layer_arns), current_config(remote.config)
        change.config_keys = [k for k in want if want[k] != have[k]]
        change.tags = desired_tags(service, spec) != remote.tags
        change.concurrency = spec.reserved_concurrency != remote.concurrency
        change.url = _url_differs(spec.url, remote.url)
        change.destinations = _invoke_config_differs(desired_invoke_config(spec), remote.invoke_config)
        change.provisioned = bool(spec.provisioned_concurrency) and spec.provisioned_concurrency != remote.provisioned
        change.publish = change.code or bool(change.config_keys)
        if not change.publish:
            latest = _published_with(remote, package.sha256)
            alias = remote.alias
            if latest is None:
                change.publish = True
            elif alias is None or alias.get("FunctionVersion") != latest or _weights(alias):
                change.alias_version = latest
        if (change.publish or change.alias_version or change.tags or change.concurrency or change.url
                or change.destinations or change.provisioned):
            changes.append(change)
        else:
            unchanged.append(spec.name)
    wanted = {spec.name for spec in service.functions}
    changes += [FunctionChange("delete", name) for name in sorted(state.functions) if name not in wanted]
    return Plan(service, changes, _events(service, state) + _http_api(service, state), unchanged, layer_changes,
                layer_arns)


# The framework's CORS defaults for `httpApi.cors: true`.
_CORS_HEADERS = ["Content-Type", "X-Amz-Date", "Authorization", "X-Api-Key", "X-Amz-Security-Token",
                 "X-Amz-User-Agent", "X-Amzn-Trace-Id"]
_CORS_METHODS = ["OPTIONS", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


def http_api_name(service: ServiceSpec) -> str:
    """`<stage>-<service>`, as the framework names its HTTP API."""
    return f"{service.stage}-{service.service}"


def http_api_cors(service: ServiceSpec) -> dict[str, Any] | None:
    """provider.httpApi.cors as an apigatewayv2 corsConfiguration."""
    cors = service.cors
    if not cors:
        return None
    if cors is True:
        return {"allowOrigins": ["*"], "allowHeaders": _CORS_HEADERS, "allowMethods": _CORS_METHODS}
    assert isinstance(cors, dict)
    names = {"allowedOrigins": "allowOrigins", "allowedHeaders": "allowHeaders", "allowedMethods": "allowMethods",
             "allowCredentials": "allowCredentials", "exposedResponseHeaders": "exposeHeaders", "maxAge": "maxAge"}
    out = {names[k]: v for k, v in cors.items() if k in names}
    out.setdefault("allowOrigins", ["*"])
    out.setdefault("allowHeaders", _CORS_HEADERS)
    out.setdefault("allowMethods", _CORS_METHODS)
    return out


def desired_routes(service: ServiceSpec) -> dict[str, tuple[str, str]]:
    """routeKey -> (function name, payload version) for every httpApi/http event."""
    out: dict[str, tuple[str, str]] = {}
    for spec in service.functions:
        for route in spec.routes:
            key = "$default" if route.method == "$default" else f"{route.method} {route.path}"
            out[key] = (spec.name, route.payload)
    return out


def _http_api(service: ServiceSpec, state: RemoteState) -> list[EventChange]:
    routes = desired_routes(service)
    have = state.http_api
    name = http_api_name(service)
    if not routes:
        return [EventChange("delete", "http-api", name, "", current={"apiId": have.api["apiId"]})] if have else []
    body = {"routes": routes, "cors": http_api_cors(service)}
    if have is None:
        return [EventChange("create", "http-api", name, "", body)]
    if have.route_targets() != routes or have.api.get("corsConfiguration") != body["cors"]:
        return [EventChange("update", "http-api", name, "", body, {"apiId": have.api["apiId"]})]
    return []


def _weights(alias: dict[str, Any]) -> dict[str, float]:
    return dict((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})


def _url_differs(want: dict[str, Any] | None, have: dict[str, Any] | None) -> bool:
    if want is None or have is None:
        return (want is None) != (have is None)
    if want.get("AuthType") != have.get("AuthType"):
        return True
    if want.get("InvokeMode", "BUFFERED") != have.get("InvokeMode", "BUFFERED"):
        return True
    return _cors(want.get("Cors")) != _cors(have.get("Cors"))


def _cors(cors: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (cors or {}).items() if v not in (None, [], False, 0)}


def _invoke_config_differs(want: dict[str, Any] | None, have: dict[str, Any] | None) -> bool:
    if want is None:
        return False  # never configured by the project file: left alone
    have_dest = (have or {}).get("DestinationConfig") or {}

    def same(target: str, deployed: str | None) -> bool:  # a bare name is a function of this service
        return deployed == target or (not target.startswith("arn:") and bool(deployed)
                                      and str(deployed).endswith(f":function:{target}"))

    return not all(same(v["Destination"], (have_dest.get(k) or {}).get("Destination")) for k, v in want.items())


def _events(service: ServiceSpec, state: RemoteState) -> list[EventChange]:
    out: list[EventChange] = []
    wanted_schedules: dict[str, tuple[FunctionSpec, dict[str, Any]]] = {}
    for spec in service.functions:
        for i, schedule in enumerate(spec.schedules):
            target: dict[str, Any] = {"Arn": f"{{arn:{spec.name}}}", "RoleArn": SCHEDULE_ROLE}
            if schedule.input is not None:
                target["Input"] = schedule.input
            wanted_schedules[schedule_name(spec, i)] = (spec, {
                "ScheduleExpression": schedule.expression, "State": "ENABLED" if schedule.enabled else "DISABLED",
                "FlexibleTimeWindow": {"Mode": "OFF"}, "Target": target,
                "Description": f"{service.service} {service.stage} {spec.key}",
            })
    current = state.schedules or {}
    for name, (spec, body) in wanted_schedules.items():
        have = current.get(name)
        if have is None:
            out.append(EventChange("create", "schedule", name, spec.name, body))
        elif (have.get("ScheduleExpression"), have.get("State"), (have.get("Target") or {}).get("Input")) != (
                body["ScheduleExpression"], body["State"], body["Target"].get("Input")):
            out.append(EventChange("update", "schedule", name, spec.name, body, have))
    out += [EventChange("delete", "schedule", name, "", current=have) for name, have in sorted(current.items())
            if name not in wanted_schedules]
    mappings = state.mappings or {}
    for spec in service.functions:
        have_all = {m["EventSourceArn"]: m for m in mappings.get(spec.name, [])}
        for queue in spec.queues:
            wanted: dict[str, Any] = {"EventSourceArn": queue.arn, "FunctionName": f"{spec.name}:{LIVE}",
                                    "BatchSize": queue.batch_size, "Enabled": queue.enabled}
            if queue.maximum_batching_window is not None:
                wanted["MaximumBatchingWindowInSeconds"] = queue.maximum_batching_window
            if queue.function_response_types:
                wanted["FunctionResponseTypes"] = list(queue.function_response_types)
            have = have_all.pop(queue.arn, None)
            if have is None:
                out.append(EventChange("create", "mapping", queue.arn, spec.name, wanted))
            elif have.get("BatchSize") != queue.batch_size or (have.get("State") in ("Disabled", "Disabling")) == \
                    queue.enabled:
                out.append(EventChange("update", "mapping", queue.arn, spec.name, wanted, have))
        out += [EventChange("delete", "mapping", arn, spec.name, current=m) for arn, m in have_all.items()]
    for name, found in mappings.items():
        if name not in {s.name for s in service.functions}:
            out += [EventChange("delete", "mapping", m["EventSourceArn"], name, current=m) for m in found]
    return out
