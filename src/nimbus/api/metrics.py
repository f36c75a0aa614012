"""`GET /metrics` (Prometheus text format, unauthenticated like a health probe) and `GET /nimbus/v1/cost`
(metered usage priced with AWS's price table; signed like the rest of the API, used by `nimbus cost`).
The figures come from observe/ (the platform's collector, the meter); this module only serves them."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nimbus.observe.cost import cost_report
from nimbus.platform import Platform


async def metrics(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    return Response(await platform.collector.exposition(), media_type=CONTENT_TYPE_LATEST)


async def cost(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    q = request.query_params
    function = q.get("function")
    # The free tier is the account's: credited on the whole bill, not on one function's share of it.
    free = q.get("freeTier", "false" if function else "true").lower() != "false"
    return JSONResponse(await cost_report(platform.observer.meter, q.get("month"), function, free))


routes = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/nimbus/v1/cost", cost, methods=["GET"]),
]
