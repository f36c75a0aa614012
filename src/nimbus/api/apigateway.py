"""The `apigatewayv2` management API for HTTP APIs (rest-json under `/v2/apis`, SigV4 service `apigateway`):
Create/Get/Update/Delete of APIs, routes, integrations and stages, answered in botocore's shapes (camelCase,
`{"items": [...]}` lists, 201 on create, 204 on delete) so `aws apigatewayv2` and boto3 work. Errors are API
Gateway's own (`NotFoundException`, `BadRequestException`, `ConflictException`)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nimbus.api.body import parse_json_object
from nimbus.api.body import read_body as read_request_body
from nimbus.control.httpapis import HttpApis

_A = "/v2/apis"
_KINDS = {"routes": "routeId", "integrations": "integrationId", "stages": "stageName"}


def _apis(request: Request) -> HttpApis:
    apis: HttpApis = request.app.state.platform.http_apis
    return apis


def _json(doc: Any, status: int = 200) -> Response:
    return JSONResponse(doc, status_code=status, headers={"x-amzn-RequestId": str(uuid.uuid4())})


async def _body(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_request_body(request, 1024 * 1024))


async def create_api(request: Request) -> Response:
    return _json(await asyncio.to_thread(_apis(request).create_api, await _body(request)), 201)


async def get_apis(request: Request) -> Response:
    return _json({"items": await asyncio.to_thread(_apis(request).list_apis)})


async def get_api(request: Request) -> Response:
    return _json(await asyncio.to_thread(_apis(request).get_api, request.path_params["api"]))


async def update_api(request: Request) -> Response:
    body = await _body(request)
    return _json(await asyncio.to_thread(_apis(request).update_api, request.path_params["api"], body))


async def delete_api(request: Request) -> Response:
    await asyncio.to_thread(_apis(request).delete_api, request.path_params["api"])
    return Response(status_code=204, headers={"x-amzn-RequestId": str(uuid.uuid4())})


def _kind(request: Request) -> str:
    return str(request.url.path.rstrip("/").split("/")[4])


async def create_part(request: Request) -> Response:
    body = await _body(request)
    return _json(await asyncio.to_thread(_apis(request).create, request.path_params["api"], _kind(request), body),
                 201)


async def get_parts(request: Request) -> Response:
    items = await asyncio.to_thread(_apis(request).get, request.path_params["api"], _kind(request))
    return _json({"items": items})


async def get_part(request: Request) -> Response:
    return _json(await asyncio.to_thread(_apis(request).get, request.path_params["api"], _kind(request),
                                         request.path_params["ident"]))


async def update_part(request: Request) -> Response:
    body = await _body(request)
    return _json(await asyncio.to_thread(_apis(request).update, request.path_params["api"], _kind(request),
                                         request.path_params["ident"], body))


async def delete_part(request: Request) -> Response:
    await asyncio.to_thread(_apis(request).delete, request.path_params["api"], _kind(request),
                            request.path_params["ident"])
    return Response(status_code=204, headers={"x-amzn-RequestId": str(uuid.uuid4())})


routes = [
    Route(_A, create_api, methods=["POST"]),
    Route(_A, get_apis, methods=["GET"]),
    Route(_A + "/{api}", get_api, methods=["GET"]),
    Route(_A + "/{api}", update_api, methods=["PATCH"]),
    Route(_A + "/{api}", delete_api, methods=["DELETE"]),
    *(r for kind in _KINDS for r in (
        Route(f"{_A}/{{api}}/{kind}", create_part, methods=["POST"]),
        Route(f"{_A}/{{api}}/{kind}", get_parts, methods=["GET"]),
        Route(f"{_A}/{{api}}/{kind}/{{ident}}", get_part, methods=["GET"]),
        Route(f"{_A}/{{api}}/{kind}/{{ident}}", update_part, methods=["PATCH"]),
        Route(f"{_A}/{{api}}/{kind}/{{ident}}", delete_part, methods=["DELETE"]),
    )),
]
