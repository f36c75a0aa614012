"""The EventBridge Scheduler API (botocore's `scheduler` rest-json model): `/schedules/{Name}`,
`/schedule-groups/{Name}`, `/tags/{ResourceArn}`, with Scheduler's error shape (`X-Amzn-ErrorType`,
`{"Message"}`). Also `GET /nimbus/v1/schedules` (every schedule with its next fire time, for the CLI)."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from nimbus.api.body import read_body
from nimbus.events.schedules.service import Scheduler, SchedulerValidation
from nimbus.events.sources import EventSources


def _scheduler(request: Request) -> Scheduler:
    sources: EventSources = request.app.state.platform.sources
    return sources.scheduler


def _json(data: Any) -> Response:
    return JSONResponse(data, headers={"x-amzn-RequestId": str(uuid.uuid4())})


async def _body(request: Request) -> dict[str, Any]:
    import json

    raw = await read_body(request, request.app.state.platform.settings.request_body_max_bytes)
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        raise SchedulerValidation("The request body is not valid JSON.") from None
    if not isinstance(doc, dict):
        raise SchedulerValidation("The request body must be a JSON object.")
    return doc


def _max_results(request: Request) -> int | None:
    raw = request.query_params.get("MaxResults")
    if raw is None:
        return None
    if not re.fullmatch(r"\d{1,4}", raw):
        raise SchedulerValidation("MaxResults must be between 1 and 100.")
    return int(raw)


async def create_schedule(request: Request) -> Response:
    return _json(await _scheduler(request).create(request.path_params["name"], await _body(request)))


async def update_schedule(request: Request) -> Response:
    return _json(await _scheduler(request).update(request.path_params["name"], await _body(request)))


async def get_schedule(request: Request) -> Response:
    return _json(await _scheduler(request).get(request.path_params["name"], request.query_params.get("groupName")))


async def delete_schedule(request: Request) -> Response:
    return _json(await _scheduler(request).delete(request.path_params["name"],
                                                  request.query_params.get("groupName")))


async def list_schedules(request: Request) -> Response:
    q = request.query_params
    return _json(await _scheduler(request).list_schedules(q.get("ScheduleGroup"), q.get("NamePrefix"), q.get("State"),
                                                _max_results(request), q.get("NextToken")))


async def create_group(request: Request) -> Response:
    return _json(await _scheduler(request).create_group(request.path_params["name"], await _body(request)))


async def get_group(request: Request) -> Response:
    return _json(await _scheduler(request).get_group(request.path_params["name"]))


async def delete_group(request: Request) -> Response:
    return _json(await _scheduler(request).delete_group(request.path_params["name"]))


async def list_groups(request: Request) -> Response:
    q = request.query_params
    return _json(await _scheduler(request).list_groups(q.get("NamePrefix"), _max_results(request),
                                                       q.get("NextToken")))


def _arn(request: Request) -> str:
    return unquote(request.path_params["arn"])


async def tag(request: Request) -> Response:
    return _json(await _scheduler(request).tag(_arn(request), await _body(request)))


async def untag(request: Request) -> Response:
    return _json(await _scheduler(request).untag(_arn(request), request.query_params.getlist("TagKeys")))


async def list_tags(request: Request) -> Response:
    return _json(await _scheduler(request).list_tags(_arn(request)))


async def overview(request: Request) -> Response:
    return _json({"Schedules": await _scheduler(request).overview()})


routes: list[BaseRoute] = [
    Route("/schedules", list_schedules, methods=["GET"]),
    Route("/schedules/{name}", create_schedule, methods=["POST"]),
    Route("/schedules/{name}", update_schedule, methods=["PUT"]),
    Route("/schedules/{name}", get_schedule, methods=["GET"]),
    Route("/schedules/{name}", delete_schedule, methods=["DELETE"]),
    Route("/schedule-groups", list_groups, methods=["GET"]),
    Route("/schedule-groups/{name}", create_group, methods=["POST"]),
    Route("/schedule-groups/{name}", get_group, methods=["GET"]),
    Route("/schedule-groups/{name}", delete_group, methods=["DELETE"]),
    Route("/tags/{arn:path}", tag, methods=["POST"]),
    Route("/tags/{arn:path}", untag, methods=["DELETE"]),
    Route("/tags/{arn:path}", list_tags, methods=["GET"]),
    Route("/nimbus/v1/schedules", overview, methods=["GET"]),
]
