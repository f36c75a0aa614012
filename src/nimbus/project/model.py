"""One model of a service, whatever file described it: functions, their configuration, packaging and events.
Names follow the Serverless Framework: a function `hello` of service `shop` in stage `dev` is `shop-dev-hello`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class HttpRoute:
    """An `httpApi`/`http` event (or SAM `HttpApi`/`Api`): `METHOD /path/{param}`, or `$default`."""

    method: str  # GET, POST, ..., ANY, or "$default"
    path: str
    payload: str = "2.0"  # "1.0" for REST-API (`http`) events
    cors: bool = False


@dataclass(frozen=True)
class Schedule:
    """A `schedule` event: `rate(...)`, `cron(...)` or `at(...)`, delivered through the Scheduler API."""

    expression: str
    enabled: bool = True
    input: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class QueueSource:
    """An `sqs` event: an event source mapping from a queue ARN."""

    arn: str
    batch_size: int = 10
    enabled: bool = True
    maximum_batching_window: int | None = None
    function_response_types: tuple[str, ...] = ()


@dataclass
class LayerSpec:
    """A layer the service builds itself (top-level `layers:`), published as `<service>-<stage>-<key>` unless
    `name` says otherwise; functions refer to it as `{Ref: <Key>LambdaLayer}`."""

    key: str
    name: str
    path: Path
    description: str = ""
    compatible_runtimes: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)


LAYER_REF = "layer:"  # a function's layer entry naming one of the service's own layers: `layer:<key>`


@dataclass
class FunctionSpec:
    """One function of the service, as the server should run it."""

    key: str  # the key in the project file (`hello`)
    name: str  # the deployed name (`shop-dev-hello`)
    handler: str
    runtime: str
    memory: int = 1024
    timeout: int = 6
    description: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    role: str = "arn:aws:iam::000000000000:role/nimbus-function"
    architecture: str = "x86_64"
    reserved_concurrency: int | None = None
    provisioned_concurrency: int | None = None
    snap_start: bool = False
    url: dict[str, Any] | None = None  # a function URL's config (AuthType, Cors) or None
    destinations: dict[str, str] = field(default_factory=dict)  # onSuccess / onFailure -> ARN or function name
    source_dir: Path = Path(".")
    patterns: list[str] = field(default_factory=list)
    artifact: Path | None = None
    routes: list[HttpRoute] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    queues: list[QueueSource] = field(default_factory=list)
    line: int | None = None


@dataclass
class ServiceSpec:
    """A whole service in one stage."""

    file: Path
    service: str
    stage: str
    region: str
    functions: list[FunctionSpec]
    cors: dict[str, Any] | bool | None = None  # provider.httpApi.cors
    warnings: list[str] = field(default_factory=list)
    layers: list[LayerSpec] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """The prefix every function of this service and stage carries: `shop-dev-`."""
        return f"{self.service}-{self.stage}-"

    @property
    def root(self) -> Path:
        return self.file.parent
