"""The invoker: validates an invocation, routes it to a version, admits it against concurrency limits, runs it
in the sandbox and reports it to the observer (log lines, metrics). It answers with a typed `InvokeOutcome`;
`api/` turns that into HTTP. One instance per server."""

from __future__ import annotations

import base64
import binascii
import json
import json.scanner
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from nimbus.config import Settings
from nimbus.control import lifecycle
from nimbus.control.registry import Registry
from nimbus.control.specs import FunctionSnapshot, VersionSpec
from nimbus.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    RequestTooLarge,
    ResourceConflict,
    ResourceNotFound,
    TooManyRequests,
    ValidationError,
)
from nimbus.ids import new_request_id as _new_request_id
from nimbus.ids import new_trace_id as _new_trace_id
from nimbus.invoke import router
from nimbus.invoke.concurrency import Concurrency
from nimbus.invoke.queue import EventQueue, NewEvent
from nimbus.observe import report
from nimbus.observe.observer import Observer
from nimbus.sandbox.types import InvokeRequest, InvokeResult, Sandbox

log = logging.getLogger("nimbus.invoke")

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
# AWS's sync limit is 6 MB for requests; responses may carry 100 bytes more (the RIE's 6 MiB + 100).
RESPONSE_SLACK = 100


OutcomeKind = Literal["sync", "accepted", "dry_run"]


@dataclass(slots=True)
class InvokeOutcome:
    """What one invocation came to, in the data plane's terms (no transport vocabulary): `sync` ran it,
    `accepted` queued an `Event` durably, `dry_run` only checked it could run."""

    kind: OutcomeKind
    request_id: str
    executed_version: str | None = None  # the version that ran (or would run); None for `accepted`
    payload: bytes = b""  # the function's result, or its error document when function_error is set
    function_error: str | None = None  # "Unhandled" when the function failed
    log_result: str | None = None  # base64 tail of the invocation's log (log type `Tail`)
    duration_ms: float | None = None  # handler time (sync)
    init_duration_ms: float | None = None  # set on a cold start (sync)


class _Route:
    """A resolved (function, qualifier) with what the hot path derives from it, reused while the
    function's snapshot is the same object (snapshots are immutable and replaced on every change)."""

    __slots__ = ("snapshot", "target", "spec", "pool_key", "log_group")

    def __init__(self, snapshot: FunctionSnapshot, target: router.Target) -> None:
        self.snapshot = snapshot
        self.target = target
        self.spec: VersionSpec = target.spec
        self.pool_key = target.spec.pool_key
        self.log_group = target.spec.log_group


def _deterministic(snapshot: FunctionSnapshot, qualifier: str | None) -> bool:
    """Whether `qualifier` always resolves to the same version (weighted aliases draw per invocation)."""
    if not qualifier or qualifier == router.LATEST or qualifier.isdigit():
        return True
    alias = snapshot.aliases.get(qualifier)
    return alias is not None and not alias.additional_weights


class Invoker:
    def __init__(self, settings: Settings, registry: Registry, sandbox: Sandbox, observer: Observer,
                 events: EventQueue) -> None:
        self._settings = settings
        self._registry = registry
        self._sandbox = sandbox
        self._reserved_total: int | None = None
        self.concurrency = Concurrency(settings, self._cached_reserved_total)
        self.events = events  # the durable async queue: accepted `Event` invocations go there
        self.observer = observer  # metrics, metering, tracing (observe/)
        self._routes: dict[tuple[str, str | None], _Route] = {}

    def _cached_reserved_total(self) -> int:
        if self._reserved_total is None:
            self._reserved_total = self._registry.reserved_total()
        return self._reserved_total

    def function_changed(self, name: str) -> None:
        """A registry subscriber, called on the serving loop (platform.py): forget cached routes and limits,
        retire the environments of versions that changed or are gone."""
        self._reserved_total = None
        self._routes.clear()  # not needed for correctness (routes check their snapshot); frees old ones
        try:
            snapshot = self._registry.snapshot(name)
            keep = {(v.version, v.revision_id) for v in snapshot.versions.values()}
        except Exception as exc:  # deleted (ResourceNotFound) or unreadable: nothing of it stays warm
            keep = set()
            if isinstance(exc, ResourceNotFound):
                self.observer.forget(name)  # its live metrics go; its metering stays for the bill
        self._sandbox.retire(name, keep)

    async def invoke(
        self,
        function: str,
        qualifier: str | None,
        payload: bytes,
        invocation_type: str = "RequestResponse",
        log_type: str = "None",
        client_context: str | None = None,
        trace_id: str | None = None,
        on_chunk: Callable[[bytes], None] | None = None,
        on_admitted: Callable[[str, str], None] | None = None,
        payload_is_json: bool = False,
    ) -> InvokeOutcome:
        """Invoke `function` (name or ARN) and say what came of it.

        Response streaming (invoke/streaming.py): with `on_chunk` the function's output goes there as it is
        produced (the outcome's payload is then empty, or the error document); `on_admitted(executed
        version, request id)` is called once the invocation is admitted, before it runs. `payload_is_json`: the
        caller serialized the payload itself (a function URL's event), so it is not parsed again to check it."""
        if invocation_type not in INVOCATION_TYPES:
            raise ValidationError(
                f"1 validation error detected: Value '{invocation_type}' at 'invocationType' failed to "
                f"satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
            )
        if log_type not in ("None", "Tail"):
            raise ValidationError(
                f"1 validation error detected: Value '{log_type}' at 'logType' failed to satisfy "
                "constraint: Member must satisfy enum value set: [Tail, None]"
            )
        limit = (
            self._settings.async_payload_max_bytes
            if invocation_type == "Event"
            else self._settings.sync_payload_max_bytes
        )
        if len(payload) > limit:
            raise RequestTooLarge(
                f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            )
        if not payload_is_json:
            _check_json(payload)
        context_json = _decode_client_context(client_context) if client_context else None

        name, arn_qualifier = self._registry.split_qualifier(function, qualifier, "$LATEST")
        if arn_qualifier and qualifier and arn_qualifier != qualifier:
            raise InvalidParameterValue(
                "The derived qualifier from the function name does not match the specified qualifier."
            )
        qualifier = qualifier or arn_qualifier
        try:
            snapshot = self._registry.snapshot(name)
        except ResourceNotFound:  # AWS names what was invoked, $LATEST when unqualified
            invoked = self._registry.arn(name, qualifier or "$LATEST")
            raise ResourceNotFound(f"Function not found: {invoked}") from None
        route = self._route(snapshot, name, qualifier)
        if route.spec.pending:  # as on AWS, a function still being created cannot be invoked yet
            raise ResourceConflict(lifecycle.pending_message())
        version = route.spec.version

        if invocation_type == "DryRun":
            return InvokeOutcome("dry_run", _new_request_id(), version)

        if invocation_type == "Event":
            # Committed to the durable queue before the 202: an accepted event survives a crash (invoke/queue.py).
            request_id = _new_request_id()
            event = NewEvent(request_id, snapshot.name, qualifier, payload, context_json, trace_id)
            await self.events.enqueue((event,))
            return InvokeOutcome("accepted", request_id)

        request, result, lines = await self._run(route, payload, context_json, trace_id, None, qualifier,
                                                 on_chunk, on_admitted)
        outcome = InvokeOutcome("sync", request.request_id, version, result.payload, result.function_error,
                                None, result.duration_ms, result.init_duration_ms)
        max_response = self._settings.sync_payload_max_bytes + RESPONSE_SLACK
        if outcome.function_error is None and len(outcome.payload) > max_response:
            outcome.payload = json.dumps(
                {
                    "errorMessage": "Response payload size exceeded maximum allowed payload size "
                    f"({max_response} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge",
                }
            ).encode()
            outcome.function_error = "Unhandled"
        if log_type == "Tail":
            outcome.log_result = report.tail(lines, self._settings.log_tail_bytes)
        return outcome

    async def run_event(
        self, function: str, qualifier: str | None, request_id: str, payload: bytes,
        client_context: str | None, trace_id: str | None,
    ) -> tuple[VersionSpec, InvokeResult]:
        """One attempt of a queued `Event` invocation, keeping its request id (the dispatcher, invoke/
        dispatcher.py, owns retries and destinations). Raises ResourceNotFound when the function or
        qualifier is gone and TooManyRequests when there is no capacity."""
        route = self._route(self._registry.snapshot(function), function, qualifier)
        _, result, _ = await self._run(route, payload, client_context, trace_id, request_id)
        return route.spec, result

    async def _run(
        self, route: _Route, payload: bytes, client_context: str | None, trace_id: str | None,
        request_id: str | None, throttle_qualifier: str | None = None,
        on_chunk: Callable[[bytes], None] | None = None, on_admitted: Callable[[str, str], None] | None = None,
    ) -> tuple[InvokeRequest, InvokeResult, list[str]]:
        """Admit (or raise TooManyRequests), run in the sandbox under the concurrency lease, report to the
        observer. Synchronous invocations (`throttle_qualifier` given) count their throttles; queued events
        are throttled quietly (the dispatcher retries them)."""
        snapshot = route.snapshot
        cold = self._sandbox.idle_count(route.pool_key) == 0
        try:
            lease = self.concurrency.acquire(snapshot.name, snapshot.reserved_concurrency, cold)
        except TooManyRequests:
            if request_id is None:
                self.observer.throttled(snapshot.name, throttle_qualifier)
            raise
        with lease:
            request = self._request(route.target, payload, client_context, trace_id, request_id)
            request.on_chunk = on_chunk
            if on_admitted is not None:
                on_admitted(route.spec.version, request.request_id)
            result = await self._sandbox.invoke(route.spec, request)
        lines = self.observer.finished(route.spec, route.log_group, request, result)
        return request, result, lines

    def _route(self, snapshot: FunctionSnapshot, name: str, qualifier: str | None) -> _Route:
        key = (name, qualifier)
        route = self._routes.get(key)
        if route is not None and route.snapshot is snapshot:
            return route
        route = _Route(snapshot, router.resolve(snapshot, qualifier))
        if _deterministic(snapshot, qualifier):
            if len(self._routes) >= 4096:
                self._routes.clear()
            self._routes[key] = route
        return route

    def _request(
        self, target: router.Target, payload: bytes, client_context: str | None, trace_id: str | None,
        request_id: str | None = None,
    ) -> InvokeRequest:
        request = InvokeRequest(
            request_id=request_id or _new_request_id(),
            payload=payload,
            deadline_ms=int(time.time() * 1000) + target.spec.timeout * 1000,
            invoked_arn=target.invoked_arn,
            client_context=client_context,
            trace_id=trace_id or _new_trace_id(),
        )
        self.observer.begin(target.spec, request, trace_id)  # tracing: sampling, the header the function sees
        return request


_JSON_WS = " \t\n\r"
_scan_json = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _check_json(payload: bytes) -> None:
    if not payload:
        return
    # Fast path for the common case (UTF-8 text holding one JSON value): the scanner json.loads ends up
    # in, without the layers around it. Anything it does not accept gets json.loads' own verdict.
    try:
        text = payload.decode()
        start = len(text) - len(text.lstrip(_JSON_WS))
        end = _scan_json(text, start)[1]
        if end == len(text) or not text[end:].strip(_JSON_WS):
            return
    except Exception:  # noqa: S110 (json.loads below decides, and words the error)
        pass
    try:
        json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRequestContent(
            f"Could not parse request body into json: Could not parse payload into json: {exc}"
        ) from None


def _decode_client_context(value: str | None) -> str | None:
    if not value:
        return None
    try:
        text = base64.b64decode(value, validate=True).decode()
        if not isinstance(json.loads(text), dict):
            raise ValueError
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidParameterValue("Client context must be a valid Base64-encoded JSON object.") from None
    if len(value) > 3583:
        raise InvalidParameterValue("Client context must be at most 3583 bytes, base64-encoded.")
    return text
