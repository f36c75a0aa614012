"""Routes of event source mappings on the Lambda REST API (`/2015-03-31/event-source-mappings[/{UUID}]`), with
botocore's status codes (202 for Create, Update and Delete), and nimbus's per-mapping figures
(`GET /nimbus/v1/event-source-mappings/{UUID}/stats`)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from nimbus.api.body import parse_json_object, read_body
from nimbus.errors import InvalidParameterValue
from nimbus.events.sources import EventSources


def _sources(request: Request) -> EventSources:
    sources: EventSources = request.app.state.platform.sources
    return sources


def _json(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers={"x-amzn-RequestId": str(uuid.uuid4())})


async def _body(request: Request) -> dict[str, Any]:
    limit: int = request.app.state.platform.settings.request_body_max_bytes
    return parse_json_object(await read_body(request, limit))


async def create(request: Request) -> Response:
    return _json(await _sources(request).mappings.create(await _body(request)), 202)


async def get(request: Request) -> Response:
    return _json(await _sources(request).mappings.get(request.path_params["uuid"]))


async def update(request: Request) -> Response:
    body = await _body(request)
    return _json(await _sources(request).mappings.update(request.path_params["uuid"], body), 202)


async def delete(request: Request) -> Response:
    return _json(await _sources(request).mappings.delete(request.path_params["uuid"]), 202)


async def list_mappings(request: Request) -> Response:
    q = request.query_params
    raw = q.get("MaxItems")
    if raw is not None and not re.fullmatch(r"-?\d{1,10}", raw):
        raise InvalidParameterValue(f"Invalid MaxItems: {raw}")
    result = await _sources(request).mappings.list_mappings(
        q.get("EventSourceArn"), q.get("FunctionName"), q.get("Marker"), int(raw) if raw is not None else None)
    return _json(result)


async def stats(request: Request) -> Response:
    sources = _sources(request)
    mapping_uuid = request.path_params["uuid"]
    doc = await sources.mappings.get(mapping_uuid)
    s = sources.pollers.stats(mapping_uuid)
    return _json({"UUID": mapping_uuid, "State": doc["State"], "Batches": s.batches, "Messages": s.messages,
                  "FailedBatches": s.failed_batches, "FailedItems": s.failed_items, "Filtered": s.filtered,
                  "ConcurrentBatches": s.workers, "PeakConcurrentBatches": s.peak_workers})


_BASE = "/2015-03-31/event-source-mappings"
routes: list[BaseRoute] = [
    Route(_BASE, create, methods=["POST"]),
    Route(_BASE + "/", create, methods=["POST"]),
    Route(_BASE, list_mappings, methods=["GET"]),
    Route(_BASE + "/", list_mappings, methods=["GET"]),
    Route(_BASE + "/{uuid}", get, methods=["GET"]),
    Route(_BASE + "/{uuid}", update, methods=["PUT"]),
    Route(_BASE + "/{uuid}", delete, methods=["DELETE"]),
    Route("/nimbus/v1/event-source-mappings/{uuid}/stats", stats, methods=["GET"]),
]
