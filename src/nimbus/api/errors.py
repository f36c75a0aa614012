"""Maps every exception to Lambda's error shape, once: `x-amzn-ErrorType` header, JSON body with `Type`
and `message`, the right status. Bad input never becomes a 500 or a stack trace."""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from nimbus.api.responses import new_request_id
from nimbus.errors import LambdaError, ServiceError, UnknownOperation, UnsupportedMediaType, service_error

log = logging.getLogger("nimbus.api")


def error_body(exc: LambdaError) -> bytes:
    return json.dumps(exc.body()).encode()


def error_parts(exc: LambdaError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The one mapping: (status, raw ASGI headers, body) of `exc` in Lambda's shape. Headers: the content
    type, the error's own (`x-amzn-ErrorType`, ...), a request id; no content length."""
    headers = [
        (b"content-type", b"application/json"),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers().items()),
        (b"x-amzn-requestid", new_request_id().encode()),
    ]
    return exc.status, headers, error_body(exc)


def error_response(exc: LambdaError) -> Response:
    status, headers, body = error_parts(exc)
    response = Response(body, status_code=status)
    response.raw_headers = [*headers, (b"content-length", str(len(body)).encode())]
    return response


async def on_lambda_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LambdaError)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(UnknownOperation(f"Method {request.method} is not allowed on {request.url.path}"))
    if exc.status_code == 415:
        return error_response(UnsupportedMediaType(str(exc.detail)))
    if exc.status_code == 404:
        return error_response(UnknownOperation(f"Unknown operation: {request.method} {request.url.path}"))
    return error_response(ServiceError(str(exc.detail)))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(service_error(exc))
