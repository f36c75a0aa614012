"""A small HTTP client for the Lambda REST API, used by the CLI (boto3 is not a runtime dependency)."""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"


class ApiError(Exception):
    """An error answer from the server, in Lambda's shape."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


class LambdaClient:
    def __init__(self, endpoint: str | None = None, timeout: float = 960.0) -> None:
        self.endpoint = (endpoint or os.environ.get("NIMBUS_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout)

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
            raise ApiError(response.status_code, error_type, message)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else {}
