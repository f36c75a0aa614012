"""SigV4 authentication of the whole API, as an ASGI app in front of everything else (including the Invoke
fast path): every request must be signed by a key the server knows (`control/keys.py`), within the allowed
clock skew, and a function environment's session key may act only on its own function (and invoke those whose
resource policies allow it). Function URLs are handed to `api/urls.py`, which authenticates by the URL's
AuthType; health, `/metrics` and the dashboard (which has its own login) are not signed.

Failures answer AWS's errors, all 403: MissingAuthenticationTokenException (unsigned),
IncompleteSignatureException (malformed), InvalidSignatureException (bad signature of a known key, expired),
UnrecognizedClientException (unknown access key id or bad session token), as AWS answers them: SDKs key their
credential refresh on UnrecognizedClientException. The signature is computed either way (with a decoy secret
for unknown ids), so the timing does not tell which key ids exist.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nimbus import sigv4
from nimbus.api.body import receive_body
from nimbus.api.errors import error_parts
from nimbus.api.uploads import code_upload_operation
from nimbus.config import Settings
from nimbus.control.keys import AccessKey, KeyStore
from nimbus.errors import (
    AccessDenied,
    IncompleteSignature,
    InvalidSignature,
    LambdaError,
    MissingAuthenticationToken,
    RequestEntityTooLarge,
    RequestTooLarge,
    UnrecognizedClient,
)

# Paths answered without a signature: readiness probes, Prometheus, the dashboard (own login, issue 8).
EXEMPT_PATHS = frozenset({"/nimbus/v1/health", "/metrics", "/favicon.ico"})
EXEMPT_PREFIXES = ("/dashboard",)
CODE_PREFIX = "/nimbus/v1/code/"
CODE_LINK_TTL = 600  # seconds a Code.Location link works, as AWS's presigned S3 links
PRESIGN_MAX_EXPIRES = 7 * 24 * 3600

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)
BAD_TOKEN = "The security token included in the request is invalid."
_AUTH_RE = re.compile(r"(\w+)=([^,\s]*)")
_FUNCTION_PATH = re.compile(r"^/\d{4}-\d{2}-\d{2}/functions/([^/]+)(/[^?]*)?$")
_DURABLE_PATH = re.compile(r"^/2025-12-01/durable-executions/arn:[^:]+:lambda:[^:]*:\d*:function:([^:/]+)[:/]")
_INVOKE_SUFFIXES = ("/invocations", "/response-streaming-invocations")

PolicyCheck = Callable[[AccessKey, str], Awaitable[bool]]


class UrlApp(Protocol):
    """The function-URL surface (api/urls.py `FunctionUrlApp`): an ASGI app that says which requests are its."""

    def claims(self, scope: Scope) -> bool: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


def principal_arn(key: AccessKey, account: str) -> str:
    """Who a key acts as, in IAM's spelling (for messages and `requestContext.authorizer.iam`)."""
    if key.function_name:
        role = (key.role or "").rsplit("/", 1)[-1] or "nimbus-function"
        return f"arn:aws:sts::{account}:assumed-role/{role}/{key.function_name}"
    return f"arn:aws:iam::{account}:user/nimbus-{key.kind}"


class Verifier:
    """Checks one request's SigV4 signature against the key store."""

    def __init__(self, keys: KeyStore, settings: Settings) -> None:
        self.keys = keys
        self.max_skew = settings.auth_max_skew

    def verify(self, method: str, scope: Scope, body: bytes, service: str, now: float | None = None) -> AccessKey:
        """The key that signed the request, or a LambdaError saying why it is refused."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        authorization = amz_date = token = content_sha = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-amz-date":
                amz_date = value.decode("latin-1")
            elif name == b"x-amz-security-token":
                token = value.decode("latin-1")
            elif name == b"x-amz-content-sha256":
                content_sha = value.decode("latin-1")
        raw_query: str = scope.get("query_string", b"").decode("latin-1")
        expires: int | None = None
        drop = None
        if authorization is not None:
            algorithm, _, rest = authorization.strip().partition(" ")
            if algorithm != sigv4.ALGORITHM:
                raise IncompleteSignature(f"Unsupported Authorization Type: {algorithm or '(empty)'}")
            fields = dict(_AUTH_RE.findall(rest))
            missing = [f"Authorization header requires '{k}' parameter."
                       for k in ("Credential", "Signature", "SignedHeaders") if not fields.get(k)]
            if amz_date is None:
                missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
            if missing:
                raise IncompleteSignature(" ".join(missing) + f" Authorization={authorization}")
            credential, signed_list, provided = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
        elif "X-Amz-Signature=" in raw_query or "X-Amz-Algorithm=" in raw_query:
            q = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
            need = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature",
                    "X-Amz-Expires")
            absent = [k for k in need if not q.get(k)]
            if absent:
                raise IncompleteSignature(
                    "AWS query-string parameters must include " + ", ".join(f"'{k}'" for k in absent)
                    + ". Re-examine the query-string parameters."
                )
            if q["X-Amz-Algorithm"] != sigv4.ALGORITHM:
                raise IncompleteSignature(f"Unsupported X-Amz-Algorithm: {q['X-Amz-Algorithm']}")
            if not q["X-Amz-Expires"].isdigit() or not 1 <= int(q["X-Amz-Expires"]) <= PRESIGN_MAX_EXPIRES:
                raise IncompleteSignature(f"X-Amz-Expires must be between 1 and {PRESIGN_MAX_EXPIRES} seconds")
            credential, signed_list, provided = q["X-Amz-Credential"], q["X-Amz-SignedHeaders"], q["X-Amz-Signature"]
            amz_date, expires, drop = q["X-Amz-Date"], int(q["X-Amz-Expires"]), "X-Amz-Signature"
            token = q.get("X-Amz-Security-Token", token)
        else:
            raise MissingAuthenticationToken("Missing Authentication Token")
        assert amz_date is not None

        parts = credential.split("/")
        if len(parts) != 5:
            raise IncompleteSignature(f"Credential should be scoped to a valid region and service: {credential}")
        access_key_id, date, region, scoped_service, terminator = parts
        signed = signed_list.split(";")
        moment = _parse_amz_date(amz_date)
        if moment is None:
            raise IncompleteSignature(f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.")
        self._check_time(amz_date, moment, expires, time.time() if now is None else now)
        if date != amz_date[:8]:
            raise InvalidSignature(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{date}' != '{amz_date[:8]}', from '{amz_date}'."
            )
        if scoped_service != service:
            raise InvalidSignature(f"Credential should be scoped to correct service: '{service}'. ")
        if terminator != "aws4_request":
            raise InvalidSignature(f"Credential should be scoped with a valid terminator: 'aws4_request', "
                                   f"not '{terminator}'. ")
        if "host" not in signed:
            raise InvalidSignature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")

        if content_sha is None:
            payload_hash = hashlib.sha256(body).hexdigest()
        elif content_sha == sigv4.UNSIGNED_PAYLOAD:
            payload_hash = content_sha
        elif content_sha.startswith("STREAMING-"):
            raise InvalidSignature(f"x-amz-content-sha256 {content_sha} (aws-chunked payloads) is not supported; "
                                   "sign the whole payload or use UNSIGNED-PAYLOAD.")
        else:
            payload_hash = content_sha
            if not hmac.compare_digest(content_sha.lower(), hashlib.sha256(body).hexdigest()):
                raise InvalidSignature("The provided 'x-amz-content-sha256' header does not match what was computed.")

        key = self.keys.lookup(access_key_id)
        token_ok = True
        if token is not None:
            token_ok = key is not None and key.session_token is not None and hmac.compare_digest(
                token.encode(), key.session_token.encode())
        elif key is not None and key.session_token is not None:
            key = None  # a session key without its token is as good as unknown
        use = key if key is not None and token_ok else self.keys.decoy

        raw_path = scope.get("raw_path") or scope["path"].encode()
        uri = sigv4.canonical_uri(raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path)
        canonical_hdrs = sigv4.canonical_headers_raw(headers, signed)
        signing_key = use.derived_key(date, region, scoped_service)
        query = sigv4.canonical_query(raw_query, drop)
        scope_str = f"{date}/{region}/{scoped_service}/aws4_request"

        def matches(q: str) -> bool:
            canonical = sigv4.canonical_request(method, uri, q, canonical_hdrs, signed, payload_hash)
            expected = sigv4.signature(signing_key, sigv4.string_to_sign(amz_date, scope_str, canonical))
            return hmac.compare_digest(expected.encode(), provided.encode())

        ok = matches(query)
        if not ok:
            raw = sigv4.raw_query_canonical(raw_query, drop)
            if raw != query:
                ok = matches(raw)
        if not token_ok or key is None:
            raise UnrecognizedClient(BAD_TOKEN)
        if not ok:
            raise InvalidSignature(SIGNATURE_MISMATCH)
        return key

    def _check_time(self, amz_date: str, moment: float, expires: int | None, now: float) -> None:
        def fmt(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime(sigv4.AMZ_DATE_FORMAT)

        skew = self.max_skew
        minutes = f"{skew // 60} min."
        if expires is not None:  # presigned: valid from (date - skew) until date + expires
            if now > moment + expires:
                raise InvalidSignature(f"Signature expired: {amz_date} is now earlier than {fmt(now - expires)} "
                                       f"({fmt(now)} - {expires} sec.)")
            if moment > now + skew:
                raise InvalidSignature(f"Signature not yet current: {amz_date} is still later than "
                                       f"{fmt(now + skew)} ({fmt(now)} + {minutes})")
            return
        if moment < now - skew:
            raise InvalidSignature(f"Signature expired: {amz_date} is now earlier than {fmt(now - skew)} "
                                   f"({fmt(now)} - {minutes})")
        if moment > now + skew:
            raise InvalidSignature(f"Signature not yet current: {amz_date} is still later than {fmt(now + skew)} "
                                   f"({fmt(now)} + {minutes})")


_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")


def _parse_amz_date(value: str) -> float | None:
    """Epoch seconds of `YYYYMMDDTHHMMSSZ` (strptime costs tens of microseconds per request)."""
    if not _AMZ_DATE.match(value):
        return None
    try:
        return datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]), int(value[11:13]),
                        int(value[13:15]), tzinfo=UTC).timestamp()
    except ValueError:
        return None


_SQS_QUEUE_PATH = re.compile(r"^/\d{12}/[A-Za-z0-9_.-]{1,80}/?$")
_SCHEDULER_PREFIXES = ("/schedules", "/schedule-groups", "/tags/")


def service_for(scope: Scope) -> str:
    """The SigV4 service name a route is signed for: `logs` for the CloudWatch Logs JSON protocol at `/`,
    `sqs` for SQS (JSON target `AmazonSQS.*`, a query-protocol form at `/`, or a queue URL path)."""
    path = scope["path"]
    if path.startswith("/v2/apis"):
        return "apigateway"  # apigatewayv2 HTTP APIs (issue 17)
    if path.startswith(_SCHEDULER_PREFIXES):  # EventBridge Scheduler's rest-json API (issue 15)
        return "scheduler"
    if path == "/" and any(k == b"x-amz-target" and v.startswith(b"AWSEvents.") for k, v in scope["headers"]):
        return "events"  # EventBridge (issue 15)
    if path == "/" or _SQS_QUEUE_PATH.match(path):
        target = next((v for k, v in scope["headers"] if k == b"x-amz-target"), None)
        if target is not None and target.startswith(b"AmazonSQS."):
            return "sqs"
        if path != "/" or target is None:  # queue URL, or the query protocol's form (no target) at `/`
            return "sqs"
    return "logs" if path == "/" else "lambda"


class AuthApp:
    """The outermost ASGI app: function URLs go to `urls`; everything else is verified, then served by `app`."""

    def __init__(self, app: ASGIApp, keys: KeyStore, settings: Settings, verifier: Verifier,
                 urls: UrlApp | None = None, policy_check: PolicyCheck | None = None) -> None:
        self.app = app
        self.keys = keys
        self.settings = settings
        self.urls = urls
        self.enabled = settings.auth != "none"
        self.verifier = verifier
        self.policy_check = policy_check
        self.body_limit = settings.request_body_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.urls is not None and self.urls.claims(scope):
            await self.urls(scope, receive, send)
            return
        path: str = scope["path"]
        if not self.enabled or path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        if path.startswith(CODE_PREFIX) and self._code_link_ok(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.body_limit)
            key = self.verifier.verify(scope["method"], scope, body, service_for(scope))
            if key.function_name is not None:
                await self._authorize_session(key, scope)
        except LambdaError as exc:
            await send_error(send, exc)
            return
        scope.setdefault("state", {})["principal"] = key
        await self.app(scope, replay(body, receive), send)

    def _code_link_ok(self, scope: Scope) -> bool:
        q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        expires, token = q.get("X-Nimbus-Expires", [""])[-1], q.get("X-Nimbus-Signature", [""])[-1]
        digest = scope["path"][len(CODE_PREFIX):]
        return bool(token) and self.keys.check_code_token(digest, expires, token)

    async def _authorize_session(self, key: AccessKey, scope: Scope) -> None:
        """A function's session key: anything on its own function; Invoke on functions whose policy allows it."""
        if service_for(scope) == "sqs":
            return  # nimbus has no IAM: a function's role may use the queue service (docs/compatibility.md)
        match = _FUNCTION_PATH.match(scope["path"])
        target = _function_name(match.group(1)) if match else None
        if target is not None and target == key.function_name:
            return
        if _durable_function(unquote(scope["path"])) == key.function_name:  # own durable executions (issue 18)
            return
        account = self.settings.account_id
        resource = f"arn:aws:lambda:{self.settings.region}:{account}:function:{target}" if target else scope["path"]
        if (target is not None and match is not None and scope["method"] == "POST"
                and (match.group(2) or "").endswith(_INVOKE_SUFFIXES)
                and self.policy_check is not None and await self.policy_check(key, target)):
            return
        raise AccessDenied(
            f"User: {principal_arn(key, account)} is not authorized to perform this operation on resource: "
            f"{resource} because no resource-based policy allows it"
        )


def _durable_function(path: str) -> str | None:
    """The function of a durable-execution ARN path (`/2025-12-01/durable-executions/arn:...:function:NAME:...`)."""
    match = _DURABLE_PATH.match(path)
    return match.group(1) if match else None


def _function_name(raw: str) -> str:
    """The bare function name of a FunctionName path parameter (name or ARN, maybe qualified)."""
    value = unquote(raw)
    if value.startswith("arn:"):
        parts = value.split(":")
        return parts[6] if len(parts) > 6 else value
    if ":function:" in value:  # partial ARN 123456789012:function:name[:qualifier]
        return value.split(":")[2]
    return value.split(":", 1)[0]


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than `limit` bytes."""
    declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
    try:
        return await receive_body(receive, declared, limit)
    except RequestTooLarge:
        code_upload = code_upload_operation(scope["method"], scope["path"])
        if code_upload is None:
            raise
        raise RequestEntityTooLarge(
            f"Request must be smaller than {limit} bytes for the {code_upload} operation"
        ) from None


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then the connection's own events."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def send_error(send: Send, exc: LambdaError) -> None:
    status, headers, body = error_parts(exc)
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def sign_code_location(keys: KeyStore, location: str, ttl: int = CODE_LINK_TTL) -> str:
    """GetFunction's Code.Location with a signature that lets anyone holding the link download the zip for
    `ttl` seconds (what AWS's presigned S3 links do)."""
    parts = urlsplit(location)
    digest = parts.path.rsplit("/", 1)[-1]
    expires = int(time.time()) + ttl
    query = f"X-Nimbus-Expires={expires}&X-Nimbus-Signature={keys.code_token(digest, expires)}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def startup_problem(settings: Settings) -> str | None:
    """Why the server must not start with these settings (auth off on a reachable address), or None."""
    if settings.auth == "none" and not _loopback(settings.host) and not settings.insecure:
        return (f"--auth none on {settings.host} would let anyone who can reach this address run code. "
                "Bind to 127.0.0.1, or pass --insecure (NIMBUS_INSECURE=1) if you really mean it.")
    return None


def announce(console: Any, settings: Settings, keys: KeyStore) -> None:
    """Start-up lines about authentication: the admin key on first start, a warning when auth is off."""
    if settings.auth == "none":
        console.print("[bold red]WARNING: authentication is OFF (--auth none):[/] anyone who can reach "
                      f"{settings.base_url()} can deploy and run code.")
        return
    console.print(f"  auth:      SigV4; admin credentials in {keys.credentials_path} (mode 0600)")
    if keys.created_admin:
        akid, secret = keys.admin.access_key_id, keys.admin.secret
        console.print("[bold]First start: an admin access key was created.[/] Use it like an AWS key:")
        console.print(
            f"  export AWS_ACCESS_KEY_ID={akid}\n"
            f"  export AWS_SECRET_ACCESS_KEY={secret}\n"
            f"  export AWS_DEFAULT_REGION={settings.region}\n"
            f"  export AWS_ENDPOINT_URL={settings.base_url()}\n"
            "or as a profile (~/.aws/credentials):\n"
            f"  [nimbus]\n  aws_access_key_id = {akid}\n  aws_secret_access_key = {secret}\n"
            f"The nimbus CLI on this machine reads {keys.credentials_path} by itself (NIMBUS_DATA_DIR).",
            markup=False, highlight=False, soft_wrap=True,
        )
