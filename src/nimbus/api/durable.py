"""The durable-execution REST API at botocore's paths (`/2025-12-01/...`): the SDK's checkpoint and state calls,
Get/List/History/Stop/Delete of executions, callback Success/Failure/Heartbeat, and Invoke on a durable
function (started from `api/invoke.py`).

botocore percent-encodes the ARN path parameter (`/` → `%2F`), and ASGI servers decode `scope["path"]`, so
the ARN is read from the raw path: known action suffix off the end, the rest URL-decoded."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nimbus.api.body import read_body
from nimbus.durable.service import DurableService
from nimbus.errors import InvalidParameterValue, InvalidRequestContent, UnknownOperation, ValidationError

EXECUTIONS = "/2025-12-01/durable-executions/"
CALLBACKS = "/2025-12-01/durable-execution-callbacks/"
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED")


def _service(request: Request) -> DurableService:
    service: DurableService = request.app.state.platform.durable
    return service


def _json(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers={"x-amzn-RequestId": str(uuid.uuid4())})


def _raw_rest(request: Request, prefix: str) -> str:
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw.decode("latin-1")
    return path[len(prefix):] if path.startswith(prefix) else path


def _split(rest: str, suffixes: tuple[str, ...]) -> tuple[str, str]:
    """(decoded resource id, action suffix or '')."""
    for suffix in suffixes:
        if rest.endswith("/" + suffix):
            return unquote(rest[: -len(suffix) - 1]), suffix
    return unquote(rest), ""


def _query(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.scope.get("query_string", b"").decode("latin-1"))


def _one(q: dict[str, list[str]], key: str) -> str | None:
    values = q.get(key)
    return values[-1] if values else None


def _int(q: dict[str, list[str]], key: str) -> int | None:
    value = _one(q, key)
    if value is None:
        return None
    if not value.isdigit():
        raise ValidationError(f"1 validation error detected: Value '{value}' at '{key}' failed to satisfy "
                              "constraint: Member must be an integer")
    return int(value)


def _bool(q: dict[str, list[str]], key: str, default: bool) -> bool:
    value = _one(q, key)
    return default if value is None else value.lower() == "true"


async def _body_json(request: Request) -> Any:
    limit: int = request.app.state.platform.settings.request_body_max_bytes
    raw = await read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidRequestContent("Could not parse request body into json.") from None


async def executions(request: Request) -> Response:
    """Everything under /2025-12-01/durable-executions/{arn}[/action]."""
    service = _service(request)
    arn, action = _split(_raw_rest(request, EXECUTIONS),
                         ("checkpoint", "state", "history", "stop", "pause", "resume"))
    method = request.method
    q = _query(request)
    if action == "checkpoint" and method == "POST":
        body = await _body_json(request)
        if not isinstance(body, dict):
            raise InvalidRequestContent("The request body must be a JSON object.")
        return _json(service.checkpoint(arn, body.get("CheckpointToken"), body.get("Updates"),
                                        body.get("ClientToken")))
    if action == "state" and method == "GET":
        return _json(service.get_state(arn, _one(q, "CheckpointToken"), _one(q, "Marker"), _int(q, "MaxItems")))
    if action == "history" and method == "GET":
        return _json(service.history(arn, _bool(q, "IncludeExecutionData", False), _one(q, "Marker"),
                                     _int(q, "MaxItems"), _bool(q, "ReverseOrder", False)))
    if action == "stop" and method == "POST":
        body = await _body_json(request)
        error = body if isinstance(body, dict) and body else None
        return _json({"StopTimestamp": service.stop_execution(arn, error)})
    if action in ("pause", "resume"):
        raise InvalidParameterValue(f"{action.capitalize()}DurableExecution is not supported by this server.")
    if action == "" and method == "GET":
        return _json(service.get_execution(arn, _bool(q, "IncludeExecutionData", True)))
    if action == "" and method == "DELETE":
        return _json({"DeletionRequestTimestamp": service.delete_execution(arn)}, 202)
    raise UnknownOperation(f"Unknown operation {method} {request.url.path}")


async def callbacks(request: Request) -> Response:
    """/2025-12-01/durable-execution-callbacks/{CallbackId}/succeed|fail|heartbeat."""
    service = _service(request)
    cid, action = _split(_raw_rest(request, CALLBACKS), ("succeed", "fail", "heartbeat"))
    if request.method != "POST" or not action:
        raise UnknownOperation(f"Unknown operation {request.method} {request.url.path}")
    if action == "succeed":
        limit: int = request.app.state.platform.settings.request_body_max_bytes
        service.callback_success(cid, await read_body(request, limit))
    elif action == "fail":
        body = await _body_json(request)
        service.callback_failure(cid, body if isinstance(body, dict) else {})
    else:
        service.callback_heartbeat(cid)
    return _json({})


def _timestamp(value: str | None, key: str) -> int | None:
    if value is None:
        return None
    try:
        if value.replace(".", "", 1).isdigit():
            return int(float(value) * 1000)
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise ValidationError(f"1 validation error detected: Value '{value}' at '{key}' failed to satisfy "
                              "constraint: Member must be a timestamp") from None


async def list_by_function(request: Request) -> Response:
    """ListDurableExecutionsByFunction."""
    q = _query(request)
    statuses = q.get("Statuses", [])
    for status in statuses:
        if status not in STATUSES:
            raise ValidationError(f"1 validation error detected: Value '{status}' at 'statuses' failed to satisfy "
                                  f"constraint: Member must satisfy enum value set: [{', '.join(STATUSES)}]")
    function = unquote(request.path_params["name"])
    return _json(_service(request).list_executions(
        function, _one(q, "Qualifier"), _one(q, "DurableExecutionName"), statuses,
        _timestamp(_one(q, "StartedAfter"), "startedAfter"), _timestamp(_one(q, "StartedBefore"), "startedBefore"),
        _bool(q, "ReverseOrder", False), _one(q, "Marker"), _int(q, "MaxItems")))


@dataclass(frozen=True)
class DurableAnswer:
    """The Invoke answer that started (or found) a durable execution: status, body and headers."""

    status: int
    payload: bytes
    headers: dict[str, str]


async def start(platform: Any, name: str, qualifier: str | None, payload: bytes, invocation_type: str,
                headers: dict[bytes, bytes]) -> DurableAnswer:
    """Invoke on a durable function: start (or find) the execution; `Event` answers 202 at once,
    `RequestResponse` waits for its end (at most 15 minutes)."""
    service: DurableService = platform.durable
    if invocation_type not in ("RequestResponse", "Event", "DryRun"):
        raise ValidationError(
            f"1 validation error detected: Value '{invocation_type}' at 'invocationType' failed to "
            "satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]")
    if payload.strip():
        try:
            json.loads(payload)
        except ValueError as exc:
            raise InvalidRequestContent(
                f"Could not parse request body into json: Could not parse payload into json: {exc}") from None
    request_id = str(uuid.uuid4())
    if invocation_type == "DryRun":
        return DurableAnswer(204, b"", {"x-amzn-RequestId": request_id})
    exec_name = headers.get(b"x-amz-durable-execution-name")
    trace = headers.get(b"x-amzn-trace-id")
    started = service.start_execution(name, qualifier, payload, exec_name.decode("latin-1") if exec_name else None,
                                      trace_id=trace.decode("latin-1") if trace else None)
    out = {"X-Amz-Durable-Execution-Arn": started.arn, "X-Amz-Executed-Version": started.version,
           "x-amzn-RequestId": request_id}
    if invocation_type == "Event":
        return DurableAnswer(202, b"", out)
    row = await service.wait_for_end(started.arn)
    if row is None:
        out["X-Amz-Function-Error"] = "Unhandled"
        return DurableAnswer(200, json.dumps({
            "errorType": "Durable.ExecutionStillRunning",
            "errorMessage": "The durable execution is still running after 15 minutes; poll GetDurableExecution."
        }).encode(), out)
    if row["status"] == "SUCCEEDED":
        return DurableAnswer(200, (row["result"] or "").encode(), out)
    error = row["error"] or {}
    out["X-Amz-Function-Error"] = "Unhandled"
    doc: dict[str, Any] = {"errorType": error.get("ErrorType") or f"Execution.{row['status']}",
                           "errorMessage": error.get("ErrorMessage") or row["status"]}
    if error.get("StackTrace"):
        doc["stackTrace"] = error["StackTrace"]
    return DurableAnswer(200, json.dumps(doc).encode(), out)


routes = [
    Route("/2025-12-01/durable-executions/{rest:path}", executions, methods=["GET", "POST", "DELETE"]),
    Route("/2025-12-01/durable-execution-callbacks/{rest:path}", callbacks, methods=["POST"]),
    Route("/2025-12-01/functions/{name}/durable-executions", list_by_function, methods=["GET"]),
]
