"""The Lambda API's code signing config and recursion config routes at botocore's paths (issue 21):
Create/Get/Update/Delete/ListCodeSigningConfigs, ListFunctionsByCodeSigningConfig,
Put/Get/DeleteFunctionCodeSigningConfig, Get/PutFunctionRecursionConfig. Bodies are type-checked here; the
rules are the registry's (control/codesigning.py, control/recursion.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nimbus.api import shapes
from nimbus.api.body import max_items
from nimbus.api.functions import _body, _call, _json, _no_content, _registry


class CreateCodeSigningConfig(shapes.Shape):
    AllowedPublishers: dict[str, Any]
    CodeSigningPolicies: dict[str, Any] | None = None
    Description: str | None = None
    Tags: dict[str, str] | None = None


class UpdateCodeSigningConfig(shapes.Shape):
    AllowedPublishers: dict[str, Any] | None = None
    CodeSigningPolicies: dict[str, Any] | None = None
    Description: str | None = None


class PutFunctionCodeSigningConfig(shapes.Shape):
    CodeSigningConfigArn: str


class PutFunctionRecursionConfig(shapes.Shape):
    RecursiveLoop: str | None = None


def _arn(request: Request) -> str:
    return unquote(request.path_params["arn"])


async def create_config(request: Request) -> Response:
    body = await _body(request, CreateCodeSigningConfig)
    return _json(await _call(_registry(request).create_code_signing_config, body.fields()), 201)


async def list_configs(request: Request) -> Response:
    reg = _registry(request)
    return _json(await _call(reg.list_code_signing_configs, request.query_params.get("Marker"),
                             max_items(request, 10000)))


async def get_config(request: Request) -> Response:
    return _json(await _call(_registry(request).get_code_signing_config, _arn(request)))


async def update_config(request: Request) -> Response:
    body = await _body(request, UpdateCodeSigningConfig)
    return _json(await _call(_registry(request).update_code_signing_config, _arn(request), body.fields()))


async def delete_config(request: Request) -> Response:
    await _call(_registry(request).delete_code_signing_config, _arn(request))
    return _no_content()


async def list_functions(request: Request) -> Response:
    return _json(await _call(_registry(request).list_functions_by_code_signing_config, _arn(request)))


async def put_function_config(request: Request) -> Response:
    body = await _body(request, PutFunctionCodeSigningConfig)
    reg = _registry(request)
    return _json(await _call(reg.put_function_code_signing_config, request.path_params["name"],
                             body.CodeSigningConfigArn))


async def get_function_config(request: Request) -> Response:
    reg = _registry(request)
    return _json(await _call(reg.get_function_code_signing_config, request.path_params["name"]))


async def delete_function_config(request: Request) -> Response:
    await _call(_registry(request).delete_function_code_signing_config, request.path_params["name"])
    return _no_content()


async def get_recursion(request: Request) -> Response:
    return _json(await _call(_registry(request).get_recursion_config, request.path_params["name"]))


async def put_recursion(request: Request) -> Response:
    body = await _body(request, PutFunctionRecursionConfig)
    reg = _registry(request)
    return _json(await _call(reg.put_recursion_config, request.path_params["name"], body.RecursiveLoop))


_C = "/2020-04-22/code-signing-configs"
_F = "/2020-06-30/functions/{name}/code-signing-config"
_R = "/2024-08-31/functions/{name}/recursion-config"

routes: list[BaseRoute] = [
    Route(_C, create_config, methods=["POST"]),
    Route(_C, list_configs, methods=["GET"]),
    Route(_C + "/", list_configs, methods=["GET"]),
    Route(_C + "/{arn:path}/functions", list_functions, methods=["GET"]),
    Route(_C + "/{arn:path}", get_config, methods=["GET"]),
    Route(_C + "/{arn:path}", update_config, methods=["PUT"]),
    Route(_C + "/{arn:path}", delete_config, methods=["DELETE"]),
    Route(_F, put_function_config, methods=["PUT"]),
    Route(_F, get_function_config, methods=["GET"]),
    Route(_F, delete_function_config, methods=["DELETE"]),
    Route(_R, get_recursion, methods=["GET"]),
    Route(_R, put_recursion, methods=["PUT"]),
]
