"""`/nimbus/v1/keys`: managing access keys over the API (what `nimbus keys` calls). Only long-term keys may
manage keys; a function environment's session key may not."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from nimbus.api.body import parse_json_object, read_body
from nimbus.api.responses import request_id_header
from nimbus.control.credentials import FunctionCredentials
from nimbus.control.documents import lambda_timestamp
from nimbus.control.keys import AccessKey, KeyStore
from nimbus.errors import AccessDenied, InvalidParameterValue


def _keys(request: Request) -> KeyStore:
    principal: AccessKey | None = getattr(request.state, "principal", None)
    if principal is not None and principal.kind == "session":
        raise AccessDenied("Session credentials cannot manage access keys")
    store: KeyStore = request.app.state.platform.keys
    return store


async def create_key(request: Request) -> Response:
    store = _keys(request)
    raw = await read_body(request, 64 * 1024)
    body = parse_json_object(raw) if raw.strip() else {}
    description = body.get("Description", "")
    if not isinstance(description, str):
        raise InvalidParameterValue("Description must be a string")
    return JSONResponse(await asyncio.to_thread(store.create, description), 201, headers=request_id_header())


async def list_keys(request: Request) -> Response:
    store = _keys(request)
    return JSONResponse({"AccessKeys": await asyncio.to_thread(store.list)}, headers=request_id_header())


async def delete_key(request: Request) -> Response:
    store = _keys(request)
    await asyncio.to_thread(store.delete, request.path_params["key_id"])
    return Response(status_code=204, headers=request_id_header())


async def create_session(request: Request) -> Response:
    """Session credentials for a function, as its environments get them (for tests and tools that act as a
    function): `{"FunctionName": ...}` -> AccessKeyId, SecretAccessKey, SessionToken, Expiration."""
    _keys(request)
    body = parse_json_object(await read_body(request, 64 * 1024))
    name = body.get("FunctionName")
    if not isinstance(name, str) or not name:
        raise InvalidParameterValue("FunctionName is required")
    credentials: FunctionCredentials = request.app.state.platform.credentials
    function = credentials.registry.locate(name).name
    await asyncio.to_thread(credentials.registry.get_function_configuration, function, None)  # must exist
    key = await asyncio.to_thread(credentials.issue, function)
    assert key.expires_at is not None and key.session_token is not None
    doc = {"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret, "SessionToken": key.session_token,
           "Expiration": lambda_timestamp(key.expires_at), "FunctionName": function}
    return JSONResponse(doc, 201, headers=request_id_header())


async def revoke_session(request: Request) -> Response:
    store = _keys(request)
    store.revoke(request.path_params["key_id"])
    return Response(status_code=204, headers=request_id_header())


routes: list[BaseRoute] = [
    Route("/nimbus/v1/keys/session", create_session, methods=["POST"]),
    Route("/nimbus/v1/keys/session/{key_id}", revoke_session, methods=["DELETE"]),
    Route("/nimbus/v1/keys", create_key, methods=["POST"]),
    Route("/nimbus/v1/keys", list_keys, methods=["GET"]),
    Route("/nimbus/v1/keys/{key_id}", delete_key, methods=["DELETE"]),
]
