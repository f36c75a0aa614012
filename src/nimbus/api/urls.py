"""Function URLs over HTTP: the URL config API (`/2021-10-31/functions/{name}/url[s]`) and the serving of URLs
themselves, by host name (`<url-id>.lambda-url.<region>.localhost:<port>`, or the configured template) or under
`/lambda-url/<url-id>/` on any host.

A request becomes AWS's payload format 2.0 event; the function's answer becomes the HTTP response (with AWS's
inference rule for answers that are not `{statusCode, ...}`). CORS comes from the URL config: preflights are
answered without invoking the function, and actual responses get the headers. AWS_IAM URLs need a SigV4
signature (service `lambda`) by a key the server knows; NONE URLs answer only when the function's resource
policy lets principal `*` call `lambda:InvokeFunctionUrl` with `lambda:FunctionUrlAuthType` NONE.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from nimbus.api.auth import Verifier, principal_arn, read_body
from nimbus.api.body import max_items, parse_json_object
from nimbus.api.body import read_body as read_request_body
from nimbus.api.responses import request_id_header
from nimbus.api.url_stream import stream_url
from nimbus.config import Settings
from nimbus.control.keys import AccessKey, KeyStore
from nimbus.control.urls import FunctionUrls, UrlTarget, host_suffix
from nimbus.errors import LambdaError, RequestTooLarge, TooManyRequests
from nimbus.ids import new_request_id, random_hex
from nimbus.platform import Platform

log = logging.getLogger("nimbus.api.urls")

PATH_PREFIX = "/lambda-url/"
TRUSTED_PROXIES = ("127.0.0.1", "::1")  # whose X-Forwarded-For names the caller (uvicorn's default trust)
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml", "application/ld+json")
# One encoder for every event (json.dumps with arguments builds a new JSONEncoder per call).
_encode_event = json.JSONEncoder(separators=(",", ":")).encode

# ------------------------------------------------------------------------------------------ config API


def _urls(request: Request) -> FunctionUrls:
    urls: FunctionUrls = request.app.state.platform.function_urls
    return urls


async def _body(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_request_body(request, 256 * 1024))


async def create_url(request: Request) -> Response:
    body = await _body(request)
    result = await asyncio.to_thread(_urls(request).create, request.path_params["name"],
                                     request.query_params.get("Qualifier"), body)
    return JSONResponse(result, 201, headers=request_id_header())


async def get_url(request: Request) -> Response:
    result = await asyncio.to_thread(_urls(request).get, request.path_params["name"],
                                     request.query_params.get("Qualifier"))
    return JSONResponse(result, headers=request_id_header())


async def update_url(request: Request) -> Response:
    body = await _body(request)
    result = await asyncio.to_thread(_urls(request).update, request.path_params["name"],
                                     request.query_params.get("Qualifier"), body)
    return JSONResponse(result, headers=request_id_header())


async def delete_url(request: Request) -> Response:
    await asyncio.to_thread(_urls(request).delete, request.path_params["name"], request.query_params.get("Qualifier"))
    return Response(status_code=204, headers=request_id_header())


async def list_urls(request: Request) -> Response:
    result = await asyncio.to_thread(_urls(request).list, request.path_params["name"],
                                     request.query_params.get("Marker"), max_items(request, 50))
    return JSONResponse(result, headers=request_id_header())


_U = "/2021-10-31/functions/{name}"
routes: list[BaseRoute] = [
    Route(_U + "/url", create_url, methods=["POST"]),
    Route(_U + "/url", get_url, methods=["GET"]),
    Route(_U + "/url", update_url, methods=["PUT"]),
    Route(_U + "/url", delete_url, methods=["DELETE"]),
    Route(_U + "/urls", list_urls, methods=["GET"]),
]


# ---------------------------------------------------------------------------------------------- serving


_ERROR_TYPES = {403: b"AccessDeniedException", 404: b"ResourceNotFoundException", 413: b"RequestTooLargeException",
                429: b"TooManyRequestsException"}


def _message(status: int, text: str | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"content-type", b"application/json")]
    if status in _ERROR_TYPES:
        headers.append((b"x-amzn-errortype", _ERROR_TYPES[status]))
    return status, headers, json.dumps({"Message": text}).encode()


def _internal_error() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A function error or a malformed answer: AWS answers 502 with the plain-text body `Internal Server Error`
    (LocalStack test_lambda_url_invocation_exception, validated against AWS)."""
    return 502, [(b"content-type", b"application/json")], b"Internal Server Error"


class FunctionUrlApp:
    """Serves function URLs; `claims(scope)` says whether a request is for one (checked on every request)."""

    def __init__(self, platform: Platform, urls: FunctionUrls, keys: KeyStore, verifier: Verifier,
                 check_auth: bool) -> None:
        self.platform = platform
        self.urls = urls
        self.keys = keys
        self.verifier = verifier
        self.check_auth = check_auth
        self.settings = platform.settings
        suffix = host_suffix(platform.settings)
        self.host_suffix = suffix.encode() if suffix else None
        self.payload_limit = platform.settings.sync_payload_max_bytes

    def _host(self, scope: Scope) -> bytes:
        for name, value in scope["headers"]:
            if name == b"host":
                return bytes(value)
        return b""

    def _id_from_host(self, host: bytes) -> str | None:
        lowered = host.lower()
        # Checked for every request to the server (Invoke included): most hosts contain neither form.
        if b".lambda-url." not in lowered and (self.host_suffix is None or self.host_suffix not in lowered):
            return None
        name = lowered.rsplit(b":", 1)[0] if b"]" not in lowered else lowered
        if self.host_suffix is not None:
            first, dot, rest = name.partition(b".")
            if dot and rest == self.host_suffix:
                return first.decode("latin-1")
        if b".lambda-url." in name:
            return name.split(b".", 1)[0].decode("latin-1")
        return None

    def claims(self, scope: Scope) -> bool:
        if scope["path"].startswith(PATH_PREFIX):
            return True
        return self._id_from_host(self._host(scope)) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        raw_path: bytes = scope.get("raw_path") or path.encode()
        if path.startswith(PATH_PREFIX):
            url_id, _, rest = path[len(PATH_PREFIX):].partition("/")
            raw_rest = raw_path[len(PATH_PREFIX) + len(url_id):] if raw_path.startswith(PATH_PREFIX.encode()) else b""
            raw_path = raw_rest or b"/"
            path = "/" + rest
        else:
            url_id = self._id_from_host(self._host(scope)) or ""
        request_id = new_request_id()
        try:
            status, headers, body = await self._serve(url_id, path, raw_path, scope, receive, request_id, send)
        except Exception:
            log.exception("function URL %s failed", url_id)
            status, headers, body = _message(500, "Internal Server Error")
        if status < 0:  # streamed: the response was sent already
            return
        headers.append((b"x-amzn-requestid", request_id.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _serve(self, url_id: str, path: str, raw_path: bytes, scope: Scope, receive: Receive,
                     request_id: str, send: Send) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        target = self.urls._cache.get(url_id) or await asyncio.to_thread(self.urls.target, url_id)
        if target is None:
            return _message(404, "Not Found")
        headers = _header_dict(scope)
        origin = headers.get("origin")
        if (target.cors is not None and scope["method"] == "OPTIONS" and origin is not None
                and "access-control-request-method" in headers):
            return 200, _preflight(target.cors, origin), b""
        try:
            body = await read_body(scope, receive, self.payload_limit)
        except RequestTooLarge:
            return _message(413, "Request Entity Too Large")
        caller: AccessKey | None = None
        if target.auth_type == "AWS_IAM":
            if self.check_auth:
                try:
                    caller = self.verifier.verify(scope["method"], scope, body, "lambda")
                except LambdaError:
                    return _message(403, "Forbidden")
                if caller.function_name is not None and caller.function_name != target.function_name:
                    return _message(403, "Forbidden")
        elif not target.public:
            return _message(403, "Forbidden")
        event = self._event(target, scope, headers, path, raw_path, body, request_id, caller)
        payload = _encode_event(event).encode()
        if target.invoke_mode == "RESPONSE_STREAM":
            extra = _cors_headers(target.cors, origin) if target.cors is not None and origin is not None else []
            try:
                sent = await stream_url(self.platform.invoker, target, payload, extra, request_id, send,
                                        self.settings.stream_response_max_bytes)
            except TooManyRequests:
                return _message(429, "Rate Exceeded.")
            except LambdaError as exc:
                return _message(exc.status if exc.status < 500 else 502, exc.message)
            if sent:
                return -1, [], b""
            return _internal_error()
        try:
            outcome = await self.platform.invoker.invoke(target.function_name, target.qualifier, payload,
                                                         payload_is_json=True)
        except TooManyRequests:
            return _message(429, "Rate Exceeded.")
        except RequestTooLarge:
            return _message(413, "Request Entity Too Large")
        except LambdaError as exc:
            return _message(exc.status, exc.message) if exc.status < 500 else _internal_error()
        if outcome.function_error is not None or outcome.kind != "sync":
            return _internal_error()
        status, out_headers, out_body = to_http_response(outcome.payload)
        if target.cors is not None and origin is not None:
            out_headers = [h for h in out_headers if not h[0].startswith(b"access-control-")]
            out_headers += _cors_headers(target.cors, origin)
        return status, out_headers, out_body

    def _event(self, target: UrlTarget, scope: Scope, headers: dict[str, str], path: str, raw_path: bytes,
               body: bytes, request_id: str, caller: AccessKey | None) -> dict[str, Any]:
        return payload_v2(self.settings, scope, headers, path, raw_path, body, request_id, caller,
                          api_id=target.url_id)


def payload_v2(settings: Settings, scope: Scope, headers: dict[str, str], path: str, raw_path: bytes, body: bytes,
               request_id: str, caller: AccessKey | None, *, api_id: str, route_key: str = "$default",
               stage: str = "$default", path_parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """AWS's payload format 2.0 event for a request, shared by function URLs and HTTP API routes (which add
    their route key, stage and path parameters)."""
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    client = scope.get("client") or ("127.0.0.1", 0)
    source_ip = client[0]
    if source_ip in TRUSTED_PROXIES:  # a proxy on this machine: the client is the one it names
        source_ip = headers.get("x-forwarded-for", "").split(",")[0].strip() or source_ip
    headers.setdefault("x-forwarded-for", source_ip)
    headers.setdefault("x-forwarded-proto", scope.get("scheme", "http"))
    server = scope.get("server") or ("", 0)
    headers.setdefault("x-forwarded-port", str(server[1] if server else ""))
    headers.setdefault("x-amzn-trace-id",
                       f"Root=1-{int(time.time()):08x}-{random_hex.take(24)}")
    raw_query = scope.get("query_string", b"").decode("latin-1")
    now = time.time()
    domain = headers.get("host", "").rsplit(":", 1)[0] if "host" in headers else ""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path.decode("latin-1") or "/",
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    params = _query_parameters(raw_query)
    if params:
        event["queryStringParameters"] = params
    if path_parameters:
        event["pathParameters"] = path_parameters
    context: dict[str, Any] = {
        "accountId": settings.account_id if caller is not None else "anonymous",
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": api_id,
        "http": {
            "method": scope["method"],
            "path": path or "/",
            "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": stage,
        "time": _clf_time(int(now)),
        "timeEpoch": int(now * 1000),
    }
    if caller is not None:
        arn = principal_arn(caller, settings.account_id)
        context["authorizer"] = {"iam": {
            "accessKey": caller.access_key_id,
            "accountId": settings.account_id,
            "callerId": caller.access_key_id,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": arn,
            "userId": caller.access_key_id,
        }}
    event["requestContext"] = context
    if body:
        content_type = headers.get("content-type", "").lower()
        text = content_type.startswith(_TEXT_TYPES) or "+json" in content_type or "+xml" in content_type
        if text:
            try:
                event["body"] = body.decode("utf-8")
                event["isBase64Encoded"] = False
            except UnicodeDecodeError:
                text = False
        if not text:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


_last_clf: tuple[int, str] = (0, "")


def _clf_time(second: int) -> str:
    """`requestContext.time` (`04/Dec/2026:17:40:00 +0000`), formatted once per second."""
    global _last_clf
    if _last_clf[0] != second:
        _last_clf = (second, time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second)))
    return _last_clf[1]


def _header_dict(scope: Scope) -> dict[str, str]:
    """Request headers, names lower-case, repeated headers comma-joined (payload 2.0)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "cookie" and name in out:
            out[name] += "; " + value
        else:
            out[name] = f"{out[name]},{value}" if name in out else value
    return out


def _query_parameters(raw_query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        key, value = unquote_plus(key), unquote_plus(value)
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def to_http_response(payload: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The HTTP response for a function's answer: `{statusCode, headers, cookies, body, isBase64Encoded}`, or,
    for any other JSON (AWS's inference rule), 200 with that JSON as an application/json body."""
    try:
        doc = json.loads(payload) if payload else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "statusCode" not in doc:
        # AWS re-serialises the answer compactly (`["hello",3,true]`), and a string is the body itself
        # (LocalStack snapshot test_lambda_url_invocation[*], recorded against AWS)
        if doc is None and payload.strip() not in (b"", b"null"):
            body = payload
        elif isinstance(doc, str):
            body = doc.encode()
        else:
            body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        return 200, [(b"content-type", b"application/json")], body
    try:
        status = int(doc["statusCode"])
    except (TypeError, ValueError):
        return _internal_error()
    if not 100 <= status <= 599:
        return _internal_error()
    headers: list[tuple[bytes, bytes]] = []
    for name, value in (doc.get("headers") or {}).items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        headers.append((str(name).lower().encode("latin-1", "replace"), str(value).encode("latin-1", "replace")))
    for cookie in doc.get("cookies") or []:
        headers.append((b"set-cookie", str(cookie).encode("latin-1", "replace")))
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"application/json"))
    raw = doc.get("body")
    if raw is None:
        body = b""
    elif doc.get("isBase64Encoded"):
        try:
            body = base64.b64decode(str(raw), validate=False)
        except (binascii.Error, ValueError):
            return _internal_error()
    else:
        body = (raw if isinstance(raw, str) else json.dumps(raw)).encode()
    return status, [h for h in headers if h[0] not in (b"content-length", b"transfer-encoding")], body


def _origin_allowed(cors: dict[str, Any], origin: str) -> str | None:
    allowed = cors.get("AllowOrigins") or []
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


def _preflight(cors: dict[str, Any], origin: str) -> list[tuple[bytes, bytes]]:
    """The answer to a CORS preflight, from the URL's config."""
    out: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
    allowed = _origin_allowed(cors, origin)
    if allowed is None:
        return out
    out.append((b"access-control-allow-origin", allowed.encode("latin-1")))
    if cors.get("AllowMethods"):
        out.append((b"access-control-allow-methods", ",".join(cors["AllowMethods"]).encode("latin-1")))
    if cors.get("AllowHeaders"):
        out.append((b"access-control-allow-headers", ",".join(cors["AllowHeaders"]).encode("latin-1")))
    if cors.get("AllowCredentials"):
        out.append((b"access-control-allow-credentials", b"true"))
    if cors.get("MaxAge") is not None:
        out.append((b"access-control-max-age", str(cors["MaxAge"]).encode()))
    return out


def _cors_headers(cors: dict[str, Any], origin: str) -> list[tuple[bytes, bytes]]:
    """CORS headers added to an actual response."""
    out: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
    allowed = _origin_allowed(cors, origin)
    if allowed is None:
        return out
    out.append((b"access-control-allow-origin", allowed.encode("latin-1")))
    if cors.get("ExposeHeaders"):
        out.append((b"access-control-expose-headers", ",".join(cors["ExposeHeaders"]).encode("latin-1")))
    if cors.get("AllowCredentials"):
        out.append((b"access-control-allow-credentials", b"true"))
    return out
