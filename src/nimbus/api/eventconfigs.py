"""Routes of the async invocation pipeline: the event-invoke config API at botocore's paths
(`/2019-09-25/functions/{name}/event-invoke-config[/list]`), the legacy InvokeAsync, and nimbus's queue figures
(`GET /nimbus/v1/functions/{name}/async-queue`, `GET /nimbus/v1/async-queue`)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from nimbus.api.body import max_items, parse_json_object, read_body
from nimbus.api.responses import json_response, no_content
from nimbus.errors import RequestTooLarge
from nimbus.invoke.asyncpipeline import AsyncPipeline


def _pipeline(request: Request) -> AsyncPipeline:
    pipeline: AsyncPipeline = request.app.state.platform.asyncs
    return pipeline


def _json(data: Any, status: int = 200) -> Response:
    return json_response(data, status)


async def _body(request: Request) -> dict[str, Any]:
    limit: int = request.app.state.platform.settings.request_body_max_bytes
    return parse_json_object(await read_body(request, limit))


def _qualifier(request: Request) -> str | None:
    return request.query_params.get("Qualifier")


async def put_config(request: Request) -> Response:
    body = await _body(request)
    configs = _pipeline(request).configs
    return _json(await asyncio.to_thread(configs.put, request.path_params["name"], _qualifier(request), body))


async def update_config(request: Request) -> Response:
    body = await _body(request)
    configs = _pipeline(request).configs
    return _json(await asyncio.to_thread(configs.update, request.path_params["name"], _qualifier(request), body))


async def get_config(request: Request) -> Response:
    configs = _pipeline(request).configs
    return _json(await asyncio.to_thread(configs.get, request.path_params["name"], _qualifier(request)))


async def delete_config(request: Request) -> Response:
    configs = _pipeline(request).configs
    await asyncio.to_thread(configs.delete, request.path_params["name"], _qualifier(request))
    return no_content()


async def list_configs(request: Request) -> Response:
    configs = _pipeline(request).configs
    result = await asyncio.to_thread(configs.list, request.path_params["name"], request.query_params.get("Marker"),
                                     max_items(request, 50))
    return _json(result)


def _figures(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "FunctionName": doc["function_name"],
        "Depth": doc["depth"],
        "InFlight": doc["in_flight"],
        "Delayed": doc["delayed"],
        "OldestEventAgeMs": doc["oldest_event_age_ms"],
    }


async def function_queue(request: Request) -> Response:
    """Depth (events queued or in delivery), in flight, delayed for a retry, and the oldest event's age."""
    pipeline = _pipeline(request)
    name = pipeline.registry.split_qualifier(request.path_params["name"])[0]
    await asyncio.to_thread(pipeline.registry.snapshot, name)  # 404 for an unknown function
    rows = await pipeline.queue_figures(name)
    doc = _figures(rows[0]) if rows else {"FunctionName": name, "Depth": 0, "InFlight": 0, "Delayed": 0,
                                          "OldestEventAgeMs": None}
    doc["Running"] = pipeline.dispatcher.running(name)
    return _json(doc)


async def all_queues(request: Request) -> Response:
    pipeline = _pipeline(request)
    rows = await pipeline.queue_figures()
    d = pipeline.dispatcher
    return _json({
        "Functions": [_figures(r) for r in rows],
        "Dispatcher": {"Running": d.running(), "MaxConcurrency": d.max_concurrency, "Delivered": d.delivered,
                       "Retried": d.retried, "Throttled": d.throttled, "Failed": d.failed, "Dropped": d.dropped},
    })


async def invoke_async(request: Request) -> Response:
    """InvokeAsync, AWS's deprecated predecessor of `Invoke` with `InvocationType=Event`: same queue, 202."""
    platform = request.app.state.platform
    limit = platform.settings.async_payload_max_bytes
    try:
        payload = await read_body(request, limit)
    except RequestTooLarge:
        raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the InvokeAsync operation") from None
    outcome = await platform.invoker.invoke(request.path_params["name"], None, payload, invocation_type="Event")
    return JSONResponse({"Status": 202}, status_code=202, headers={"x-amzn-RequestId": outcome.request_id})


_C = "/2019-09-25/functions/{name}/event-invoke-config"

routes: list[BaseRoute] = [
    Route(_C, put_config, methods=["PUT"]),
    Route(_C, update_config, methods=["POST"]),
    Route(_C, get_config, methods=["GET"]),
    Route(_C, delete_config, methods=["DELETE"]),
    Route(_C + "/list", list_configs, methods=["GET"]),
    Route("/2014-11-13/functions/{name}/invoke-async", invoke_async, methods=["POST"]),
    Route("/2014-11-13/functions/{name}/invoke-async/", invoke_async, methods=["POST"]),
    Route("/nimbus/v1/functions/{name}/async-queue", function_queue, methods=["GET"]),
    Route("/nimbus/v1/async-queue", all_queues, methods=["GET"]),
]
