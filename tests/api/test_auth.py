"""SigV4 verification (api/auth.py) against botocore's own signer, in-process: header and presigned requests,
payload variants, clock skew, tampering, unknown keys, session tokens and the scoping of session keys."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.types import Receive, Scope, Send

from nimbus import sigv4
from nimbus.api.auth import AuthApp, Verifier
from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.control.keys import KeyStore
from nimbus.errors import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)

HOST = "127.0.0.1:9000"


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[KeyStore]:
    settings = Settings(data_dir=tmp_path)
    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    yield KeyStore(settings, engine)
    engine.dispose()


def botocore_signed(key_id: str, secret: str, method: str = "POST", path: str = "/2015-03-31/functions/f/invocations",
                    body: bytes = b'{"a": 1}', service: str = "lambda", token: str | None = None,
                    headers: dict[str, str] | None = None, presign: int | None = None) -> AWSRequest:
    req = AWSRequest(method=method, url=f"http://{HOST}{path}", data=body, headers=headers or {})
    creds = Credentials(key_id, secret, token)
    if presign is not None:
        SigV4QueryAuth(creds, service, "us-east-1", expires=presign).add_auth(req)
    else:
        SigV4Auth(creds, service, "us-east-1").add_auth(req)
    return req


def scope_of(req: AWSRequest) -> Scope:
    url = httpx.URL(req.url)
    raw_path, _, query = url.raw_path.partition(b"?")
    headers = [(k.lower().encode(), v.encode() if isinstance(v, str) else v) for k, v in req.headers.items()]
    headers.append((b"host", HOST.encode()))
    return {"type": "http", "method": req.method, "path": url.path, "raw_path": raw_path, "query_string": query,
            "headers": headers}


def verify(keys: KeyStore, req: AWSRequest, service: str = "lambda", now: float | None = None,
           body: bytes | None = None) -> Any:
    data = req.body if body is None else body
    if isinstance(data, str):
        data = data.encode()
    return Verifier(keys, keys.settings).verify(req.method, scope_of(req), data or b"", service, now)


def test_botocore_signed_requests_verify(keys: KeyStore) -> None:
    akid, secret = keys.admin.access_key_id, keys.admin.secret
    assert verify(keys, botocore_signed(akid, secret)) is keys.admin
    # qualified ARN in the path (percent-encoded twice in the canonical URI), a query string, a GET
    path = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/configuration"
    assert verify(keys, botocore_signed(akid, secret, "GET", path + "?Qualifier=%24LATEST", b"")) is keys.admin
    # the JSON protocol of CloudWatch Logs is signed for service `logs`
    assert verify(keys, botocore_signed(akid, secret, path="/", service="logs"), service="logs") is keys.admin


def test_presigned_query_verifies_until_it_expires(keys: KeyStore) -> None:
    req = botocore_signed(keys.admin.access_key_id, keys.admin.secret, "GET", "/2015-03-31/functions/f", b"",
                          presign=60)
    assert verify(keys, req) is keys.admin
    with pytest.raises(InvalidSignature, match="Signature expired"):
        verify(keys, req, now=time.time() + 120)


def test_own_signer_matches(keys: KeyStore) -> None:
    creds = sigv4.Credentials(keys.admin.access_key_id, keys.admin.secret)
    body = b'{"x": "y"}'
    added = sigv4.sign(creds, "PUT", HOST, "/2015-03-31/functions/f/code", "Qualifier=%24LATEST&b=1",
                       {"content-type": "application/json"}, body, "us-east-1", "lambda")
    scope: Scope = {"type": "http", "method": "PUT", "path": "/2015-03-31/functions/f/code",
                    "raw_path": b"/2015-03-31/functions/f/code", "query_string": b"Qualifier=%24LATEST&b=1",
                    "headers": [(b"host", HOST.encode()), (b"content-type", b"application/json"),
                                *((k.encode(), v.encode()) for k, v in added.items())]}
    assert Verifier(keys, keys.settings).verify("PUT", scope, body, "lambda") is keys.admin


def test_unsigned_payload_and_content_sha(keys: KeyStore) -> None:
    akid, secret = keys.admin.access_key_id, keys.admin.secret
    req = botocore_signed(akid, secret, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert verify(keys, req, body=b"anything") is keys.admin
    good = hashlib.sha256(b'{"a": 1}').hexdigest()
    req = botocore_signed(akid, secret, headers={"X-Amz-Content-SHA256": good})
    assert verify(keys, req) is keys.admin
    with pytest.raises(InvalidSignature, match="x-amz-content-sha256"):
        verify(keys, req, body=b'{"a": 2}')


def test_tampering_is_refused(keys: KeyStore) -> None:
    akid, secret = keys.admin.access_key_id, keys.admin.secret
    req = botocore_signed(akid, secret)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(keys, req, body=b'{"a": 2}')  # body changed
    req = botocore_signed(akid, secret)
    req.url = req.url.replace("/f/", "/g/")  # path changed
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(keys, req)
    req = botocore_signed(akid, secret, headers={"X-Amz-Invocation-Type": "Event"})
    req.headers.replace_header("X-Amz-Invocation-Type", "RequestResponse")  # signed header changed
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(keys, req)


def test_unknown_key_is_unrecognized_and_wrong_secret_is_a_bad_signature(keys: KeyStore) -> None:
    """AWS answers an access key id it does not know with UnrecognizedClientException ("The security token
    included in the request is invalid."), and a known key with a wrong secret with InvalidSignatureException."""
    with pytest.raises(InvalidSignature, match="does not match") as wrong:
        verify(keys, botocore_signed(keys.admin.access_key_id, "wrong" * 8))
    with pytest.raises(UnrecognizedClient) as unknown:
        verify(keys, botocore_signed("NKIAAAAAAAAAAAAAAAAA", keys.admin.secret))
    assert wrong.value.status == unknown.value.status == 403
    assert unknown.value.message == "The security token included in the request is invalid."


def test_missing_and_malformed(keys: KeyStore) -> None:
    req = AWSRequest(method="GET", url=f"http://{HOST}/2015-03-31/functions", data=b"")
    with pytest.raises(MissingAuthenticationToken):
        verify(keys, req)
    req.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=x"
    req.headers["X-Amz-Date"] = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with pytest.raises(IncompleteSignature):
        verify(keys, req)
    req.headers.replace_header("Authorization", "Basic dXNlcjpwYXNz")
    with pytest.raises(IncompleteSignature):
        verify(keys, req)


def test_clock_skew(keys: KeyStore) -> None:
    req = botocore_signed(keys.admin.access_key_id, keys.admin.secret)
    assert verify(keys, req, now=time.time() + 14 * 60) is keys.admin
    with pytest.raises(InvalidSignature, match="Signature expired"):
        verify(keys, req, now=time.time() + 16 * 60)
    with pytest.raises(InvalidSignature, match="not yet current"):
        verify(keys, req, now=time.time() - 16 * 60)


def test_wrong_service_scope(keys: KeyStore) -> None:
    req = botocore_signed(keys.admin.access_key_id, keys.admin.secret, service="s3")
    with pytest.raises(InvalidSignature, match="correct service: 'lambda'"):
        verify(keys, req)


def test_session_keys_need_their_token_and_die_when_revoked(keys: KeyStore) -> None:
    session = keys.issue_session("fn")
    assert session.session_token
    req = botocore_signed(session.access_key_id, session.secret, token=session.session_token)
    assert verify(keys, req) is session
    with pytest.raises(UnrecognizedClient):
        verify(keys, botocore_signed(session.access_key_id, session.secret, token="forged"))
    with pytest.raises(UnrecognizedClient):
        verify(keys, botocore_signed(session.access_key_id, session.secret))  # token left out
    keys.revoke(session.access_key_id)
    with pytest.raises(UnrecognizedClient):
        verify(keys, botocore_signed(session.access_key_id, session.secret, token=session.session_token))


async def _call(app: AuthApp, req: AWSRequest) -> tuple[int, bytes, Scope | None]:
    seen: dict[str, Any] = {}

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen["scope"] = scope
        seen["body"] = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": seen["body"]})

    app.app = inner
    body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope_of(req), receive, send)
    return sent[0]["status"], sent[1]["body"], seen.get("scope")


async def test_middleware_passes_the_body_on_and_scopes_session_keys(keys: KeyStore) -> None:
    app = AuthApp(lambda *a: None, keys, keys.settings, Verifier(keys, keys.settings))  # type: ignore[arg-type,return-value]
    status, body, scope = await _call(app, botocore_signed(keys.admin.access_key_id, keys.admin.secret))
    assert status == 200 and body == b'{"a": 1}'
    assert scope is not None and scope["state"]["principal"] is keys.admin

    session = keys.issue_session("mine")
    own = botocore_signed(session.access_key_id, session.secret, "GET", "/2015-03-31/functions/mine/configuration",
                          b"", token=session.session_token)
    assert (await _call(app, own))[0] == 200
    other = botocore_signed(session.access_key_id, session.secret, "GET", "/2015-03-31/functions/other/code",
                            b"", token=session.session_token)
    status, body, _ = await _call(app, other)
    assert status == 403 and b"not authorized" in body
    listing = botocore_signed(session.access_key_id, session.secret, "GET", "/2015-03-31/functions/", b"",
                              token=session.session_token)
    assert (await _call(app, listing))[0] == 403


async def test_health_is_open_and_the_rest_is_not(keys: KeyStore) -> None:
    app = AuthApp(lambda *a: None, keys, keys.settings, Verifier(keys, keys.settings))  # type: ignore[arg-type,return-value]
    open_req = AWSRequest(method="GET", url=f"http://{HOST}/nimbus/v1/health", data=b"")
    assert (await _call(app, open_req))[0] == 200
    closed = AWSRequest(method="GET", url=f"http://{HOST}/2015-03-31/functions", data=b"")
    status, body, _ = await _call(app, closed)
    assert status == 403 and b"Missing Authentication Token" in body
