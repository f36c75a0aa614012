"""The data that crosses the boundary between `invoke/` and `sandbox/`. Plain, serialisable dataclasses so
the hand-off can become a network call when workers run on other nodes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from nimbus.control.specs import VersionSpec

LogLine = tuple[int, str]  # (epoch ms, text without trailing newline)

# Called with (log group, log stream, lines) for output produced outside an invocation (INIT, stray
# writes to fd 1/2 after a handler returned). Must not block.
LogSink = Callable[[str, str, list[LogLine]], None]
# How an environment's first lines (INIT_START / RESTORE_START and INIT's output) are written: observe/ decides
# (e.g. JSON platform records), the composition root hands it in; the sandbox imports no observe/.
StartFormatter = Callable[[VersionSpec, list[LogLine]], list[LogLine]]


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
