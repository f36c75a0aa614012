"""`serverless.yml` (Serverless Framework v3/v4) into a ServiceSpec: `service`, `provider`, `params`, `package`,
`functions` and their `events`. Type errors are ProjectErrors naming file, line and key; keys and events nimbus
does not act on become warnings that name them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nimbus.project.errors import ProjectError
from nimbus.project.model import LAYER_REF, FunctionSpec, HttpRoute, LayerSpec, QueueSource, Schedule, ServiceSpec
from nimbus.project.variables import Resolver
from nimbus.project.yamlmarks import Document, Path_, dotted, load

_FUNCTION_KEYS = {
    "handler", "runtime", "memorySize", "timeout", "environment", "layers", "reservedConcurrency",
    "provisionedConcurrency", "snapStart", "url", "destinations", "package", "events", "name", "description",
    "tags", "architecture", "role", "maximumRetryAttempts", "maximumEventAge", "disableLogs", "logRetentionInDays",
}
_IGNORED_FUNCTION_KEYS = {"maximumRetryAttempts", "maximumEventAge", "disableLogs", "logRetentionInDays", "role"}
_UNSUPPORTED_EVENTS = {
    "s3", "stream", "sns", "eventBridge", "alb", "websocket", "cloudwatchEvent", "cloudwatchLog", "cognitoUserPool",
    "alexaSkill", "alexaSmartHome", "iot", "iotFleetProvisioning", "msk", "kafka", "activemq", "rabbitmq",
}
_KNOWN_PLUGINS = {"serverless-python-requirements", "serverless-offline"}
_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]*$")


def parse(file: Path, options: Mapping[str, str], env: Mapping[str, str],
          params: Mapping[str, str] | None = None) -> ServiceSpec:
    """Read, resolve and check `file`; `options` are `--stage`/`--region`-style CLI options (`${opt:...}`)."""
    doc = load(file)
    if not isinstance(doc.value, dict):
        raise doc.error((), "a serverless.yml is a mapping with `service`, `provider` and `functions`")
    resolver = Resolver(doc, options, env, params or {})
    root = resolver.resolve()
    return _Parser(doc, root, resolver.stage, resolver.region).service()


class _Parser:
    def __init__(self, doc: Document, root: dict[str, Any], stage: str, region: str) -> None:
        self.doc = doc
        self.root = root
        self.stage = stage
        self.region = region
        self.warnings: list[str] = []

    def warn(self, path: Path_, message: str) -> None:
        self.warnings.append(f"{self.doc.file.name}:{self.doc.line(path)}: {dotted(path)}: {message}")

    def get(self, path: Path_, kind: type | tuple[type, ...], default: Any = None) -> Any:
        node: Any = self.root
        for part in path:
            if isinstance(node, dict):
                if part not in node or node[part] is None:
                    return default
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if int in kinds and isinstance(node, str) and node.strip().isdigit():
            node = int(node)
        if isinstance(node, bool) and bool not in kinds:
            node = str(node).lower() if str in kinds else node
        if not isinstance(node, kinds) or (isinstance(node, bool) and bool not in kinds):
            raise self.doc.error(path, f"expected {_kind_name(kinds)}, got {_shown(node)}")
        return node

    def service(self) -> ServiceSpec:
        service = self.root.get("service")
        if isinstance(service, dict):
            service = service.get("name")
        if not isinstance(service, str) or not service:
            raise self.doc.error(("service",), "expected the service's name (a string)")
        if not _NAME.match(service):
            raise self.doc.error(("service",), f"{service!r}: a service name starts with a letter and has only "
                                               "letters, digits and hyphens")
        provider = self.get(("provider",), dict, {})
        name = provider.get("name", "aws")
        if name != "aws":
            raise self.doc.error(("provider", "name"), f"only the `aws` provider is supported, got {name!r}")
        for plugin in self.get(("plugins",), (list, dict), []):
            if isinstance(plugin, str) and plugin not in _KNOWN_PLUGINS:
                self.warn(("plugins",), f"plugin {plugin!r} is not run by nimbus")
        if "resources" in self.root:
            self.warn(("resources",), "CloudFormation `resources` are not deployed by nimbus")
        self.own_layers = self._own_layers()
        functions = self.get(("functions",), dict, {})
        if not functions:
            raise self.doc.error(("functions",), "the service has no functions")
        specs = [self.function(key) for key in functions]
        for spec in specs:
            for kind, target in list(spec.destinations.items()):
                if not target.startswith("arn:"):
                    match = next((s for s in specs if s.key == target), None)
                    if match is None:
                        raise self.doc.error(("functions", spec.key, "destinations", kind),
                                             f"{target!r} is neither an ARN nor a function of this service")
                    spec.destinations[kind] = match.name  # the deployer makes it the function's ARN
        cors = self.get(("provider", "httpApi", "cors"), (bool, dict))
        return ServiceSpec(self.doc.file, service, self.stage, self.region, specs, cors, self.warnings,
                           list(self.own_layers.values()))

    def _own_layers(self) -> dict[str, LayerSpec]:
        """Top-level `layers:`, keyed by the name functions use: `<Key>LambdaLayer` (the framework's logical
        id: the key with its first letter upper-cased)."""
        out: dict[str, LayerSpec] = {}
        for key, body in self.get(("layers",), dict, {}).items():
            at: Path_ = ("layers", key)
            if not isinstance(body, dict):
                raise self.doc.error(at, "expected a mapping with `path`")
            path = self.get((*at, "path"), str)
            if path is None:
                raise self.doc.error((*at, "path"), "missing: the layer's directory")
            directory = (self.doc.file.parent / path).resolve()
            if not directory.is_dir():
                raise self.doc.error((*at, "path"), f"no such directory {directory}")
            name = self.get((*at, "name"), str) or f"{self._service_name()}-{self.stage}-{key}"
            runtimes = [str(r) for r in self.get((*at, "compatibleRuntimes"), list, [])]
            logical = key[0].upper() + key[1:] + "LambdaLayer"
            out[logical] = LayerSpec(key, name, directory, self.get((*at, "description"), str, ""), runtimes,
                                     self._patterns((*at, "package")))
        return out

    def function(self, key: str) -> FunctionSpec:
        base: Path_ = ("functions", key)
        body = self.get(base, dict, None)
        if body is None:
            raise self.doc.error(base, "expected a mapping with at least `handler`")
        for unknown in sorted(set(body) - _FUNCTION_KEYS):
            self.warn((*base, unknown), "unknown key, ignored")
        for ignored in sorted(set(body) & _IGNORED_FUNCTION_KEYS):
            self.warn((*base, ignored), "accepted but not applied by nimbus")
        handler = self.get((*base, "handler"), str)
        if handler is None:
            if "image" in body:
                raise self.doc.error((*base, "image"), "container image functions are not deployed from "
                                                       "serverless.yml by nimbus yet; use `handler`")
            raise self.doc.error((*base, "handler"), "missing: every function needs a `handler` (file.function)")
        runtime = self.get((*base, "runtime"), str) or self.get(("provider", "runtime"), str)
        if runtime is None:
            raise self.doc.error((*base, "runtime"), "no runtime: set `provider.runtime` or the function's "
                                                     "`runtime` (e.g. python3.12)")
        env = {**self._env(("provider", "environment")), **self._env((*base, "environment"))}
        tags = {**self._strings(("provider", "tags")), **self._strings((*base, "tags"))}
        name = self.get((*base, "name"), str) or f"{self._service_name()}-{self.stage}-{key}"
        spec = FunctionSpec(
            key=key, name=name, handler=handler, runtime=runtime,
            memory=self._int((*base, "memorySize"), ("provider", "memorySize"), 1024, 128, 10240),
            timeout=self._int((*base, "timeout"), ("provider", "timeout"), 6, 1, 900),
            description=self.get((*base, "description"), str, ""),
            environment=env, tags=tags,
            # a function's own `layers` replace the provider's, as in the framework
            layers=self._layers((*base, "layers") if "layers" in body else ("provider", "layers")),
            architecture=self.get((*base, "architecture"), str) or self.get(("provider", "architecture"), str)
            or "x86_64",
            reserved_concurrency=self.get((*base, "reservedConcurrency"), int),
            provisioned_concurrency=self.get((*base, "provisionedConcurrency"), int),
            snap_start=bool(self.get((*base, "snapStart"), bool, False)),
            url=self._url(base),
            destinations={k: v for k in ("onSuccess", "onFailure")
                          if (v := self.get((*base, "destinations", k), str)) is not None},
            source_dir=self.doc.file.parent,
            patterns=[*self._patterns(("package",)), *self._patterns((*base, "package"))],
            line=self.doc.line(base),
        )
        if spec.architecture not in ("x86_64", "arm64"):
            raise self.doc.error((*base, "architecture"), f"expected x86_64 or arm64, got {spec.architecture!r}")
        artifact = self.get((*base, "package", "artifact"), str) or self.get(("package", "artifact"), str)
        if artifact:
            spec.artifact = (self.doc.file.parent / artifact).resolve()
            if not spec.artifact.is_file():
                raise self.doc.error((*base, "package", "artifact"), f"no such file {spec.artifact}")
        for i, event in enumerate(self.get((*base, "events"), list, [])):
            self._event(spec, (*base, "events", i), event)
        return spec

    def _service_name(self) -> str:
        service = self.root["service"]
        return str(service["name"] if isinstance(service, dict) else service)

    def _int(self, path: Path_, fallback: Path_, default: int, low: int, high: int) -> int:
        value = self.get(path, int)
        where = path
        if value is None:
            value, where = self.get(fallback, int), fallback
        if value is None:
            return default
        if not low <= value <= high:
            raise self.doc.error(where, f"expected a value between {low} and {high}, got {value}")
        return int(value)

    def _env(self, path: Path_) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.get(path, dict, {}).items():
            if isinstance(v, dict | list):
                raise self.doc.error((*path, k), f"an environment variable is a string, got {_shown(v)} (a "
                                                 "CloudFormation function? nimbus does not resolve those)")
            out[k] = "" if v is None else ("true" if v is True else "false" if v is False else str(v))
        return out

    def _strings(self, path: Path_) -> dict[str, str]:
        return {k: str(v) for k, v in self.get(path, dict, {}).items()}

    def _layers(self, path: Path_) -> list[str]:
        out: list[str] = []
        for i, layer in enumerate(self.get(path, list, [])):
            if isinstance(layer, dict) and set(layer) == {"Ref"} and layer["Ref"] in self.own_layers:
                out.append(LAYER_REF + self.own_layers[layer["Ref"]].key)
                continue
            if not isinstance(layer, str) or not layer.startswith("arn:"):
                known = ", ".join(f"{{Ref: {k}}}" for k in self.own_layers) or "none"
                raise self.doc.error((*path, i), f"expected a layer version ARN or a reference to a layer of this "
                                                 f"service ({known}), got {_shown(layer)}")
            out.append(layer)
        return out

    def _url(self, base: Path_) -> dict[str, Any] | None:
        url = self.get((*base, "url"), (bool, dict))
        if not url:
            return None
        config: dict[str, Any] = {"AuthType": "NONE"}
        if isinstance(url, dict):
            if url.get("authorizer") == "aws_iam":
                config["AuthType"] = "AWS_IAM"
            cors = url.get("cors")
            if cors is True:
                config["Cors"] = {"AllowOrigins": ["*"], "AllowMethods": ["*"], "AllowHeaders": ["*"]}
            elif isinstance(cors, dict):
                config["Cors"] = {k[0].upper() + k[1:]: v for k, v in cors.items()}
            if url.get("invokeMode"):
                config["InvokeMode"] = url["invokeMode"]
        return config

    def _patterns(self, path: Path_) -> list[str]:
        package = self.get(path, dict, {})
        patterns = [str(p) for p in self.get((*path, "patterns"), list, [])]
        # v2's `exclude`/`include` are `!pattern`/`pattern` in the order the framework applied them
        patterns = [*(f"!{p}" for p in package.get("exclude") or []), *(package.get("include") or []), *patterns]
        return patterns

    def _event(self, spec: FunctionSpec, path: Path_, event: Any) -> None:
        if not isinstance(event, dict) or len(event) != 1:
            raise self.doc.error(path, f"an event is a mapping with one key (httpApi, schedule, sqs, ...), got "
                                       f"{_shown(event)}")
        (kind, body), = event.items()
        at: Path_ = (*path, kind)
        if kind in ("httpApi", "http"):
            spec.routes.append(self._route(at, kind, body))
        elif kind == "schedule":
            spec.schedules.append(self._schedule(at, body))
        elif kind == "sqs":
            spec.queues.append(self._queue(at, body))
        elif kind in _UNSUPPORTED_EVENTS:
            self.warn(at, f"`{kind}` events are not supported by nimbus yet; this event is skipped")
        else:
            raise self.doc.error(at, f"unknown event type {kind!r}")

    def _route(self, at: Path_, kind: str, body: Any) -> HttpRoute:
        payload = "2.0" if kind == "httpApi" else "1.0"
        cors = False
        if isinstance(body, str):
            text = body.strip()
            if text == "*":
                return HttpRoute("$default", "$default", payload)
            method, _, path = text.partition(" ")
        elif isinstance(body, dict):
            method, path = str(body.get("method", "")), str(body.get("path", ""))
            cors = bool(body.get("cors", False))
            if method == "*" and not path:
                return HttpRoute("$default", "$default", payload)
        else:
            raise self.doc.error(at, f"expected `METHOD /path` or a mapping with method and path, got {_shown(body)}")
        method = method.strip().upper()
        path = path.strip()
        if method == "*":
            method = "ANY"
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"):
            raise self.doc.error(at, f"unknown HTTP method {method!r}")
        if not path:
            raise self.doc.error(at, "missing the route's path")
        if not path.startswith("/"):
            path = "/" + path
        return HttpRoute(method, path, payload, cors)

    def _schedule(self, at: Path_, body: Any) -> Schedule:
        if isinstance(body, str):
            return Schedule(_expression(self.doc, at, body))
        if not isinstance(body, dict):
            raise self.doc.error(at, f"expected a rate/cron expression or a mapping with `rate`, got {_shown(body)}")
        rate = body.get("rate")
        if isinstance(rate, list):
            if len(rate) != 1:
                self.warn((*at, "rate"), "only the first of several expressions is scheduled")
            rate = rate[0] if rate else None
        if not isinstance(rate, str):
            raise self.doc.error((*at, "rate"), "missing: a `rate(...)` or `cron(...)` expression")
        data = body.get("input")
        import json

        text = None if data is None else (data if isinstance(data, str) else json.dumps(data))
        return Schedule(_expression(self.doc, (*at, "rate"), rate), bool(body.get("enabled", True)), text,
                        body.get("name"))

    def _queue(self, at: Path_, body: Any) -> QueueSource:
        if isinstance(body, str):
            body = {"arn": body}
        if not isinstance(body, dict):
            raise self.doc.error(at, f"expected a queue ARN or a mapping with `arn`, got {_shown(body)}")
        arn = body.get("arn")
        if not isinstance(arn, str) or not arn.startswith("arn:aws:sqs:"):
            raise self.doc.error((*at, "arn"), f"expected an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME), got "
                                               f"{_shown(arn)}")
        batch = body.get("batchSize", 10)
        if not isinstance(batch, int) or not 1 <= batch <= 10000:
            raise self.doc.error((*at, "batchSize"), f"expected 1..10000, got {_shown(batch)}")
        kinds = body.get("functionResponseType")
        return QueueSource(arn, batch, bool(body.get("enabled", True)), body.get("maximumBatchingWindow"),
                           (kinds,) if isinstance(kinds, str) else ())


def _expression(doc: Document, at: Path_, text: str) -> str:
    text = text.strip()
    if not re.match(r"^(rate|cron|at)\(.+\)$", text):
        raise doc.error(at, f"expected rate(...), cron(...) or at(...), got {text!r}")
    return text


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", dict: "a mapping", list: "a list", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


__all__ = ["ProjectError", "parse"]
