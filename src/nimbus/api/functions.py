"""The Lambda control-plane REST API at botocore's paths: functions, versions, aliases, tags, concurrency,
resource policies and account settings, plus the download route behind GetFunction's Code.Location.
Handlers parse and check JSON types, then run the registry call in a worker thread (database work never
blocks the event loop)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from nimbus.api import shapes
from nimbus.api.auth import sign_code_location
from nimbus.api.body import max_items, parse_json_object, read_body, validate
from nimbus.api.responses import request_id_header
from nimbus.control.registry import Registry
from nimbus.control.validation import constraint
from nimbus.errors import InvalidRequestContent, RequestEntityTooLarge, RequestTooLarge, ResourceNotFound

T = TypeVar("T")
S = TypeVar("S", bound=shapes.Shape)


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.platform.registry
    return registry


async def _call(fn: Callable[..., T], *args: Any) -> T:
    """Run a registry operation off the event loop."""
    return await asyncio.to_thread(fn, *args)


async def _body(request: Request, model: type[S], operation: str | None = None) -> S:
    limit: int = request.app.state.platform.settings.request_body_max_bytes
    try:
        raw = await read_body(request, limit)
    except RequestTooLarge:
        if operation is None:
            raise
        # AWS's answer to an oversized CreateFunction (LocalStack snapshot test_oversized_request_create_lambda)
        raise RequestEntityTooLarge(
            f"Request must be smaller than {limit} bytes for the {operation} operation"
        ) from None
    return validate(model, parse_json_object(raw))


def _json(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers=request_id_header())


def _no_content() -> Response:
    return Response(status_code=204, headers=request_id_header())


def _decode_zip(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestContent(
            "Could not parse request body into json: Could not parse payload into json: ZipFile is not valid base64"
        ) from None


def _qualifier(request: Request) -> str | None:
    return request.query_params.get("Qualifier")


# ------------------------------------------------------------------------------------------- functions


async def create_function(request: Request) -> Response:
    body = await _body(request, shapes.CreateFunction, "CreateFunction")
    fields = body.fields()
    zip_bytes = _decode_zip(body.Code.ZipFile)
    return _json(await _call(_registry(request).create_function, fields, zip_bytes), 201)


async def list_functions(request: Request) -> Response:
    version = request.query_params.get("FunctionVersion")
    if version is not None and version != "ALL":
        raise constraint(version, "functionVersion", "Member must satisfy enum value set: [ALL]")
    reg = _registry(request)
    result = await _call(reg.list_functions, request.query_params.get("Marker"), max_items(request, 10000),
                         version == "ALL")
    return _json(result)


def _public_base(request: Request) -> str:
    """Where clients reach this server: the configured public URL, else the URL this client used (so a
    server listening on 0.0.0.0 hands a remote client a Code.Location it can download)."""
    configured: str | None = request.app.state.platform.settings.public_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


async def get_function(request: Request) -> Response:
    reg = _registry(request)
    result = await _call(reg.get_function, request.path_params["name"], _qualifier(request),
                         _public_base(request))
    # A link anyone holding it can use for 10 minutes, like AWS's presigned S3 URL.
    if "Location" in result["Code"]:  # (Image functions have none: their code is in a registry)
        result["Code"]["Location"] = sign_code_location(request.app.state.platform.keys, result["Code"]["Location"])
    return _json(result)


async def delete_function(request: Request) -> Response:
    reg = _registry(request)
    await _call(reg.delete_function, request.path_params["name"], _qualifier(request))
    return _no_content()


async def get_configuration(request: Request) -> Response:
    reg = _registry(request)
    name = request.path_params["name"]
    return _json(await _call(reg.get_function_configuration, name, _qualifier(request)))


async def update_configuration(request: Request) -> Response:
    body = await _body(request, shapes.UpdateFunctionConfiguration)
    reg = _registry(request)
    return _json(await _call(reg.update_function_configuration, request.path_params["name"], body.fields()))


async def update_code(request: Request) -> Response:
    body = await _body(request, shapes.UpdateFunctionCode, "UpdateFunctionCode")
    fields = body.fields()
    fields.pop("ZipFile", None)
    zip_bytes = _decode_zip(body.ZipFile)
    reg = _registry(request)
    return _json(await _call(reg.update_function_code, request.path_params["name"], fields, zip_bytes))


# -------------------------------------------------------------------------------------------- versions


async def publish_version(request: Request) -> Response:
    body = await _body(request, shapes.PublishVersion)
    reg = _registry(request)
    return _json(await _call(reg.publish_version, request.path_params["name"], body.fields()), 201)


async def list_versions(request: Request) -> Response:
    reg = _registry(request)
    result = await _call(reg.list_versions, request.path_params["name"],
                         request.query_params.get("Marker"), max_items(request, 10000))
    return _json(result)


# --------------------------------------------------------------------------------------------- aliases


async def create_alias(request: Request) -> Response:
    body = await _body(request, shapes.CreateAlias)
    reg = _registry(request)
    return _json(await _call(reg.create_alias, request.path_params["name"], body.fields()), 201)


async def list_aliases(request: Request) -> Response:
    reg = _registry(request)
    result = await _call(reg.list_aliases, request.path_params["name"],
                         request.query_params.get("FunctionVersion"), request.query_params.get("Marker"),
                         max_items(request, 10000))
    return _json(result)


async def get_alias(request: Request) -> Response:
    reg = _registry(request)
    p = request.path_params
    return _json(await _call(reg.get_alias, p["name"], p["alias"]))


async def update_alias(request: Request) -> Response:
    body = await _body(request, shapes.UpdateAlias)
    reg = _registry(request)
    p = request.path_params
    return _json(await _call(reg.update_alias, p["name"], p["alias"], body.fields()))


async def delete_alias(request: Request) -> Response:
    reg = _registry(request)
    p = request.path_params
    await _call(reg.delete_alias, p["name"], p["alias"])
    return _no_content()


# ------------------------------------------------------------------------------------------------ tags


async def tag_resource(request: Request) -> Response:
    body = await _body(request, shapes.TagResource)
    await _call(_registry(request).tag_resource, request.path_params["resource"], body.Tags)
    return _no_content()


async def untag_resource(request: Request) -> Response:
    keys = request.query_params.getlist("tagKeys")
    await _call(_registry(request).untag_resource, request.path_params["resource"], keys)
    return _no_content()


async def list_tags(request: Request) -> Response:
    tags = await _call(_registry(request).list_tags, request.path_params["resource"])
    return _json({"Tags": tags})


# ----------------------------------------------------------------------------------------- concurrency


async def put_concurrency(request: Request) -> Response:
    body = await _body(request, shapes.PutFunctionConcurrency)
    reg = _registry(request)
    name = request.path_params["name"]
    return _json(await _call(reg.put_concurrency, name, body.ReservedConcurrentExecutions))


async def get_concurrency(request: Request) -> Response:
    return _json(await _call(_registry(request).get_concurrency, request.path_params["name"]))


async def delete_concurrency(request: Request) -> Response:
    await _call(_registry(request).delete_concurrency, request.path_params["name"])
    return _no_content()


# -------------------------------------------------------------------------------------------- policies


async def add_permission(request: Request) -> Response:
    body = await _body(request, shapes.AddPermission)
    reg = _registry(request)
    name = request.path_params["name"]
    return _json(await _call(reg.add_permission, name, _qualifier(request), body.fields()), 201)


async def remove_permission(request: Request) -> Response:
    reg = _registry(request)
    p = request.path_params
    await _call(reg.remove_permission, p["name"], p["sid"], _qualifier(request),
                request.query_params.get("RevisionId"))
    return _no_content()


async def get_policy(request: Request) -> Response:
    reg = _registry(request)
    return _json(await _call(reg.get_policy, request.path_params["name"], _qualifier(request)))


# ---------------------------------------------------------------------------------------- account, code


async def account_settings(request: Request) -> Response:
    return _json(await _call(_registry(request).account_settings))


async def download_code(request: Request) -> Response:
    """The zip behind GetFunction's Code.Location."""
    digest = request.path_params["digest"]
    codestore = request.app.state.platform.codestore
    if not codestore.exists(digest):
        raise ResourceNotFound("The code you requested does not exist.")
    return FileResponse(codestore.zip_path(digest), media_type="application/zip")


_F = "/2015-03-31/functions"

routes: list[BaseRoute] = [
    Route(_F, create_function, methods=["POST"]),
    Route(_F, list_functions, methods=["GET"]),
    Route(_F + "/", list_functions, methods=["GET"]),
    Route(_F + "/{name}", get_function, methods=["GET"]),
    Route(_F + "/{name}", delete_function, methods=["DELETE"]),
    Route(_F + "/{name}/configuration", get_configuration, methods=["GET"]),
    Route(_F + "/{name}/configuration", update_configuration, methods=["PUT"]),
    Route(_F + "/{name}/code", update_code, methods=["PUT"]),
    Route(_F + "/{name}/versions", publish_version, methods=["POST"]),
    Route(_F + "/{name}/versions", list_versions, methods=["GET"]),
    Route(_F + "/{name}/aliases", create_alias, methods=["POST"]),
    Route(_F + "/{name}/aliases", list_aliases, methods=["GET"]),
    Route(_F + "/{name}/aliases/{alias}", get_alias, methods=["GET"]),
    Route(_F + "/{name}/aliases/{alias}", update_alias, methods=["PUT"]),
    Route(_F + "/{name}/aliases/{alias}", delete_alias, methods=["DELETE"]),
    Route(_F + "/{name}/policy", add_permission, methods=["POST"]),
    Route(_F + "/{name}/policy", get_policy, methods=["GET"]),
    Route(_F + "/{name}/policy/{sid}", remove_permission, methods=["DELETE"]),
    Route("/2017-03-31/tags/{resource:path}", tag_resource, methods=["POST"]),
    Route("/2017-03-31/tags/{resource:path}", untag_resource, methods=["DELETE"]),
    Route("/2017-03-31/tags/{resource:path}", list_tags, methods=["GET"]),
    Route("/2017-10-31/functions/{name}/concurrency", put_concurrency, methods=["PUT"]),
    Route("/2017-10-31/functions/{name}/concurrency", delete_concurrency, methods=["DELETE"]),
    Route("/2019-09-30/functions/{name}/concurrency", get_concurrency, methods=["GET"]),
    Route("/2016-08-19/account-settings", account_settings, methods=["GET"]),
    Route("/2016-08-19/account-settings/", account_settings, methods=["GET"]),
    Route("/nimbus/v1/code/{digest}", download_code, methods=["GET"]),
]
