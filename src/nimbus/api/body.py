"""Reading request bodies and query strings into checked Python values, with Lambda's errors."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import pydantic
from starlette.requests import Request
from starlette.types import Message, Receive

from nimbus.control.validation import check_range, constraint
from nimbus.errors import InvalidParameterValue, InvalidRequestContent, RequestTooLarge

M = TypeVar("M", bound=pydantic.BaseModel)


async def receive_body(receive: Receive, declared: bytes | None, limit: int, operation: str = "") -> bytes:
    """The whole body of a raw ASGI request (`declared`: its Content-Length header), refusing more than
    `limit` bytes; `operation` ends the error message (e.g. " for the InvokeFunction operation")."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request must be smaller than {limit} bytes{operation}")
    message: Message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body  # the common case: one message, no copy
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request must be smaller than {limit} bytes{operation}")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes without reading it all into memory first."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the operation.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the operation.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body; an empty body is `{}`."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequestContent("Could not parse request body into json: expected a JSON object")
    return value


def validate(model: type[M], data: Any) -> M:
    """Validate `data` against a pydantic model, turning its errors into one Lambda-style message."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err["loc"]) or "body"
            problems.append(f"Value at '{where}' failed to satisfy constraint: {err['msg']}")
        n = exc.error_count()
        plural = "s" if n > 1 else ""
        raise InvalidParameterValue(f"{n} validation error{plural} detected: " + "; ".join(problems)) from None


def max_items(request: Request, high: int) -> int | None:
    """The `MaxItems` query parameter of a List operation: None when absent, else an integer in 1..`high`
    (the operation's limit in AWS's model), or Lambda's ValidationException."""
    raw = request.query_params.get("MaxItems")
    if raw is None:
        return None
    if not re.fullmatch(r"-?\d{1,10}", raw):
        raise constraint(raw, "maxItems", "Member must be an integer")
    value = int(raw)
    check_range(value, "maxItems", 1, high)
    return value
