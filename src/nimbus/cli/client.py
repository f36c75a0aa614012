"""A small HTTP client for the Lambda REST API, used by the CLI (boto3 is not a runtime dependency). Requests
are signed with SigV4 (see `credentials()` for where the key comes from)."""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from nimbus import sigv4
from nimbus.awscreds import CREDENTIALS_FILE, PROFILE, read_credentials_file

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"


class ApiError(Exception):
    """An error answer from the server, in Lambda's shape."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


def _is_local(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def credentials(endpoint: str) -> sigv4.Credentials | None:
    """The key to sign with, from the first place that has one: NIMBUS_ACCESS_KEY_ID/NIMBUS_SECRET_ACCESS_KEY,
    AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (with *_SESSION_TOKEN), the admin key in the data dir
    (NIMBUS_DATA_DIR, default ./data) when the server is on this machine, then the AWS profile NIMBUS_PROFILE /
    AWS_PROFILE / `nimbus` in AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials."""
    env = os.environ
    for prefix in ("NIMBUS_", "AWS_"):
        akid, secret = env.get(prefix + "ACCESS_KEY_ID"), env.get(prefix + "SECRET_ACCESS_KEY")
        if akid and secret:
            return sigv4.Credentials(akid, secret, env.get(prefix + "SESSION_TOKEN") or None)
    if _is_local(endpoint):
        found = read_credentials_file(Path(env.get("NIMBUS_DATA_DIR") or "./data") / CREDENTIALS_FILE)
        if found:
            return sigv4.Credentials(*found)
    shared = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials").expanduser()
    profile = env.get("NIMBUS_PROFILE") or env.get("AWS_PROFILE") or PROFILE
    found = read_credentials_file(shared, profile)
    return sigv4.Credentials(*found) if found else None


class SigV4(httpx.Auth):
    """Signs each request with SigV4 for the `lambda` service (`logs` for the CloudWatch Logs protocol,
    `scheduler` for the Scheduler API at `/schedules`, `apigateway` for `/v2/` HTTP APIs)."""

    requires_request_body = True

    def __init__(self, creds: sigv4.Credentials, region: str) -> None:
        self.creds = creds
        self.region = region

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raw_path, _, _ = request.url.raw_path.partition(b"?")
        service = "logs" if raw_path == b"/" else "scheduler" if raw_path.startswith(b"/schedules") else (
            "apigateway" if raw_path.startswith(b"/v2/") else "lambda")
        signed = {k: v for k, v in request.headers.items()
                  if k.lower() == "content-type" or k.lower().startswith("x-amz-")}
        request.headers.update(sigv4.sign(
            self.creds, request.method, request.url.netloc.decode("ascii"), raw_path.decode("ascii"),
            request.url.query.decode("ascii"), signed, request.content, self.region, service,
        ))
        yield request


def signing_auth(endpoint: str) -> SigV4 | None:
    """The httpx auth that signs requests to `endpoint`, or None when no credentials are found."""
    creds = credentials(endpoint)
    region = os.environ.get("NIMBUS_REGION") or os.environ.get("AWS_REGION") or os.environ.get(
        "AWS_DEFAULT_REGION") or "us-east-1"
    return SigV4(creds, region) if creds is not None else None


class LambdaClient:
    def __init__(self, endpoint: str | None = None, timeout: float = 960.0) -> None:
        self.endpoint = (endpoint or os.environ.get("NIMBUS_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout, auth=signing_auth(self.endpoint))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiError(0, "ConnectionError", f"cannot reach a nimbus server at {self.endpoint}") from None
        if response.status_code >= 400:
            error_type = response.headers.get("x-amzn-errortype", f"HTTP {response.status_code}")
            try:
                body = response.json()
                message = body.get("message") or body.get("Message") or response.text
            except ValueError:
                message = response.text
            if response.status_code == 403 and error_type == "MissingAuthenticationTokenException":
                message += (" (no credentials found: set NIMBUS_ACCESS_KEY_ID/NIMBUS_SECRET_ACCESS_KEY or "
                            "AWS_* env vars, NIMBUS_DATA_DIR to the server's data dir, or an AWS profile)")
            raise ApiError(response.status_code, error_type, message)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else {}
