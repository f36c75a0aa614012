"""The data that crosses the boundary between `invoke/` and `sandbox/`. Plain, serialisable dataclasses so
the hand-off can become a network call when workers run on other nodes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nimbus.control.specs import VersionSpec

LogLine = tuple[int, str]  # (epoch ms, text without trailing newline)

# Called with (log group, log stream, lines) for output produced outside an invocation (INIT, stray
# writes to fd 1/2 after a handler returned). Must not block.
LogSink = Callable[[str, str, list[LogLine]], None]
# How an environment's first lines (INIT_START / RESTORE_START and INIT's output) are written: observe/ decides
# (e.g. JSON platform records), the composition root hands it in; the sandbox imports no observe/.
StartFormatter = Callable[[VersionSpec, list[LogLine]], list[LogLine]]

# Per-environment variables (e.g. short-lived credentials), given (spec, environment id); applied to fresh
# and forked environments alike before any user code of theirs runs.
EnvironHook = Callable[[VersionSpec, str], dict[str, str]]

# An ASGI application (Starlette's type, spelled out to keep the sandbox free of the web framework).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class PlatformApi:
    """The platform's API app, served on every environment's endpoint (127.0.0.1:9001 inside it) beside the
    Runtime API. The app is built from the platform the sandbox is part of: this is the one cycle of the
    composition, closed in one named place. The composition root makes it empty, hands it to the sandbox
    through its constructor, and `bind`s the app once it exists (api/app.py `create_app`)."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp | None = None) -> None:
        self.app = app

    def bind(self, app: ASGIApp) -> None:
        """Serve `app` on every environment's endpoint from now on. The ASGI scope carries
        `nimbus.environment`: the environment's function name, version, function ARN and environment id."""
        self.app = app


@dataclass(slots=True)
class InvokeRequest:
    request_id: str
    payload: bytes
    deadline_ms: int  # epoch ms at which the function times out
    invoked_arn: str  # ARN as the caller named it (qualified with alias/version when given)
    client_context: str | None = None  # JSON text (decoded from X-Amz-Client-Context)
    identity: str | None = None  # JSON text (Cognito identity)
    trace_id: str | None = None
    # Response streaming: when set, every chunk the function produces is passed here, in order, as soon as
    # it arrives (must not block); InvokeResult.payload is then b"" on success, or the error document.
    on_chunk: Callable[[bytes], None] | None = None


@dataclass(slots=True)
class InvokeResult:
    payload: bytes  # the handler's JSON result, or the error document when function_error is set
    function_error: str | None  # None on success, else "Unhandled" (what X-Amz-Function-Error says)
    error_type: str | None  # e.g. "KeyError", "Sandbox.Timedout", "Runtime.ExitError"
    logs: list[LogLine]  # what the function wrote during this invocation, in order
    duration_ms: float  # handler time, as REPORT prints it
    max_memory_mb: int
    init_duration_ms: float | None  # set on an environment's first invocation
    log_stream: str  # the environment's log stream name
    environment_id: str
    extra_report: dict[str, str] = field(default_factory=dict)  # e.g. {"Status": "timeout"}


@dataclass(frozen=True, slots=True)
class EnvironmentStats:
    """One live execution environment, as metrics and the dashboard show it."""

    function_name: str
    version: str
    environment_id: str
    busy: bool
    peak_memory_mb: int


@dataclass(frozen=True, slots=True)
class ProvisionedStats:
    """The provisioned-concurrency environments of one version (metrics, metering)."""

    function_name: str
    version: str
    allocated: int  # initialized and alive
    busy: int  # of those, running an invocation now
    memory_mb: int
    architecture: str


class Sandbox(Protocol):
    """What `invoke/` needs from the sandbox layer."""

    backend_name: str  # "namespaces" | "process"
    backend_reason: str  # why this backend was chosen (printed at start-up)

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Kill every environment; in-flight invocations fail cleanly."""

    async def invoke(self, spec: VersionSpec, request: InvokeRequest) -> InvokeResult:
        """Run one invocation in a warm environment of `spec`, creating one if none is idle.

        Never raises because of user code: timeouts, crashes and out-of-memory come back as results.
        """

    def retire(self, function_name: str, keep: set[tuple[str, str]]) -> None:
        """Shut down environments of `function_name` (idle ones now, busy ones when they finish) whose
        (version, revision_id) is not in `keep`; an empty `keep` retires them all."""

    def environment_count(self) -> int: ...

    def idle_count(self, pool_key: tuple[str, str, str]) -> int:
        """Warm environments idle right now for `VersionSpec.pool_key` (0 means the next invoke is cold)."""


class Snapshots(Protocol):
    """SnapStart snapshots (the sandbox's zygotes that ran INIT), for the versions' State."""

    def snapshot_state(self, pool_key: tuple[str, str, str]) -> tuple[str, str, str] | None | bool:
        """(State, StateReason, StateReasonCode) while a version's snapshot is made or failed, None when it is
        ready, False when this server never prepared it (safe from any thread)."""

    def prepare_snapshot(self, spec: VersionSpec) -> None:
        """Make the version's snapshot now (on the serving loop)."""
