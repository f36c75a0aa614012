"""Serving HTTP APIs: a request to `http://<api-id>.execute-api.localhost:<port>/[<stage>/]path` (by Host
header) or `/execute-api/<api-id>/[<stage>/]path` (on any host) is matched to a route, turned into the
payload its integration asks for (2.0, built by the same code as function URLs' events, or REST-style 1.0) and
answered with what the function returns (the same response rules as function URLs). A path's first segment
names a stage when the API has a stage of that name; otherwise the `$default` stage serves it, as on AWS.
CORS preflights are answered from the API's corsConfiguration without invoking anything."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from starlette.types import Receive, Scope, Send

from nimbus.api.auth import Verifier, read_body
from nimbus.api.urls import _cors_headers, _header_dict, _preflight, payload_v2, to_http_response
from nimbus.control.httpapis import HttpApis, RouteMatch
from nimbus.control.keys import AccessKey
from nimbus.errors import LambdaError, RequestTooLarge, TooManyRequests
from nimbus.platform import Platform

log = logging.getLogger("nimbus.api.httpapi")

PATH_PREFIX = "/execute-api/"
_HOST_MARK = b".execute-api."
Headers = list[tuple[bytes, bytes]]


def _message(status: int, text: str) -> tuple[int, Headers, bytes]:
    return status, [(b"content-type", b"application/json")], json.dumps({"message": text}).encode()


def _pascal(cors: dict[str, Any] | None) -> dict[str, Any] | None:
    """apigatewayv2's camelCase corsConfiguration as the function URL's PascalCase Cors."""
    return None if cors is None else {k[0].upper() + k[1:]: v for k, v in cors.items()}


class HttpApiApp:
    """Serves HTTP API routes; hands every other request it is given to `fallback` (function URLs)."""

    def __init__(self, platform: Platform, apis: HttpApis, verifier: Verifier, check_auth: bool,
                 fallback: Any) -> None:
        self.platform = platform
        self.apis = apis
        self.verifier = verifier
        self.check_auth = check_auth
        self.fallback = fallback
        self.payload_limit = platform.settings.sync_payload_max_bytes

    @staticmethod
    def _api_id(scope: Scope) -> str | None:
        if scope["path"].startswith(PATH_PREFIX):
            return str(scope["path"][len(PATH_PREFIX):].split("/", 1)[0])
        for name, value in scope["headers"]:
            if name == b"host":
                if _HOST_MARK in value:
                    return bytes(value).split(b".", 1)[0].decode("latin-1").lower()
                return None
        return None

    def claims(self, scope: Scope) -> bool:
        return self._api_id(scope) is not None or bool(self.fallback and self.fallback.claims(scope))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        api_id = self._api_id(scope)
        if api_id is None:
            await self.fallback(scope, receive, send)
            return
        path: str = scope["path"]
        raw_path: bytes = scope.get("raw_path") or path.encode()
        if path.startswith(PATH_PREFIX):
            cut = len(PATH_PREFIX) + len(api_id)
            path = path[cut:] or "/"
            raw_path = raw_path[cut:] if raw_path.startswith(PATH_PREFIX.encode()) else path.encode()
            raw_path = raw_path or b"/"
        request_id = str(uuid.uuid4())
        try:
            status, headers, body = await self._serve(api_id, path, raw_path, scope, receive, request_id)
        except Exception:
            log.exception("HTTP API %s failed", api_id)
            status, headers, body = _message(500, "Internal Server Error")
        headers.append((b"apigw-requestid", request_id.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _serve(self, api_id: str, path: str, raw_path: bytes, scope: Scope, receive: Receive,
                     request_id: str) -> tuple[int, Headers, bytes]:
        found, api = self.apis.cached(api_id)
        if not found:
            api = await asyncio.to_thread(self.apis.api, api_id)
        if api is None:
            return _message(404, "Not Found")
        stage = "$default"
        first = path.strip("/").split("/", 1)[0]
        if first and first != "$default" and first in api.stages:
            stage = first
            path = "/" + path.strip("/").partition("/")[2]
        elif "$default" not in api.stages:
            return _message(404, "Not Found")
        headers = _header_dict(scope)
        origin = headers.get("origin")
        cors = _pascal(api.cors)
        method: str = scope["method"]
        if cors is not None and method == "OPTIONS" and origin is not None and \
                "access-control-request-method" in headers:
            return 204, _preflight(cors, origin), b""
        match = self.apis.match(api, method, path)
        if match is None:
            return _message(404, "Not Found")
        try:
            body = await read_body(scope, receive, self.payload_limit)
        except RequestTooLarge:
            return _message(413, "Request Entity Too Large")
        caller: AccessKey | None = None
        if match.authorization_type == "AWS_IAM" and self.check_auth:
            try:
                caller = self.verifier.verify(method, scope, body, "execute-api")
            except LambdaError:
                return _message(403, "Forbidden")
        event = payload_v2(self.platform.settings, scope, headers, path, raw_path, body, request_id, caller,
                           api_id=api_id, route_key=match.route_key, stage=stage,
                           path_parameters=match.path_parameters)
        if match.payload_version == "1.0":
            event = payload_v1(event, match, method, path)
        try:
            outcome = await self.platform.invoker.invoke(match.function_name, match.qualifier,
                                                         json.dumps(event, separators=(",", ":")).encode())
        except TooManyRequests:
            return _message(429, "Too Many Requests")
        except RequestTooLarge:
            return _message(413, "Request Entity Too Large")
        except LambdaError as exc:
            log.warning("HTTP API %s route %s: %s", api_id, match.route_key, exc.message)
            return _message(500 if exc.status >= 500 or exc.status == 404 else exc.status, "Internal Server Error")
        if outcome.function_error is not None or outcome.kind != "sync":
            return _message(500, "Internal Server Error")
        status, out_headers, out_body = to_http_response(outcome.payload)
        if match.payload_version == "1.0":
            out_headers += _multi_value_headers(outcome.payload)
        if cors is not None and origin is not None:
            out_headers = [h for h in out_headers if not h[0].startswith(b"access-control-")]
            out_headers += _cors_headers(cors, origin)
        return status, out_headers, out_body


def payload_v1(event: dict[str, Any], match: RouteMatch, method: str, path: str) -> dict[str, Any]:
    """The REST-style payload format 1.0 from the 2.0 event of the same request."""
    headers: dict[str, str] = dict(event.get("headers") or {})
    if event.get("cookies"):
        headers["cookie"] = "; ".join(event["cookies"])
    query = event.get("queryStringParameters")
    ctx = event["requestContext"]
    resource = match.route_key.split(" ", 1)[1] if " " in match.route_key else "/{proxy+}"
    now = time.time()
    return {
        "version": "1.0", "resource": resource, "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: v.split(",") for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: v.split(",") for k, v in query.items()} if query else None,
        "requestContext": {
            "accountId": ctx["accountId"], "apiId": ctx["apiId"], "domainName": ctx["domainName"],
            "domainPrefix": ctx["domainPrefix"], "extendedRequestId": ctx["requestId"], "httpMethod": method,
            "identity": {"sourceIp": ctx["http"]["sourceIp"], "userAgent": ctx["http"]["userAgent"],
                         "accessKey": None, "accountId": None, "caller": None, "user": None, "userArn": None},
            "path": ctx["http"]["path"], "protocol": ctx["http"]["protocol"], "requestId": ctx["requestId"],
            "requestTime": ctx["time"], "requestTimeEpoch": int(now * 1000), "resourceId": match.route_key,
            "resourcePath": resource, "stage": ctx["stage"],
        },
        "pathParameters": event.get("pathParameters") or None, "stageVariables": None,
        "body": event.get("body"), "isBase64Encoded": event.get("isBase64Encoded", False),
    }


def _multi_value_headers(payload: bytes) -> Headers:
    try:
        doc = json.loads(payload)
    except ValueError:
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("multiValueHeaders"), dict):
        return []
    return [(str(k).lower().encode("latin-1", "replace"), str(v).encode("latin-1", "replace"))
            for k, values in doc["multiValueHeaders"].items() for v in (values if isinstance(values, list)
                                                                         else [values])]
