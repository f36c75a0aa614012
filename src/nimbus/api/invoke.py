"""`POST /2015-03-31/functions/{name}/invocations`: the Invoke API. Reads headers and body, hands them to
the invoker, and writes the answer in one send (a split write stalls keep-alive clients on delayed ACK)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.body import read_body
from nimbus.platform import Platform


async def invoke(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    headers = request.headers
    invocation_type = headers.get("x-amz-invocation-type", "RequestResponse")
    limit = (
        platform.settings.async_payload_max_bytes
        if invocation_type == "Event"
        else platform.settings.sync_payload_max_bytes
    )
    payload = await read_body(request, limit)
    outcome = await platform.invoker.invoke(
        request.path_params["name"],
        request.query_params.get("Qualifier"),
        payload,
        invocation_type=invocation_type,
        log_type=headers.get("x-amz-log-type", "None"),
        client_context=headers.get("x-amz-client-context"),
        trace_id=headers.get("x-amzn-trace-id"),
    )
    return Response(outcome.payload, outcome.status, outcome.headers, media_type="application/json")


routes = [Route("/2015-03-31/functions/{name}/invocations", invoke, methods=["POST"])]
