"""The Lambda layers API (`/2018-10-31/layers...`): request parsing and answers; the rules live in
`nimbus.control.layers` (the registry's LayerOps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nimbus.api.auth import sign_code_location
from nimbus.api.body import max_items, parse_json_object, read_body
from nimbus.api.responses import json_response, no_content
from nimbus.control.registry import Registry
from nimbus.control.validation import constraint
from nimbus.errors import InvalidParameterValue, InvalidRequestContent

T = TypeVar("T")

_L = "/2018-10-31/layers"


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.platform.registry
    return registry


async def _call(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


def _json(data: Any, status: int = 200) -> Response:
    return json_response(data, status)


def _no_content() -> Response:
    return no_content()


def _public_base(request: Request) -> str:
    configured: str | None = request.app.state.platform.settings.public_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


def _signed(request: Request, doc: dict[str, Any]) -> dict[str, Any]:
    keys = request.app.state.platform.keys
    if "Content" in doc:  # a download link that works for a while, as AWS's S3 URL
        doc["Content"]["Location"] = sign_code_location(keys, doc["Content"]["Location"])
    return doc


def _filters(request: Request) -> tuple[str | None, str | None, str | None, int | None]:
    q = request.query_params
    return q.get("CompatibleRuntime"), q.get("CompatibleArchitecture"), q.get("Marker"), max_items(request, 50)


async def _object(request: Request) -> dict[str, Any]:
    limit: int = request.app.state.platform.settings.request_body_max_bytes
    return parse_json_object(await read_body(request, limit))


def _check_types(body: dict[str, Any], strings: tuple[str, ...], lists: tuple[str, ...] = ()) -> None:
    for key in strings:
        if key in body and body[key] is not None and not isinstance(body[key], str):
            raise InvalidRequestContent(f"Could not parse request body into json: {key} must be a string")
    for key in lists:
        value = body.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
            raise InvalidRequestContent(f"Could not parse request body into json: {key} must be a list of strings")


async def publish_layer_version(request: Request) -> Response:
    body = await _object(request)
    _check_types(body, ("Description", "LicenseInfo"), ("CompatibleRuntimes", "CompatibleArchitectures"))
    if "Content" in body and not isinstance(body["Content"], dict):
        raise InvalidParameterValue("Content must be an object with ZipFile.")
    reg = _registry(request)
    doc = await _call(reg.publish_layer_version, request.path_params["layer"], body, _public_base(request))
    return _json(_signed(request, doc), 201)


async def list_layer_versions(request: Request) -> Response:
    reg = _registry(request)
    return _json(await _call(reg.list_layer_versions, request.path_params["layer"], *_filters(request)))


async def get_layer_version(request: Request) -> Response:
    reg = _registry(request)
    p = request.path_params
    doc = await _call(reg.get_layer_version, p["layer"], p["version"], _public_base(request))
    return _json(_signed(request, doc))


async def delete_layer_version(request: Request) -> Response:
    p = request.path_params
    await _call(_registry(request).delete_layer_version, p["layer"], p["version"])
    return _no_content()


async def list_layers_or_find(request: Request) -> Response:
    """`GET /2018-10-31/layers`: ListLayers, or GetLayerVersionByArn with `?find=LayerVersion&Arn=`."""
    reg = _registry(request)
    q = request.query_params
    if q.get("find") == "LayerVersion":
        arn = q.get("Arn")
        if arn is None:
            raise constraint(None, "arn", "Member must not be null")
        return _json(_signed(request, await _call(reg.get_layer_version_by_arn, arn, _public_base(request))))
    return _json(await _call(reg.list_layers, *_filters(request)))


async def add_layer_version_permission(request: Request) -> Response:
    body = await _object(request)
    _check_types(body, ("StatementId", "Action", "Principal", "OrganizationId"))
    reg = _registry(request)
    p = request.path_params
    result = await _call(reg.add_layer_version_permission, p["layer"], p["version"], body,
                         request.query_params.get("RevisionId"))
    return _json(result, 201)


async def remove_layer_version_permission(request: Request) -> Response:
    p = request.path_params
    await _call(_registry(request).remove_layer_version_permission, p["layer"], p["version"], p["sid"],
                request.query_params.get("RevisionId"))
    return _no_content()


async def get_layer_version_policy(request: Request) -> Response:
    p = request.path_params
    return _json(await _call(_registry(request).get_layer_version_policy, p["layer"], p["version"]))


routes: list[BaseRoute] = [
    Route(_L, list_layers_or_find, methods=["GET"]),
    Route(_L + "/", list_layers_or_find, methods=["GET"]),
    Route(_L + "/{layer}/versions", publish_layer_version, methods=["POST"]),
    Route(_L + "/{layer}/versions", list_layer_versions, methods=["GET"]),
    Route(_L + "/{layer}/versions/{version}", get_layer_version, methods=["GET"]),
    Route(_L + "/{layer}/versions/{version}", delete_layer_version, methods=["DELETE"]),
    Route(_L + "/{layer}/versions/{version}/policy", add_layer_version_permission, methods=["POST"]),
    Route(_L + "/{layer}/versions/{version}/policy", get_layer_version_policy, methods=["GET"]),
    Route(_L + "/{layer}/versions/{version}/policy/{sid}", remove_layer_version_permission, methods=["DELETE"]),
]
