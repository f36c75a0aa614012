"""Provisioned concurrency API at botocore's paths (`/2019-09-30/functions/{name}/provisioned-concurrency`):
Put/Get/Delete/ListProvisionedConcurrencyConfigs. Configs are stored by control/provisioned.py; the sandbox
keeps the environments (sandbox/provisioned.py), whose count is the Allocated/Available figure."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nimbus.api.body import max_items, parse_json_object, read_body
from nimbus.api.responses import json_response, no_content
from nimbus.control.provisioned import ProvisionedConfig, ProvisionedConfigs
from nimbus.control.validation import constraint
from nimbus.errors import ResourceNotFound


def _configs(request: Request) -> ProvisionedConfigs:
    configs: ProvisionedConfigs = request.app.state.platform.provisioned_configs
    return configs


def _json(data: Any, status: int = 200) -> Response:
    return json_response(data, status)


def _document(request: Request, config: ProvisionedConfig, with_arn: bool = False) -> dict[str, Any]:
    platform = request.app.state.platform
    configs = _configs(request)
    try:
        _, _, spec = configs.resolve(config.function_name, config.qualifier)
        allocated = min(config.requested, platform.sandbox.provisioner.allocated(spec.pool_key))
        failure = platform.sandbox.provisioner.failures.get(spec.pool_key)
    except ResourceNotFound:
        allocated, failure = 0, None
    doc: dict[str, Any] = {}
    if with_arn:
        arn = platform.registry.snapshot(config.function_name).function_arn
        doc["FunctionArn"] = f"{arn}:{config.qualifier}"
    status = "READY" if allocated >= config.requested else ("FAILED" if failure else "IN_PROGRESS")
    doc.update({
        "RequestedProvisionedConcurrentExecutions": config.requested,
        "AvailableProvisionedConcurrentExecutions": allocated,
        "AllocatedProvisionedConcurrentExecutions": allocated,
        "Status": status,
        "LastModified": config.last_modified,
    })
    if status == "FAILED":
        doc["StatusReason"] = f"Environments failed to initialize: {failure}"
    return doc


async def put_config(request: Request) -> Response:
    platform = request.app.state.platform
    limit: int = platform.settings.request_body_max_bytes
    body = parse_json_object(await read_body(request, limit))
    requested = body.get("ProvisionedConcurrentExecutions")
    if not isinstance(requested, int) or isinstance(requested, bool):
        raise constraint(requested, "provisionedConcurrentExecutions", "Member must not be null")
    settings = platform.settings
    configs = _configs(request)
    config = await asyncio.to_thread(
        configs.put, request.path_params["name"], request.query_params.get("Qualifier"), requested,
        settings.account_concurrency, settings.min_unreserved_concurrency,
    )
    platform.reconcile_provisioned(config.function_name)
    return _json(_document(request, config), 202)


async def get_or_list(request: Request) -> Response:
    if request.query_params.get("List") == "ALL":
        return await list_configs(request)
    configs = _configs(request)
    config = await asyncio.to_thread(configs.get, request.path_params["name"], request.query_params.get("Qualifier"))
    return _json(_document(request, config))


async def delete_config(request: Request) -> Response:
    configs = _configs(request)
    config = await asyncio.to_thread(
        configs.delete, request.path_params["name"], request.query_params.get("Qualifier")
    )
    if config is not None:
        request.app.state.platform.reconcile_provisioned(config.function_name)
    return no_content()


async def list_configs(request: Request) -> Response:
    page_size = max_items(request, 50) or 50
    configs = await asyncio.to_thread(_configs(request).list, request.path_params["name"])
    start = int(request.query_params.get("Marker") or 0) if (request.query_params.get("Marker") or "0").isdigit() else 0
    page = configs[start : start + page_size]
    doc: dict[str, Any] = {"ProvisionedConcurrencyConfigs": [_document(request, c, True) for c in page]}
    if start + page_size < len(configs):
        doc["NextMarker"] = str(start + page_size)
    return _json(doc)


routes: list[BaseRoute] = [
    Route("/2019-09-30/functions/{name}/provisioned-concurrency", put_config, methods=["PUT"]),
    Route("/2019-09-30/functions/{name}/provisioned-concurrency", get_or_list, methods=["GET"]),
    Route("/2019-09-30/functions/{name}/provisioned-concurrency", delete_config, methods=["DELETE"]),
]
