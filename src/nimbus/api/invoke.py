"""`POST /2015-03-31/functions/{name}/invocations`: the Invoke API.

This is the hot path, so it is a plain ASGI app placed in front of the Starlette router: it skips routing,
the Request object and the middleware stack, which together cost more than the invocation itself on a
warm echo. Errors still go through the one mapping in `api/errors.py`.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from nimbus.api import durable as durable_api
from nimbus.api.body import receive_body
from nimbus.api.errors import error_parts
from nimbus.errors import LambdaError, service_error
from nimbus.invoke.service import InvokeOutcome
from nimbus.observe.tracing import incoming_header
from nimbus.platform import Platform

_TOO_LARGE_FOR = " for the InvokeFunction operation"

log = logging.getLogger("nimbus.api")

PREFIX = "/2015-03-31/functions/"
SUFFIX = "/invocations"
JSON = (b"content-type", b"application/json")


class InvokeApp:
    """Serves Invoke itself and hands every other request to `app`."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(PREFIX) and path.endswith(SUFFIX):
                name = path[len(PREFIX) : -len(SUFFIX)]
                if name and "/" not in name:
                    await self.invoke(name, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def invoke(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        try:
            invocation_type = headers.get(b"x-amz-invocation-type", b"RequestResponse").decode("latin-1")
            settings = self.platform.settings
            limit = (
                settings.async_payload_max_bytes if invocation_type == "Event" else settings.sync_payload_max_bytes
            )
            payload = await receive_body(receive, headers.get(b"content-length"), limit, _TOO_LARGE_FOR)
            qualifier = None
            if scope["query_string"]:
                qualifier = parse_qs(scope["query_string"].decode("latin-1")).get("Qualifier", [None])[-1]
            if self.platform.durable.is_durable(name, qualifier):  # durable functions start executions
                answer = await durable_api.start(self.platform, name, qualifier, payload, invocation_type, headers)
                status, body = answer.status, answer.payload
                out = [JSON, *[(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]]
            else:
                outcome = await self.platform.invoker.invoke(
                    name,
                    qualifier,
                    payload,
                    invocation_type=invocation_type,
                    log_type=headers.get(b"x-amz-log-type", b"None").decode("latin-1"),
                    client_context=_text(headers.get(b"x-amz-client-context")),
                    trace_id=incoming_header(headers.get(b"x-amzn-trace-id"), headers.get(b"traceparent")),
                )
                status, body, out = STATUS[outcome.kind], outcome.payload, outcome_headers(outcome)
        except LambdaError as exc:
            status, body, out = _error(exc)
        except Exception as exc:
            log.exception("unhandled error in Invoke")
            status, body, out = _error(service_error(exc))
        out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})


STATUS = {"sync": 200, "accepted": 202, "dry_run": 204}


def outcome_headers(outcome: InvokeOutcome) -> list[tuple[bytes, bytes]]:
    """The Invoke response's headers for `outcome`, as AWS names them (content type first)."""
    out = [JSON]
    if outcome.executed_version is not None:
        out.append((b"x-amz-executed-version", outcome.executed_version.encode("latin-1")))
    if outcome.function_error is not None:
        out.append((b"x-amz-function-error", outcome.function_error.encode("latin-1")))
    if outcome.log_result is not None:
        out.append((b"x-amz-log-result", outcome.log_result.encode("latin-1")))
    out.append((b"x-amzn-requestid", outcome.request_id.encode("latin-1")))
    return out


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _error(exc: LambdaError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    status, headers, body = error_parts(exc)
    return status, body, headers
