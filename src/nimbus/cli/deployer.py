"""Deploying a project over the HTTP API: read what the server runs for a service and stage, apply a plan
(functions, their `live` alias, URLs, concurrency, destinations, schedules, event source mappings), undo what a
failed deploy changed, remove a service, list its deployments and roll back. It speaks only the public APIs
(Lambda, Scheduler) like any client.

Deployment history lives in the server, in the published versions themselves: each version a deploy publishes
carries `nimbus deploy #N by WHO at WHEN` as its description (Lambda keeps it with the version's CodeSha256 and
date), so `deployments` and `rollback` need no table of their own and see deploys made from any machine."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from nimbus.cli.client import ApiError, LambdaClient
from nimbus.project.model import ServiceSpec
from nimbus.project.plan import (
    LIVE,
    SERVICE_TAG,
    STAGE_TAG,
    EventChange,
    FunctionChange,
    Plan,
    RemoteFunction,
    RemoteHttpApi,
    RemoteState,
    desired_config,
    desired_invoke_config,
    desired_routes,
    desired_tags,
    http_api_name,
)

FN = "/2015-03-31/functions"
ESM = "/2015-03-31/event-source-mappings/"
_RECORD = re.compile(r"^nimbus deploy #(?P<seq>\d+) by (?P<who>\S+) at (?P<when>\S+)(?P<canary> canary)?")


class DeployFailed(Exception):
    """A deploy stopped on an error; `undone` says what was put back, `left` what could not be."""

    def __init__(self, cause: ApiError, step: str, undone: list[str], left: list[str]) -> None:
        super().__init__(f"{step}: {cause.error_type}: {cause.message}")
        self.cause = cause
        self.step = step
        self.undone = undone
        self.left = left


class MissingApi(Exception):
    """The server has no API for something the project file needs (e.g. schedules without the Scheduler)."""


def _missing(exc: ApiError) -> bool:
    """The server does not serve this API: an unknown operation, or a path it signs for another service."""
    if exc.status == 404 and exc.error_type == "UnknownOperationException":
        return True
    return exc.error_type == "InvalidSignatureException" and "scoped to correct service" in exc.message


def _not_found(exc: ApiError) -> bool:
    return exc.status == 404 and exc.error_type == "ResourceNotFoundException"


@dataclass
class Deployment:
    """One deploy of a stage as the versions it published record it."""

    seq: int
    who: str
    when: str
    canary: bool
    versions: dict[str, tuple[str, str]] = field(default_factory=dict)  # function -> (version, CodeSha256)


class Deployer:
    """Reads and changes one server's functions for a service and stage."""

    def __init__(self, client: LambdaClient, log: Callable[[str], None] = lambda _: None) -> None:
        self.client = client
        self.log = log

    # -- reading ----------------------------------------------------------------------------------------------

    def _get(self, path: str, **params: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.client.json("GET", path, params=params)
            return found
        except ApiError as exc:
            if _not_found(exc):
                return None
            raise

    def _pages(self, path: str, key: str, **params: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            page = self.client.json("GET", path, params={**params, **({"Marker": marker} if marker else {})})
            out += page.get(key, [])
            marker = page.get("NextMarker")
            if not marker:
                return out

    def function(self, name: str, invoke_config: bool = True, provisioned: bool = False) -> RemoteFunction | None:
        """One function's state, or None when it does not exist (its event-invoke config only when asked:
        the plan compares it only for functions with `destinations`)."""
        got = self._get(f"{FN}/{quote(name)}")
        if got is None:
            return None
        return RemoteFunction(
            name=name, config=got["Configuration"], tags=dict(got.get("Tags") or {}),
            concurrency=(got.get("Concurrency") or {}).get("ReservedConcurrentExecutions"),
            alias=self._get(f"{FN}/{quote(name)}/aliases/{LIVE}"),
            versions=[v for v in self._pages(f"{FN}/{quote(name)}/versions", "Versions")
                      if v["Version"] != "$LATEST"],
            url=self._get(f"/2021-10-31/functions/{quote(name)}/url", Qualifier=LIVE),
            invoke_config=self._get(f"/2019-09-25/functions/{quote(name)}/event-invoke-config", Qualifier=LIVE)
            if invoke_config else None,
            provisioned=(self._get(f"/2019-09-30/functions/{quote(name)}/provisioned-concurrency",
                                   Qualifier=LIVE) or {}).get("RequestedProvisionedConcurrentExecutions")
            if provisioned else None,
        )

    def owned(self, service: str, stage: str, also: tuple[str, ...] = (),
              invoke_configs: frozenset[str] = frozenset(),
              provisioned: frozenset[str] = frozenset()) -> dict[str, RemoteFunction]:
        """The functions of `service` in `stage`: those tagged with it, looked for under its name prefix, plus
        `also` (names the project file gives)."""
        prefix = f"{service}-{stage}-"
        names = [f["FunctionName"] for f in self._pages(FN, "Functions") if f["FunctionName"].startswith(prefix)]
        out: dict[str, RemoteFunction] = {}
        wanted = list(dict.fromkeys([*names, *also]))
        # Five reads per function, independent of each other: a few at a time (the server answers in
        # parallel; a 10-function service is read in a fraction of the sequential time).
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(lambda n: self.function(n, n in invoke_configs, n in provisioned), wanted))
        for name, remote in zip(wanted, found, strict=True):
            if remote is None:
                continue
            tagged = remote.tags.get(SERVICE_TAG) == service and remote.tags.get(STAGE_TAG) == stage
            if tagged or name in also:
                out[name] = remote
        return out

    def state(self, service: ServiceSpec) -> RemoteState:
        """Everything the plan compares against. Raises MissingApi when the file needs an API the server lacks."""
        functions = self.owned(service.service, service.stage, tuple(f.name for f in service.functions),
                               frozenset(f.name for f in service.functions if f.destinations),
                               frozenset(f.name for f in service.functions if f.provisioned_concurrency))
        schedules: dict[str, dict[str, Any]] | None = {}
        try:
            listed = self.client.json("GET", "/schedules", params={"NamePrefix": service.prefix})
            for item in listed.get("Schedules", []):
                got = self._get(f"/schedules/{quote(item['Name'])}")
                if got is not None:
                    schedules[item["Name"]] = got  # type: ignore[index]
        except ApiError as exc:
            if not _missing(exc):
                raise
            schedules = None
        mappings: dict[str, list[dict[str, Any]]] | None = {}
        try:
            if not functions and any(spec.queues for spec in service.functions):
                self.client.json("GET", ESM, params={"MaxItems": "1"})  # is the API there at all?
            for name in functions:
                # ours target the `live` alias; AWS filters a qualified name exactly, so ask for both forms
                by_id = {m["UUID"]: m for fn in (f"{name}:{LIVE}", name)
                         for m in self._pages(ESM, "EventSourceMappings", FunctionName=fn)}
                if by_id:
                    mappings[name] = list(by_id.values())  # type: ignore[index]
        except ApiError as exc:
            if not _missing(exc):
                raise
            mappings = None
        http_api: RemoteHttpApi | None = None
        try:
            http_api = self.http_api(service)
        except ApiError as exc:
            if not _missing(exc):
                raise
            if desired_routes(service):
                raise MissingApi("the service has `httpApi`/`http` events but this server has no apigatewayv2 API "
                                 "(CreateApi): nothing was deployed") from None
        for spec in service.functions:
            if spec.schedules and schedules is None:
                raise MissingApi(f"{spec.key} has `schedule` events but this server has no EventBridge Scheduler "
                                 "API (CreateSchedule): nothing was deployed")
            if spec.queues and mappings is None:
                raise MissingApi(f"{spec.key} has `sqs` events but this server has no event source mappings API "
                                 "(CreateEventSourceMapping): nothing was deployed")
        layers: dict[str, dict[str, Any]] = {}
        for layer in service.layers:
            versions = self._get(f"/2018-10-31/layers/{quote(layer.name)}/versions")
            found = (versions or {}).get("LayerVersions") or []
            if found:
                newest = max(found, key=lambda v: int(v["Version"]))
                got = self._get(f"/2018-10-31/layers/{quote(layer.name)}/versions/{newest['Version']}")
                if got is not None:
                    layers[layer.name] = got
        return RemoteState(functions, schedules, mappings, http_api, layers)

    def http_api(self, service: ServiceSpec) -> RemoteHttpApi | None:
        """The service's HTTP API in its stage (named `<stage>-<service>` and tagged with the service)."""
        apis = self.client.json("GET", "/v2/apis").get("items", [])
        found = next((a for a in apis if a["name"] == http_api_name(service)
                      and (a.get("tags") or {}).get(SERVICE_TAG) == service.service), None)
        if found is None:
            return None
        base = f"/v2/apis/{found['apiId']}"
        return RemoteHttpApi(found, self.client.json("GET", f"{base}/routes").get("items", []),
                             self.client.json("GET", f"{base}/integrations").get("items", []))

    # -- history ----------------------------------------------------------------------------------------------

    @staticmethod
    def deployments(functions: dict[str, RemoteFunction]) -> list[Deployment]:
        """Deploys of the stage, oldest first, from the descriptions of the versions they published."""
        found: dict[int, Deployment] = {}
        for name, remote in functions.items():
            for version in remote.versions:
                match = _RECORD.match(version.get("Description") or "")
                if match is None:
                    continue
                seq = int(match["seq"])
                entry = found.setdefault(seq, Deployment(seq, match["who"], match["when"], bool(match["canary"])))
                entry.versions[name] = (version["Version"], version.get("CodeSha256", ""))
        return [found[k] for k in sorted(found)]

    @staticmethod
    def current(functions: dict[str, RemoteFunction], history: list[Deployment]) -> int | None:
        """The newest deploy any `live` alias serves (fully or as a canary)."""
        served: set[tuple[str, str]] = set()
        for name, remote in functions.items():
            if remote.alias:
                served.add((name, remote.alias["FunctionVersion"]))
                for version in ((remote.alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}):
                    served.add((name, version))
        seqs = [d.seq for d in history if any((n, v) in served for n, (v, _) in d.versions.items())]
        return max(seqs) if seqs else None

    # -- applying ---------------------------------------------------------------------------------------------

    def apply(self, plan: Plan, state: RemoteState, who: str, canary: float | None = None) -> int | None:
        """Apply `plan` (made from `state`); returns the deploy number recorded (None when nothing was
        published). On an error, undo what this deploy changed (created functions deleted, aliases moved back,
        schedules and mappings put back) and raise DeployFailed; deletions run last, so a failure never leaves a
        service half removed."""
        seq = max((d.seq for d in self.deployments(state.functions)), default=0) + 1
        record = f"nimbus deploy #{seq} by {who} at {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}" + (
            " canary" if canary else "")
        undo: list[tuple[str, Callable[[], None]]] = []
        arns: dict[str, str] = {}
        published = False
        step = ""
        layer_arns = dict(plan.layer_arns)
        try:
            for layer_change in plan.layers:
                layer = layer_change.layer
                step = f"publish layer {layer.name}"
                body: dict[str, Any] = {"Content": {"ZipFile": base64.b64encode(layer_change.package.data).decode()},
                                        "Description": layer.description or record}
                if layer.compatible_runtimes:
                    body["CompatibleRuntimes"] = layer.compatible_runtimes
                made = self.client.json("POST", f"/2018-10-31/layers/{quote(layer.name)}/versions", json=body)
                layer_arns[layer.key] = made["LayerVersionArn"]
                path = f"/2018-10-31/layers/{quote(layer.name)}/versions/{made['Version']}"
                undo.append((f"deleted layer version {made['LayerVersionArn']}",
                             lambda path=path: self._quiet_delete(path)))  # type: ignore[misc]
            for change in plan.functions:
                if change.action == "delete":
                    continue
                step = f"{change.action} function {change.name}"
                published |= self._function(plan, change, state.functions.get(change.name), record, canary,
                                            undo, arns, layer_arns)
            for change in plan.functions:
                if change.destinations and change.action != "delete":
                    step = f"destinations of {change.name}"
                    self._destinations(change, arns)
            for event in [*(e for e in plan.events if e.action != "delete"),
                          *(e for e in plan.events if e.action == "delete")]:
                step = f"{event.action} {event.kind} {event.name}"
                if event.kind == "http-api":
                    self._http_api_change(event, arns, plan.service.stage, plan.service.service, undo)
                else:
                    self._event(event, arns, undo)
            for change in plan.functions:
                if change.action == "delete":
                    step = f"delete function {change.name}"
                    self.client.request("DELETE", f"{FN}/{quote(change.name)}")
        except ApiError as exc:
            undone: list[str] = []
            left: list[str] = []
            for label, action in reversed(undo):
                try:
                    action()
                    undone.append(label)
                except ApiError as again:
                    left.append(f"{label} ({again.error_type}: {again.message})")
            raise DeployFailed(exc, step, undone, left) from None
        return seq if published else None

    def _function(self, plan: Plan, change: FunctionChange, remote: RemoteFunction | None, record: str,
                  canary: float | None, undo: list[tuple[str, Callable[[], None]]], arns: dict[str, str],
                  layer_arns: dict[str, str]) -> bool:
        spec, package = change.spec, change.package
        assert spec is not None and package is not None
        name = quote(change.name)
        if change.action == "create":
            body = {"FunctionName": change.name, "Code": {"ZipFile": base64.b64encode(package.data).decode()},
                    "Publish": False, "Architectures": [spec.architecture],
                    "Tags": desired_tags(plan.service, spec), **desired_config(spec, layer_arns)}
            created = self.client.json("POST", FN, json=body)
            undo.append((f"deleted function {change.name}",
                         lambda: self._quiet_delete(f"{FN}/{name}")))
            arns[change.name] = created["FunctionArn"]
            self._wait(name)
        else:
            arns[change.name] = remote.config["FunctionArn"] if remote else ""
            if change.config_keys:
                want = desired_config(spec, layer_arns)
                self.client.json("PUT", f"{FN}/{name}/configuration", json={k: want[k] for k in change.config_keys})
                self._wait(name)
            if change.code:
                self.client.json("PUT", f"{FN}/{name}/code",
                                 json={"ZipFile": base64.b64encode(package.data).decode()})
                self._wait(name)
            if change.tags:
                want_tags = desired_tags(plan.service, spec)
                arn = quote(arns[change.name], safe="")
                stale = [k for k in (remote.tags if remote else {}) if k not in want_tags]
                if stale:
                    self.client.request("DELETE", f"/2017-03-31/tags/{arn}",
                                        params=[("tagKeys", k) for k in stale])
                self.client.request("POST", f"/2017-03-31/tags/{arn}", json={"Tags": want_tags})
        target = change.alias_version
        if change.publish:
            version = self.client.json("POST", f"{FN}/{name}/versions",
                                       json={"Description": record, "CodeSha256": package.sha256})
            target = version["Version"]
        if target is not None:
            previous = remote.alias if remote else None
            alias: dict[str, Any] = {"FunctionVersion": target, "RoutingConfig": {"AdditionalVersionWeights": {}}}
            if canary and previous is not None and change.publish:
                alias = {"FunctionVersion": previous["FunctionVersion"],
                         "RoutingConfig": {"AdditionalVersionWeights": {target: canary}}}
            if previous is None:
                self.client.json("POST", f"{FN}/{name}/aliases", json={"Name": LIVE, **alias})
                if change.action != "create":
                    undo.append((f"deleted alias {change.name}:{LIVE}",
                                 lambda: self._quiet_delete(f"{FN}/{name}/aliases/{LIVE}")))
            else:
                self.client.json("PUT", f"{FN}/{name}/aliases/{LIVE}", json=alias)
                back = {"FunctionVersion": previous["FunctionVersion"],
                        "RoutingConfig": previous.get("RoutingConfig") or {"AdditionalVersionWeights": {}}}
                undo.append((f"moved alias {change.name}:{LIVE} back to version {previous['FunctionVersion']}",
                             lambda: self.client.json("PUT", f"{FN}/{name}/aliases/{LIVE}", json=back)))
        if change.concurrency:
            if spec.reserved_concurrency is None:
                self.client.request("DELETE", f"/2017-10-31/functions/{name}/concurrency")
            else:
                self.client.json("PUT", f"/2017-10-31/functions/{name}/concurrency",
                                 json={"ReservedConcurrentExecutions": spec.reserved_concurrency})
        if change.url:
            url_path = f"/2021-10-31/functions/{name}/url"
            had = remote.url if remote else None
            if spec.url is None:
                self.client.request("DELETE", url_path, params={"Qualifier": LIVE})
            elif had is None:
                self.client.json("POST", url_path, params={"Qualifier": LIVE}, json=spec.url)
            else:
                self.client.json("PUT", url_path, params={"Qualifier": LIVE}, json=spec.url)
            if spec.url is not None and spec.url.get("AuthType") == "NONE":
                self._public_url_permission(name)
        if change.provisioned:
            self.client.json("PUT", f"/2019-09-30/functions/{name}/provisioned-concurrency",
                             params={"Qualifier": LIVE},
                             json={"ProvisionedConcurrentExecutions": spec.provisioned_concurrency})
        return change.publish

    def _destinations(self, change: FunctionChange, arns: dict[str, str]) -> None:
        """After every function exists: a destination may be another function of the service."""
        assert change.spec is not None
        config = desired_invoke_config(change.spec) or {}
        for target in config.values():
            if not target["Destination"].startswith("arn:"):
                target["Destination"] = arns.get(target["Destination"]) or self._arn(target["Destination"])
        self.client.json("PUT", f"/2019-09-25/functions/{quote(change.name)}/event-invoke-config",
                         params={"Qualifier": LIVE}, json={"DestinationConfig": config})

    def _public_url_permission(self, name: str) -> None:
        """The resource policy a public (`AuthType NONE`) URL needs, as the framework adds it."""
        try:
            self.client.json("POST", f"{FN}/{name}/policy", params={"Qualifier": LIVE}, json={
                "StatementId": "FunctionURLAllowPublicAccess", "Action": "lambda:InvokeFunctionUrl",
                "Principal": "*", "FunctionUrlAuthType": "NONE"})
        except ApiError as exc:
            if exc.error_type != "ResourceConflictException":  # already there
                raise

    def _wait(self, name: str) -> None:
        """Until the function's last update is done (Lambda's State/LastUpdateStatus), at most 60 s."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            config = self.client.json("GET", f"{FN}/{name}/configuration")
            if config.get("State", "Active") != "Pending" and config.get("LastUpdateStatus",
                                                                         "Successful") != "InProgress":
                return
            time.sleep(0.05)

    def _quiet_delete(self, path: str) -> None:
        try:
            self.client.request("DELETE", path)
        except ApiError as exc:
            if not _not_found(exc):
                raise

    def _http_api_change(self, event: EventChange, arns: dict[str, str], stage: str, service: str,
                         undo: list[tuple[str, Callable[[], None]]]) -> None:
        if event.action == "delete":
            assert event.current is not None
            self._quiet_delete(f"/v2/apis/{event.current['apiId']}")
            return
        cors = event.body.get("cors")
        if event.action == "create":
            request: dict[str, Any] = {"name": event.name, "protocolType": "HTTP",
                                       "tags": {SERVICE_TAG: service, STAGE_TAG: stage}}
            if cors:
                request["corsConfiguration"] = cors
            api_id = self.client.json("POST", "/v2/apis", json=request)["apiId"]
            undo.append((f"deleted HTTP API {event.name}", lambda: self._quiet_delete(f"/v2/apis/{api_id}")))
            self.client.json("POST", f"/v2/apis/{api_id}/stages", json={"stageName": "$default", "autoDeploy": True})
            routes: list[dict[str, Any]] = []
            integrations: list[dict[str, Any]] = []
        else:
            assert event.current is not None
            api_id = event.current["apiId"]
            self.client.json("PATCH", f"/v2/apis/{api_id}", json={"corsConfiguration": cors or {}})
            routes = self.client.json("GET", f"/v2/apis/{api_id}/routes").get("items", [])
            integrations = self.client.json("GET", f"/v2/apis/{api_id}/integrations").get("items", [])
        base = f"/v2/apis/{api_id}"
        by_target: dict[tuple[str, str], str] = {}
        for integration in integrations:
            by_target.setdefault((integration["integrationUri"], integration["payloadFormatVersion"]),
                                 integration["integrationId"])
        wanted: dict[str, str] = {}
        for key, (function, payload) in event.body["routes"].items():
            uri = f"{arns.get(function) or self._arn(function)}:{LIVE}"
            if (uri, payload) not in by_target:
                made = self.client.json("POST", f"{base}/integrations", json={
                    "integrationType": "AWS_PROXY", "integrationUri": uri, "payloadFormatVersion": payload})
                by_target[(uri, payload)] = made["integrationId"]
            wanted[key] = f"integrations/{by_target[(uri, payload)]}"
        have = {r["routeKey"]: r for r in routes}
        for key, target in wanted.items():
            if key not in have:
                self.client.json("POST", f"{base}/routes", json={"routeKey": key, "target": target})
            elif have[key].get("target") != target:
                self.client.json("PATCH", f"{base}/routes/{have[key]['routeId']}", json={"target": target})
        for key, route in have.items():
            if key not in wanted:
                self._quiet_delete(f"{base}/routes/{route['routeId']}")
        used = set(wanted.values())
        for integration_id in set(by_target.values()):
            if f"integrations/{integration_id}" not in used:
                self._quiet_delete(f"{base}/integrations/{integration_id}")

    def _event(self, event: EventChange, arns: dict[str, str], undo: list[tuple[str, Callable[[], None]]]) -> None:
        if event.kind == "schedule":
            path = f"/schedules/{quote(event.name)}"
            if event.action == "delete":
                self.client.request("DELETE", path)
                return
            body = dict(event.body)
            arn = arns.get(event.function) or self._arn(event.function)
            body["Target"] = {**body["Target"], "Arn": f"{arn}:{LIVE}"}
            if event.action == "create":
                self.client.json("POST", path, json=body)
                undo.append((f"deleted schedule {event.name}", lambda: self._quiet_delete(path)))
            else:
                self.client.json("PUT", path, json=body)
                before = {k: v for k, v in (event.current or {}).items()
                          if k in ("ScheduleExpression", "State", "FlexibleTimeWindow", "Target", "Description")}
                undo.append((f"restored schedule {event.name}", lambda: self.client.json("PUT", path, json=before)))
            return
        if event.action == "create":
            created = self.client.json("POST", ESM, json=event.body)
            uuid = created["UUID"]
            undo.append((f"deleted the mapping from {event.name}", lambda: self._quiet_delete(f"{ESM}{uuid}")))
        elif event.action == "update":
            assert event.current is not None
            self.client.json("PUT", f"{ESM}{event.current['UUID']}",
                             json={k: v for k, v in event.body.items() if k != "EventSourceArn"})
        else:
            assert event.current is not None
            self._quiet_delete(f"{ESM}{event.current['UUID']}")

    def _arn(self, name: str) -> str:
        return str(self.client.json("GET", f"{FN}/{quote(name)}/configuration")["FunctionArn"])

    # -- removing and rolling back ----------------------------------------------------------------------------

    def remove(self, state: RemoteState) -> list[str]:
        """Delete the service's schedules, mappings and functions; returns what was deleted."""
        done: list[str] = []
        if state.http_api is not None:
            self._quiet_delete(f"/v2/apis/{state.http_api.api['apiId']}")
            done.append(f"HTTP API {state.http_api.api['name']}")
        for name in state.schedules or {}:
            self._quiet_delete(f"/schedules/{quote(name)}")
            done.append(f"schedule {name}")
        for found in (state.mappings or {}).values():
            for mapping in found:
                self._quiet_delete(f"{ESM}{mapping['UUID']}")
                done.append(f"mapping from {mapping['EventSourceArn']}")
        for name in state.functions:
            self._quiet_delete(f"{FN}/{quote(name)}")
            done.append(f"function {name}")
        for name, newest in state.layers.items():
            for version in range(1, int(newest["Version"]) + 1):
                self._quiet_delete(f"/2018-10-31/layers/{quote(name)}/versions/{version}")
            done.append(f"layer {name}")
        return done

    def move_aliases(self, targets: dict[str, str]) -> None:
        """Point each function's `live` alias at the given version, with no canary weights."""
        for name, version in targets.items():
            self.client.json("PUT", f"{FN}/{quote(name)}/aliases/{LIVE}",
                             json={"FunctionVersion": version, "RoutingConfig": {"AdditionalVersionWeights": {}}})


def rollback_targets(functions: dict[str, RemoteFunction], history: list[Deployment],
                     to: int) -> tuple[dict[str, str], list[str]]:
    """For deploy `to`: the version each function served right after it (its newest version from deploy `to`
    or earlier), and the functions that did not exist yet."""
    targets: dict[str, str] = {}
    missing: list[str] = []
    for name in functions:
        versions = [(d.seq, d.versions[name][0]) for d in history if d.seq <= to and name in d.versions]
        if versions:
            targets[name] = max(versions)[1]
        else:
            missing.append(name)
    return targets, missing
