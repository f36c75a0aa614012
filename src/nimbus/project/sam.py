"""AWS SAM `template.yaml` into a ServiceSpec: `AWS::Serverless::Function` resources with `Globals.Function`,
`Parameters` (defaults, `--param` overrides), the intrinsics `Ref`/`Fn::Sub` over parameters and pseudo
parameters, and `Events` of type `HttpApi` (payload 2.0), `Api` (payload 1.0), `Schedule` and `SQS`. The
service is named after the template's directory (override with `--param ServiceName=...`); functions are
`<service>-<stage>-<LogicalId>` unless `FunctionName` says otherwise."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nimbus.project.errors import ProjectError
from nimbus.project.model import FunctionSpec, HttpRoute, QueueSource, Schedule, ServiceSpec
from nimbus.project.package import DEFAULT_EXCLUDES
from nimbus.project.yamlmarks import Document, Path_, dotted, load

_SUB = re.compile(r"\$\{([^}!]+)\}")


def is_sam(file: Path) -> bool:
    """A SAM template: it declares the `AWS::Serverless-2016-10-31` transform."""
    try:
        text = file.read_text()
    except OSError:
        return False
    return "AWS::Serverless-2016-10-31" in text


def parse(file: Path, options: Mapping[str, str], env: Mapping[str, str],
          params: Mapping[str, str] | None = None) -> ServiceSpec:
    """Read and check a SAM template."""
    doc = load(file)
    if not isinstance(doc.value, dict) or not isinstance(doc.value.get("Resources"), dict):
        raise doc.error(("Resources",), "a SAM template needs a `Resources` mapping")
    return _Sam(doc, options, params or {}).service()


class _Sam:
    def __init__(self, doc: Document, options: Mapping[str, str], params: Mapping[str, str]) -> None:
        self.doc = doc
        self.root: dict[str, Any] = doc.value
        self.params = params
        self.warnings: list[str] = []
        self.stage = options.get("stage") or params.get("Stage") or self._default("Stage") or "dev"
        self.region = options.get("region") or "us-east-1"
        name = params.get("ServiceName") or re.sub(r"[^a-zA-Z0-9-]", "-", doc.file.resolve().parent.name)
        self.service_name = name.strip("-") or "service"

    def _default(self, name: str) -> str | None:
        param = (self.root.get("Parameters") or {}).get(name)
        return str(param["Default"]) if isinstance(param, dict) and "Default" in param else None

    def warn(self, path: Path_, message: str) -> None:
        self.warnings.append(f"{self.doc.file.name}:{self.doc.line(path)}: {dotted(path)}: {message}")

    def ref(self, name: str, path: Path_) -> str:
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": "000000000000", "AWS::StackName":
                  f"{self.service_name}-{self.stage}", "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name == "Stage":
            return self.stage
        if name in self.params:
            return self.params[name]
        if name in (self.root.get("Parameters") or {}):
            found = self._default(name)
            if found is None:
                raise self.doc.error(path, f"parameter {name!r} has no Default: give it with --param {name}=...")
            return found
        raise self.doc.error(path, f"Ref {name!r}: only parameters and pseudo parameters can be referred to")

    def value(self, v: Any, path: Path_) -> Any:
        """`v` with `Ref`/`Fn::Sub` resolved; other intrinsics are errors."""
        if isinstance(v, list):
            return [self.value(item, (*path, i)) for i, item in enumerate(v)]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (key, arg), = v.items()
            if key == "Ref":
                return self.ref(str(arg), path)
            if key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                extra = arg[1] if isinstance(arg, list) and len(arg) > 1 else {}
                return _SUB.sub(lambda m: str(extra[m[1]]) if m[1] in extra else self.ref(m[1], path), str(text))
            if key.startswith("Fn::"):
                raise self.doc.error(path, f"the intrinsic {key} is not supported by nimbus (Ref and Fn::Sub are)")
        return {k: self.value(item, (*path, k)) for k, item in v.items()}

    def service(self) -> ServiceSpec:
        globals_ = self.value((self.root.get("Globals") or {}).get("Function") or {}, ("Globals", "Function"))
        specs: list[FunctionSpec] = []
        for logical, resource in self.root["Resources"].items():
            at: Path_ = ("Resources", logical)
            if not isinstance(resource, dict) or "Type" not in resource:
                raise self.doc.error(at, "a resource is a mapping with `Type`")
            if resource["Type"] != "AWS::Serverless::Function":
                self.warn((*at, "Type"), f"{resource['Type']} resources are not deployed by nimbus")
                continue
            props = self.value(resource.get("Properties") or {}, (*at, "Properties"))
            specs.append(self.function(logical, {**globals_, **props}, (*at, "Properties")))
        if not specs:
            raise self.doc.error(("Resources",), "the template has no AWS::Serverless::Function")
        return ServiceSpec(self.doc.file, self.service_name, self.stage, self.region, specs, None, self.warnings)

    def function(self, logical: str, props: dict[str, Any], at: Path_) -> FunctionSpec:
        for key in ("Handler", "Runtime"):
            if not isinstance(props.get(key), str):
                raise self.doc.error((*at, key), f"missing: `{key}` (in the function or Globals.Function)")
        code_uri = props.get("CodeUri", ".")
        if not isinstance(code_uri, str):
            raise self.doc.error((*at, "CodeUri"), "expected a local directory (S3 locations are not fetched)")
        source = (self.doc.file.parent / code_uri).resolve()
        if not source.is_dir():
            raise self.doc.error((*at, "CodeUri"), f"no such directory {source}")
        env = (props.get("Environment") or {}).get("Variables") or {}
        spec = FunctionSpec(
            key=logical, name=props.get("FunctionName") or f"{self.service_name}-{self.stage}-{logical}",
            handler=props["Handler"], runtime=props["Runtime"],
            memory=_int(self.doc, (*at, "MemorySize"), props.get("MemorySize", 128)),
            timeout=_int(self.doc, (*at, "Timeout"), props.get("Timeout", 3)),
            description=str(props.get("Description") or ""),
            environment={k: str(v) for k, v in env.items()},
            layers=[str(x) for x in props.get("Layers") or []],
            tags={k: str(v) for k, v in (props.get("Tags") or {}).items()},
            architecture=(props.get("Architectures") or ["x86_64"])[0],
            reserved_concurrency=props.get("ReservedConcurrentExecutions"),
            snap_start=(props.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions",
            url=props.get("FunctionUrlConfig"),
            source_dir=source,
            # the template itself and SAM's build output stay out of the package
            patterns=[f"!{p}" for p in ("template.yaml", "template.yml", ".aws-sam/**", "samconfig.toml")
                      if p not in DEFAULT_EXCLUDES],
            line=self.doc.line(at),
        )
        for name, event in (props.get("Events") or {}).items():
            self._event(spec, (*at, "Events", name), event)
        return spec

    def _event(self, spec: FunctionSpec, at: Path_, event: Any) -> None:
        if not isinstance(event, dict) or "Type" not in event:
            raise self.doc.error(at, "an event is a mapping with `Type` and `Properties`")
        kind, props = event["Type"], event.get("Properties") or {}
        if kind in ("HttpApi", "Api"):
            method = str(props.get("Method", "ANY" if kind == "HttpApi" else "")).upper()
            path = props.get("Path")
            if kind == "HttpApi" and path is None:
                spec.routes.append(HttpRoute("$default", "$default", "2.0"))
                return
            if not isinstance(path, str) or not method:
                raise self.doc.error((*at, "Properties"), "an API event needs `Path` and `Method`")
            spec.routes.append(HttpRoute("ANY" if method == "*" else method, path,
                                         "2.0" if kind == "HttpApi" else "1.0"))
        elif kind == "Schedule":
            expression = props.get("Schedule")
            if not isinstance(expression, str):
                raise self.doc.error((*at, "Properties", "Schedule"), "missing: a rate(...) or cron(...) expression")
            data = props.get("Input")
            spec.schedules.append(Schedule(expression, bool(props.get("Enabled", True)),
                                           data if isinstance(data, str) or data is None else json.dumps(data)))
        elif kind == "SQS":
            queue = props.get("Queue")
            if not isinstance(queue, str) or not queue.startswith("arn:aws:sqs:"):
                raise self.doc.error((*at, "Properties", "Queue"), "expected an SQS queue ARN")
            spec.queues.append(QueueSource(queue, int(props.get("BatchSize", 10)), bool(props.get("Enabled", True))))
        else:
            self.warn((*at, "Type"), f"`{kind}` events are not supported by nimbus yet; this event is skipped")


def _int(doc: Document, path: Path_, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise doc.error(path, f"expected an integer, got {value!r}")
    return int(value)


__all__ = ["ProjectError", "is_sam", "parse"]
