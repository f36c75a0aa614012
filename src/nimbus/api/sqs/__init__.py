"""The SQS HTTP surface on nimbus's own port: JSON 1.0 (`X-Amz-Target: AmazonSQS.*`, any path) and the query
protocol (`Action=…` at `/` or at a queue URL `/<account>/<queue>`), both SigV4-signed for service `sqs`
(api/auth.py). Queue URLs are `<the request's own scheme and host>/<account>/<queue name>`."""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nimbus.api.sqs import wire
from nimbus.api.sqs.operations import Call, dispatch
from nimbus.errors import UnknownOperation
from nimbus.events.sqs.errors import InternalError, InvalidParameterValue, SqsError
from nimbus.ids import new_request_id

log = logging.getLogger("nimbus.api.sqs")

TARGET_PREFIX = "AmazonSQS."
QUEUE_PATH = re.compile(r"^/(\d{12})/([A-Za-z0-9_.-]{1,80})/?$")
FORM = "application/x-www-form-urlencoded"


def claims(request: Request) -> bool:
    """Whether a request at `/` is for SQS: its JSON target, or a query-protocol form (no target)."""
    target = request.headers.get("x-amz-target")
    if target is not None:
        return target.startswith(TARGET_PREFIX)
    return request.headers.get("content-type", "").startswith(FORM) or "Action=" in request.url.query


async def handle(request: Request) -> Response:
    """Serve one SQS request in the protocol it came in."""
    request_id = new_request_id()
    target = request.headers.get("x-amz-target")
    is_json = target is not None
    match = QUEUE_PATH.match(request.url.path)
    path_queue = (match.group(1), match.group(2)) if match else None
    body = await request.body()
    action = ""
    try:
        if is_json:
            assert target is not None
            action = target.removeprefix(TARGET_PREFIX)
            try:
                params = wire.parse_json(body)
            except ValueError:
                raise InvalidParameterValue("The request body is not valid JSON.") from None
        else:
            action, params = wire.parse_query(body, request.url.query)
        principal = request.scope.get("state", {}).get("principal")
        service = request.app.state.platform.sqs
        sender = getattr(principal, "access_key_id", None) or service.account
        base = f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"
        trace = request.headers.get("x-amzn-trace-id")
        result = await dispatch(service, action, Call(params, base, path_queue, sender, trace))
    except SqsError as exc:
        return _error(exc, is_json, request_id)
    except Exception:
        log.exception("SQS %s failed", action or "request")
        return _error(InternalError("We encountered an internal error. Please try again."), is_json, request_id)
    if is_json:
        return Response(wire.json_reply(result), headers={"x-amzn-RequestId": request_id},
                        media_type=wire.JSON_CONTENT_TYPE)
    return Response(wire.xml_reply(action, result, request_id), headers={"x-amzn-RequestId": request_id},
                    media_type="text/xml")


def _error(exc: SqsError, is_json: bool, request_id: str) -> Response:
    if is_json:
        body, headers = wire.json_error(exc)
        return Response(body, status_code=exc.status, headers={**headers, "x-amzn-RequestId": request_id},
                        media_type=wire.JSON_CONTENT_TYPE)
    return Response(wire.xml_error(exc, request_id), status_code=exc.status,
                    headers={"x-amzn-RequestId": request_id}, media_type="text/xml")


async def queue_url(request: Request) -> Response:
    """A request posted to a queue URL (query clients; the PHP SDK's JSON too). Other two-segment paths are
    not SQS's: they answer Lambda's unknown-operation error, as before."""
    if QUEUE_PATH.match(request.url.path) is None:
        raise UnknownOperation(f"Unknown operation: {request.method} {request.url.path}")
    return await handle(request)



async def queue_figures(request: Request) -> Response:
    """`GET /nimbus/v1/queues`: every queue's depth, in flight, delayed, oldest message and counters (for
    `nimbus queues`; signed like the rest of nimbus's own API)."""
    service = request.app.state.platform.sqs
    base = f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"
    return JSONResponse({"Queues": [
        {"QueueName": s.name, "QueueArn": s.arn, "QueueUrl": f"{base}/{service.account}/{s.name}",
         "FifoQueue": s.fifo, "Visible": s.depth, "InFlight": s.in_flight, "Delayed": s.delayed,
         "OldestSentTimestamp": s.oldest_sent_ms, "Sent": s.sent, "Received": s.received, "Deleted": s.deleted}
        for s in service.stats()]})


routes = [
    Route("/nimbus/v1/queues", queue_figures, methods=["GET"]),
    Route("/{account}/{queue}", queue_url, methods=["GET", "POST"]),
]

__all__ = ["claims", "handle", "routes"]
