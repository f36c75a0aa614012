"""The CloudWatch Logs API subset, in AWS's JSON 1.1 protocol (`POST /` with
`X-Amz-Target: Logs_20140328.<Operation>`), as botocore's `logs` model defines it: DescribeLogGroups,
DescribeLogStreams, GetLogEvents, FilterLogEvents, CreateLogGroup, DeleteLogGroup, CreateLogStream,
DeleteLogStream, PutLogEvents, PutRetentionPolicy, DeleteRetentionPolicy.

Errors use the JSON protocol's shape, `{"__type": ..., "message": ...}` with status 400, which is what
botocore parses for this service (not Lambda's REST error shape)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from nimbus.api.body import read_body
from nimbus.api.responses import request_id_header
from nimbus.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    LambdaError,
    RequestTooLarge,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from nimbus.observe.logstore import EVENTS_LIMIT, LogStore

log = logging.getLogger("nimbus.api.logs")

CONTENT_TYPE = "application/x-amz-json-1.1"
BODY_LIMIT = 2 * 1024 * 1024  # PutLogEvents batches are at most 1 MB; leave room for JSON escaping

_GROUP_NAME = re.compile(r"^[.\-_/#A-Za-z0-9]{1,512}$")
_GROUP_ARN = re.compile(r"^arn:[^:]+:logs:[^:]*:[^:]*:log-group:([^:]+)(?::\*)?$")

# nimbus error -> CloudWatch Logs error code.
_LOGS_ERROR_NAMES: dict[type[LambdaError], str] = {
    ResourceNotFound: "ResourceNotFoundException",
    ResourceConflict: "ResourceAlreadyExistsException",
    InvalidParameterValue: "InvalidParameterException",
    ValidationError: "InvalidParameterException",
    InvalidRequestContent: "SerializationException",
    RequestTooLarge: "InvalidParameterException",
}


class _Body:
    """Typed, checked access to a JSON request body; every problem is an InvalidParameterException."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise InvalidParameterValue(
                f"1 validation error detected: Value null at '{key}' failed to satisfy constraint: "
                "Member must not be null"
            )
        return value

    def get_str(self, key: str, required: bool = False, max_len: int = 512) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidParameterValue(f"Value at '{key}' must be a string")
        if not value or len(value) > max_len:
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{value[:64]}' at '{key}' failed to satisfy constraint: "
                f"Member must have length between 1 and {max_len}"
            )
        return value

    def get_int(self, key: str, lo: int = 0, hi: int | None = None, required: bool = False) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameterValue(f"Value at '{key}' must be an integer")
        if value < lo or (hi is not None and value > hi):
            bound = f"less than or equal to {hi}" if hi is not None and value > hi else f"greater than or equal to {lo}"
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{value}' at '{key}' failed to satisfy constraint: "
                f"Member must have value {bound}"
            )
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidParameterValue(f"Value at '{key}' must be a boolean")
        return value

    def str_list(self, key: str, max_items: int) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise InvalidParameterValue(f"Value at '{key}' must be a list of non-empty strings")
        if not 1 <= len(value) <= max_items:
            raise InvalidParameterValue(f"Value at '{key}' must have between 1 and {max_items} items")
        return value

    def group(self, required: bool = True) -> str:
        """The log group from `logGroupName` or `logGroupIdentifier` (a name or an ARN), not both."""
        name = self.get_str("logGroupName")
        ident = self.get_str("logGroupIdentifier", max_len=2048)
        if name and ident:
            raise InvalidParameterValue("LogGroupName and LogGroupIdentifier are mutually exclusive parameters.")
        if ident:
            m = _GROUP_ARN.match(ident)
            name = m.group(1) if m else ident
        if not name:
            if required:
                raise InvalidParameterValue("Either logGroupName or logGroupIdentifier must be specified.")
            return ""
        if not _GROUP_NAME.match(name):
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{name[:64]}' at 'logGroupName' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"
            )
        return name

    def stream(self, key: str = "logStreamName", required: bool = True) -> str | None:
        value = self.get_str(key, required)
        if value is not None and (":" in value or "*" in value):
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{value[:64]}' at '{key}' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: [^:*]*"
            )
        return value


Handler = Callable[[LogStore, _Body], Awaitable[dict[str, Any]]]


async def _describe_log_groups(store: LogStore, body: _Body) -> dict[str, Any]:
    prefix = body.get_str("logGroupNamePrefix")
    pattern = body.data.get("logGroupNamePattern")
    if pattern is not None and not isinstance(pattern, str):
        raise InvalidParameterValue("Value at 'logGroupNamePattern' must be a string")
    if prefix and pattern:
        raise InvalidParameterValue("LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive parameters.")
    idents = body.str_list("logGroupIdentifiers", 50)
    names = None
    if idents:
        names = [(m.group(1) if (m := _GROUP_ARN.match(i)) else i) for i in idents]
    groups, token = await store.run(
        store.describe_log_groups,
        prefix=prefix,
        pattern=pattern or None,
        names=names,
        limit=body.get_int("limit", 1, 50),
        next_token=body.get_str("nextToken", max_len=4096),
    )
    out: dict[str, Any] = {"logGroups": groups}
    if token:
        out["nextToken"] = token
    return out


async def _describe_log_streams(store: LogStore, body: _Body) -> dict[str, Any]:
    order_by = body.get_str("orderBy") or "LogStreamName"
    if order_by not in ("LogStreamName", "LastEventTime"):
        raise InvalidParameterValue(
            f"1 validation error detected: Value '{order_by}' at 'orderBy' failed to satisfy constraint: "
            "Member must satisfy enum value set: [LogStreamName, LastEventTime]"
        )
    streams, token = await store.run(
        store.describe_log_streams,
        body.group(),
        prefix=body.stream("logStreamNamePrefix", required=False),
        order_by=order_by,
        descending=body.get_bool("descending", False),
        limit=body.get_int("limit", 1, 50),
        next_token=body.get_str("nextToken", max_len=4096),
    )
    out: dict[str, Any] = {"logStreams": streams}
    if token:
        out["nextToken"] = token
    return out


async def _get_log_events(store: LogStore, body: _Body) -> dict[str, Any]:
    page = await store.run(
        store.get_log_events,
        body.group(),
        body.stream() or "",
        start_time=body.get_int("startTime"),
        end_time=body.get_int("endTime"),
        next_token=body.get_str("nextToken", max_len=4096),
        limit=body.get_int("limit", 1, EVENTS_LIMIT),
        start_from_head=body.get_bool("startFromHead", False),
    )
    return {
        "events": page.events,
        "nextForwardToken": page.next_forward_token,
        "nextBackwardToken": page.next_backward_token,
    }


async def _filter_log_events(store: LogStore, body: _Body) -> dict[str, Any]:
    pattern = body.data.get("filterPattern")
    if pattern is not None and (not isinstance(pattern, str) or len(pattern) > 1024):
        raise InvalidParameterValue("Value at 'filterPattern' must be a string of at most 1024 characters")
    body.get_bool("interleaved", True)  # validated; CloudWatch ignores it and always interleaves
    page = await store.run(
        store.filter_log_events,
        body.group(),
        stream_names=body.str_list("logStreamNames", 100),
        stream_prefix=body.stream("logStreamNamePrefix", required=False),
        start_time=body.get_int("startTime"),
        end_time=body.get_int("endTime"),
        filter_pattern=pattern,
        next_token=body.get_str("nextToken", max_len=4096),
        limit=body.get_int("limit", 1, EVENTS_LIMIT),
        start_from_head=body.get_bool("startFromHead", True),
    )
    out: dict[str, Any] = {"events": page.events, "searchedLogStreams": page.searched_streams}
    if page.next_token:
        out["nextToken"] = page.next_token
    return out


async def _create_log_group(store: LogStore, body: _Body) -> dict[str, Any]:
    name = body.group()
    await store.run(store.create_log_group, name)
    return {}


async def _delete_log_group(store: LogStore, body: _Body) -> dict[str, Any]:
    await store.run(store.delete_log_group, body.group())
    return {}


async def _create_log_stream(store: LogStore, body: _Body) -> dict[str, Any]:
    await store.run(store.create_log_stream, body.group(), body.stream() or "")
    return {}


async def _delete_log_stream(store: LogStore, body: _Body) -> dict[str, Any]:
    await store.run(store.delete_log_stream, body.group(), body.stream() or "")
    return {}


async def _put_retention_policy(store: LogStore, body: _Body) -> dict[str, Any]:
    days = body.get_int("retentionInDays", required=True)
    await store.run(store.put_retention_policy, body.group(), days)
    return {}


async def _delete_retention_policy(store: LogStore, body: _Body) -> dict[str, Any]:
    await store.run(store.put_retention_policy, body.group(), None)
    return {}


async def _put_log_events(store: LogStore, body: _Body) -> dict[str, Any]:
    group, stream = body.group(), body.stream() or ""
    raw = body.data.get("logEvents")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 10_000:
        raise InvalidParameterValue("logEvents must be a list of 1 to 10000 events")
    events: list[tuple[int, str]] = []
    total = 0
    for item in raw:
        ev = _Body(item) if isinstance(item, dict) else None
        if ev is None:
            raise InvalidParameterValue("Each log event must be an object with timestamp and message")
        ts = ev.get_int("timestamp", required=True)
        msg = ev.data.get("message")
        if not isinstance(msg, str) or not msg:
            raise InvalidParameterValue("Each log event needs a non-empty message")
        total += len(msg.encode()) + 26
        events.append((ts or 0, msg))
    if total > 1_048_576:
        raise InvalidParameterValue("Log event batch is larger than 1,048,576 bytes.")
    rejected = await store.run(store.put_log_events, group, stream, events)
    out: dict[str, Any] = {"nextSequenceToken": uuid.uuid4().int.__str__()[:56]}
    if rejected:
        out["rejectedLogEventsInfo"] = rejected
    return out


OPERATIONS: dict[str, Handler] = {
    "DescribeLogGroups": _describe_log_groups,
    "DescribeLogStreams": _describe_log_streams,
    "GetLogEvents": _get_log_events,
    "FilterLogEvents": _filter_log_events,
    "CreateLogGroup": _create_log_group,
    "DeleteLogGroup": _delete_log_group,
    "CreateLogStream": _create_log_stream,
    "DeleteLogStream": _delete_log_stream,
    "PutRetentionPolicy": _put_retention_policy,
    "DeleteRetentionPolicy": _delete_retention_policy,
    "PutLogEvents": _put_log_events,
}


def _response(doc: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(doc, separators=(",", ":")),
        status_code=status,
        media_type=CONTENT_TYPE,
        headers=request_id_header(),
    )


def error_response(code: str, message: str, status: int = 400) -> Response:
    """An error in the JSON protocol's shape."""
    return _response({"__type": code, "message": message}, status)


async def handle(request: Request, operation: str) -> Response:
    """Answer one `Logs_20140328.<operation>` call."""
    handler = OPERATIONS.get(operation)
    if handler is None:
        return error_response("UnknownOperationException", f"Unknown operation Logs_20140328.{operation}")
    try:
        raw = await read_body(request, BODY_LIMIT)
        try:
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return error_response("SerializationException", "Could not parse the request body as JSON.")
        if not isinstance(data, dict):
            return error_response("SerializationException", "The request body must be a JSON object.")
        store: LogStore = request.app.state.platform.logstore
        return _response(await handler(store, _Body(data)))
    except LambdaError as exc:
        code = next((name for cls, name in _LOGS_ERROR_NAMES.items() if isinstance(exc, cls)), None)
        if code is None:
            return error_response("ServiceUnavailableException", exc.message, 500)
        return error_response(code, exc.message)
    except Exception:
        log.exception("CloudWatch Logs operation %s failed", operation)
        return error_response("ServiceUnavailableException", "An internal error occurred. See the server log.", 500)
