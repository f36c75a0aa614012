"""HTTP APIs (API Gateway HTTP API v2 semantics): APIs, routes (`METHOD /path/{param}`, `{proxy+}`, `ANY`,
`$default`), Lambda proxy integrations and stages, persisted in `http_apis` (one row per API, its parts in a
JSON document, the shapes `apigatewayv2` returns), and the per-request route match, cached in memory until an
API changes. Route selection follows AWS: the most specific route wins (literal segments before parameters
before greedy `{proxy+}`, a method before `ANY`), then `$default`."""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, String, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from nimbus.config import Settings
from nimbus.control.models import Base
from nimbus.errors import ApiBadRequest, ApiConflict, ApiNotFound

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_SEGMENT = re.compile(r"^\{([A-Za-z0-9_.-]+)(\+?)\}$")
CACHE_SECONDS = 5.0


class HttpApiRow(Base):
    """One HTTP API; `doc` holds {api, routes, integrations, stages} in apigatewayv2's shapes."""

    __tablename__ = "http_apis"

    api_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    doc: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)


def _id(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Where a request goes: the function (and qualifier), the payload version and the path parameters."""

    api_id: str
    route_key: str
    function_name: str
    qualifier: str | None
    payload_version: str
    timeout_ms: int
    path_parameters: dict[str, str]
    authorization_type: str
    cors: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class _CompiledRoute:
    method: str
    segments: tuple[str, ...]
    greedy: bool
    route_key: str
    integration: dict[str, Any] | None
    authorization_type: str
    rank: tuple[int, int, int, int]


@dataclass
class _CompiledApi:
    api_id: str
    stages: frozenset[str]
    routes: list[_CompiledRoute]
    default: _CompiledRoute | None
    cors: dict[str, Any] | None


def function_of(uri: str) -> tuple[str, str | None]:
    """(name, qualifier) of a Lambda integration URI: a function ARN (maybe qualified) or the API Gateway
    invocation URI around one (`arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/ARN/invocations`)."""
    if ":lambda:path/" in uri:
        uri = uri.split("/functions/", 1)[1].rsplit("/invocations", 1)[0]
    parts = uri.split(":")
    if uri.startswith("arn:") and len(parts) >= 7:
        return parts[6], parts[7] if len(parts) > 7 else None
    name, _, qualifier = uri.partition(":")
    return name, qualifier or None


def _parse_route_key(key: str) -> tuple[str, str]:
    if key == "$default":
        return "$default", ""
    method, sep, path = key.partition(" ")
    if not sep or method not in METHODS or not path.startswith("/"):
        raise ApiBadRequest(f"Invalid route key: {key!r}. Expected `METHOD /path` or `$default`.")
    segments = path.strip("/").split("/") if path != "/" else []
    for i, seg in enumerate(segments):
        m = _SEGMENT.match(seg) if seg.startswith("{") else None
        if seg.startswith("{") and m is None:
            raise ApiBadRequest(f"Invalid path parameter {seg!r} in route key {key!r}")
        if m is not None and m.group(2) and i != len(segments) - 1:
            raise ApiBadRequest(f"A greedy path parameter must be the last segment of {key!r}")
    return method, path


class HttpApis:
    """The HTTP APIs of this server. Thread-safe; API handlers call it from worker threads."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._lock = threading.Lock()
        # api id -> (when compiled, the API or None): edits here drop an entry at once; edits by another
        # front end sharing the database are seen after CACHE_SECONDS
        self._compiled: dict[str, tuple[float, _CompiledApi | None]] = {}

    # ------------------------------------------------------------------ persistence

    def _load(self, s: Session, api_id: str) -> HttpApiRow:
        row = s.get(HttpApiRow, api_id)
        if row is None:
            raise ApiNotFound(f"Invalid API identifier specified {self.settings.account_id}:{api_id}")
        return row

    def _change(self, api_id: str, edit: Any) -> Any:
        with self._lock, Session(self.engine) as s, s.begin():
            row = self._load(s, api_id)
            doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in row.doc.items()}
            result = edit(doc)
            row.doc = doc
            self._compiled.pop(api_id, None)
            return result

    def endpoint(self, api_id: str) -> str:
        """The API's base URL on this server (host form; the path form is `/execute-api/<id>/...`)."""
        return f"http://{api_id}.execute-api.localhost:{self.settings.port}"

    # ------------------------------------------------------------------ APIs

    def create_api(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise ApiBadRequest("Invalid API name specified: a name of 1 to 128 characters is required")
        protocol = request.get("protocolType", "HTTP")
        if protocol != "HTTP":
            raise ApiBadRequest(f"Unsupported protocolType {protocol!r}: nimbus serves HTTP APIs only")
        api_id = _id(10)
        api: dict[str, Any] = {
            "apiId": api_id, "name": name, "protocolType": "HTTP", "apiEndpoint": self.endpoint(api_id),
            "apiKeySelectionExpression": "$request.header.x-api-key", "createdDate": _now(),
            "disableExecuteApiEndpoint": False, "routeSelectionExpression": "${request.method} ${request.path}",
            "tags": dict(request.get("tags") or {}),
        }
        for key in ("description", "version"):
            if request.get(key) is not None:
                api[key] = request[key]
        if request.get("corsConfiguration") is not None:
            api["corsConfiguration"] = _cors(request["corsConfiguration"])
        doc: dict[str, Any] = {"api": api, "routes": {}, "integrations": {}, "stages": {}}
        target = request.get("target")  # quick create: a $default route and stage to one function
        if target:
            integration = _integration({"integrationType": "AWS_PROXY", "integrationUri": target,
                                        "payloadFormatVersion": "2.0"})
            doc["integrations"][integration["integrationId"]] = integration
            route = _route({"routeKey": request.get("routeKey", "$default"),
                            "target": f"integrations/{integration['integrationId']}"})
            doc["routes"][route["routeId"]] = route
            doc["stages"]["$default"] = _stage({"stageName": "$default", "autoDeploy": True})
        with self._lock, Session(self.engine) as s, s.begin():
            s.add(HttpApiRow(api_id=api_id, name=name, doc=doc, created_ms=int(time.time() * 1000)))
        return dict(api)

    def get_api(self, api_id: str) -> dict[str, Any]:
        with Session(self.engine) as s:
            return dict(self._load(s, api_id).doc["api"])

    def list_apis(self) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            return [dict(r.doc["api"]) for r in s.scalars(select(HttpApiRow).order_by(HttpApiRow.created_ms))]

    def update_api(self, api_id: str, request: dict[str, Any]) -> dict[str, Any]:
        def edit(doc: dict[str, Any]) -> dict[str, Any]:
            api = dict(doc["api"])
            for key in ("name", "description", "version"):
                if request.get(key) is not None:
                    api[key] = request[key]
            if "corsConfiguration" in request:
                api["corsConfiguration"] = _cors(request["corsConfiguration"])
            doc["api"] = api
            return api

        return dict(self._change(api_id, edit))

    def delete_api(self, api_id: str) -> None:
        with self._lock, Session(self.engine) as s, s.begin():
            s.delete(self._load(s, api_id))
            self._compiled.pop(api_id, None)

    # ------------------------------------------------------------------ parts

    def create(self, api_id: str, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        """Create a route, integration or stage (`kind`: routes | integrations | stages)."""
        def edit(doc: dict[str, Any]) -> dict[str, Any]:
            items = dict(doc[kind])
            if kind == "routes":
                item = _route(request)
                if any(r["routeKey"] == item["routeKey"] for r in items.values()):
                    raise ApiConflict(f"Unable to complete operation due to concurrent modification or a route "
                                      f"with the key {item['routeKey']!r} already exists")
                self._check_target(doc, item)
                key = item["routeId"]
            elif kind == "integrations":
                item = _integration(request)
                key = item["integrationId"]
            else:
                item = _stage(request)
                key = item["stageName"]
                if key in items:
                    raise ApiConflict(f"Stage already exist: {key}")
            items[key] = item
            doc[kind] = items
            return item

        return dict(self._change(api_id, edit))

    def _check_target(self, doc: dict[str, Any], route: dict[str, Any]) -> None:
        target = route.get("target")
        if target is not None:
            ident = str(target).removeprefix("integrations/")
            if not str(target).startswith("integrations/") or ident not in doc["integrations"]:
                raise ApiBadRequest(f"Invalid integration target {target!r}: use integrations/<integrationId>")

    def update(self, api_id: str, kind: str, ident: str, request: dict[str, Any]) -> dict[str, Any]:
        def edit(doc: dict[str, Any]) -> dict[str, Any]:
            items = dict(doc[kind])
            if ident not in items:
                raise ApiNotFound(f"Invalid {kind[:-1]} identifier specified {ident}")
            merged = {**items[ident], **{k: v for k, v in request.items() if v is not None}}
            item = _route(merged) if kind == "routes" else _integration(merged) if kind == "integrations" \
                else _stage(merged)
            if kind == "routes":
                self._check_target(doc, item)
            items[ident] = {**item, **{k: items[ident][k] for k in ("routeId", "integrationId", "createdDate")
                                       if k in items[ident]}}
            doc[kind] = items
            return dict(items[ident])

        return dict(self._change(api_id, edit))

    def get(self, api_id: str, kind: str, ident: str | None = None) -> Any:
        """One item, or all of a kind."""
        with Session(self.engine) as s:
            items = self._load(s, api_id).doc[kind]
        if ident is None:
            return [dict(v) for v in items.values()]
        if ident not in items:
            raise ApiNotFound(f"Invalid {kind[:-1]} identifier specified {ident}")
        return dict(items[ident])

    def delete(self, api_id: str, kind: str, ident: str) -> None:
        def edit(doc: dict[str, Any]) -> None:
            items = dict(doc[kind])
            if ident not in items:
                raise ApiNotFound(f"Invalid {kind[:-1]} identifier specified {ident}")
            if kind == "integrations" and any(r.get("target") == f"integrations/{ident}"
                                              for r in doc["routes"].values()):
                raise ApiConflict(f"Integration {ident} is the target of a route: delete or retarget it first")
            del items[ident]
            doc[kind] = items

        self._change(api_id, edit)

    # ------------------------------------------------------------------ serving

    def _compile(self, api_id: str) -> _CompiledApi | None:
        with Session(self.engine) as s:
            row = s.get(HttpApiRow, api_id)
            doc = row.doc if row is not None else None
        if doc is None:
            return None
        routes: list[_CompiledRoute] = []
        default: _CompiledRoute | None = None
        for route in doc["routes"].values():
            integration = doc["integrations"].get(str(route.get("target", "")).removeprefix("integrations/"))
            method, path = _parse_route_key(route["routeKey"])
            segments = tuple(path.strip("/").split("/")) if path not in ("", "/") else ()
            greedy = bool(segments) and segments[-1].endswith("+}")
            literal = sum(1 for seg in segments if not seg.startswith("{"))
            compiled = _CompiledRoute(method, segments, greedy, route["routeKey"], integration,
                                      route.get("authorizationType", "NONE"),
                                      (0 if greedy else 1, literal, len(segments), 0 if method == "ANY" else 1))
            if method == "$default":
                default = compiled
            else:
                routes.append(compiled)
        routes.sort(key=lambda r: r.rank, reverse=True)
        return _CompiledApi(api_id, frozenset(doc["stages"]), routes, default, doc["api"].get("corsConfiguration"))

    def cached(self, api_id: str) -> tuple[bool, _CompiledApi | None]:
        """(found, API) from the in-memory cache, without touching the database (the request fast path)."""
        entry = self._compiled.get(api_id)
        if entry is None or time.monotonic() - entry[0] > CACHE_SECONDS:
            return False, None
        return True, entry[1]

    def api(self, api_id: str) -> _CompiledApi | None:
        """The API compiled for matching (cached; see `cached`)."""
        found, compiled = self.cached(api_id)
        if not found:
            compiled = self._compile(api_id)
            self._compiled[api_id] = (time.monotonic(), compiled)
        return compiled

    def match(self, api: _CompiledApi, method: str, path: str) -> RouteMatch | None:
        """The route a request takes, with its path parameters; None when no route (nor $default) matches."""
        parts = [p for p in path.split("/") if p] if path not in ("", "/") else []
        for route in api.routes:
            if route.method != "ANY" and route.method != method:
                continue
            params = _match_segments(route.segments, route.greedy, parts)
            if params is not None:
                return self._target(api, route, params)
        if api.default is not None:
            return self._target(api, api.default, {})
        return None

    def _target(self, api: _CompiledApi, route: _CompiledRoute, params: dict[str, str]) -> RouteMatch | None:
        integration = route.integration
        if integration is None:
            return None
        name, qualifier = function_of(str(integration.get("integrationUri", "")))
        return RouteMatch(api.api_id, route.route_key, name, qualifier,
                          str(integration.get("payloadFormatVersion", "2.0")),
                          int(integration.get("timeoutInMillis", 30000)), params, route.authorization_type, api.cors)


def _match_segments(segments: tuple[str, ...], greedy: bool, parts: list[str]) -> dict[str, str] | None:
    if greedy:
        if len(parts) < len(segments):
            return None
    elif len(parts) != len(segments):
        return None
    params: dict[str, str] = {}
    for i, seg in enumerate(segments):
        if seg.startswith("{"):
            name = seg[1:-1]
            if name.endswith("+"):
                params[name[:-1]] = "/".join(parts[i:])
                return params
            params[name] = parts[i]
        elif seg != parts[i]:
            return None
    return params


def _cors(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ApiBadRequest("corsConfiguration must be an object")
    allowed = ("allowCredentials", "allowHeaders", "allowMethods", "allowOrigins", "exposeHeaders", "maxAge")
    unknown = set(config) - set(allowed)
    if unknown:
        raise ApiBadRequest(f"Unknown corsConfiguration field(s): {', '.join(sorted(unknown))}")
    return {k: config[k] for k in allowed if config.get(k) is not None}


def _route(request: dict[str, Any]) -> dict[str, Any]:
    key = request.get("routeKey")
    if not isinstance(key, str):
        raise ApiBadRequest("routeKey is required")
    _parse_route_key(key)
    auth = request.get("authorizationType", "NONE")
    if auth not in ("NONE", "AWS_IAM"):
        raise ApiBadRequest(f"authorizationType {auth!r} is not supported by nimbus (NONE, AWS_IAM are)")
    route: dict[str, Any] = {"routeId": request.get("routeId") or _id(7), "routeKey": key,
                             "authorizationType": auth, "apiKeyRequired": False}
    if request.get("target") is not None:
        route["target"] = request["target"]
    return route


def _integration(request: dict[str, Any]) -> dict[str, Any]:
    kind = request.get("integrationType")
    if kind != "AWS_PROXY":
        raise ApiBadRequest(f"integrationType {kind!r} is not supported by nimbus (AWS_PROXY to a Lambda "
                            "function is)")
    uri = request.get("integrationUri")
    if not isinstance(uri, str) or not uri:
        raise ApiBadRequest("integrationUri is required for AWS_PROXY integrations")
    version = str(request.get("payloadFormatVersion", "2.0"))
    if version not in ("1.0", "2.0"):
        raise ApiBadRequest(f"payloadFormatVersion must be 1.0 or 2.0, got {version!r}")
    timeout = int(request.get("timeoutInMillis", 30000))
    if not 50 <= timeout <= 30000:
        raise ApiBadRequest("timeoutInMillis must be between 50 and 30000")
    return {"integrationId": request.get("integrationId") or _id(7), "integrationType": "AWS_PROXY",
            "integrationMethod": "POST", "integrationUri": uri, "payloadFormatVersion": version,
            "timeoutInMillis": timeout, "connectionType": "INTERNET"}


def _stage(request: dict[str, Any]) -> dict[str, Any]:
    name = request.get("stageName")
    if not isinstance(name, str) or not re.fullmatch(r"\$default|[A-Za-z0-9_-]{1,128}", name):
        raise ApiBadRequest(f"Invalid stage name {name!r}")
    now = _now()
    return {"stageName": name, "autoDeploy": bool(request.get("autoDeploy", False)),
            "createdDate": request.get("createdDate") or now, "lastUpdatedDate": now,
            "stageVariables": dict(request.get("stageVariables") or {}), "defaultRouteSettings": {},
            "routeSettings": {}, "tags": dict(request.get("tags") or {})}
