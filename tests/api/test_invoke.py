"""The Invoke fast path (api/invoke.py) driven with a fake invoker, in process: the only place where a typed
invoke outcome becomes Lambda's HTTP answer (status, X-Amz-* headers), and errors become Lambda's shape."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from nimbus.api.invoke import InvokeApp
from nimbus.config import Settings
from nimbus.errors import ResourceNotFound, TooManyRequests
from nimbus.invoke.service import InvokeOutcome

URL = "http://nimbus/2015-03-31/functions/fn/invocations"


class FakeInvoker:
    def __init__(self, answer: InvokeOutcome | Exception) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    async def invoke(self, function: str, qualifier: str | None, payload: bytes, **kw: Any) -> InvokeOutcome:
        self.calls.append({"function": function, "qualifier": qualifier, "payload": payload, **kw})
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def call(answer: InvokeOutcome | Exception, **kw: Any) -> tuple[httpx.Response, FakeInvoker]:
    invoker = FakeInvoker(answer)
    platform: Any = SimpleNamespace(settings=Settings(), invoker=invoker,
                                    durable=SimpleNamespace(is_durable=lambda name, qualifier: False))

    async def not_invoke(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the Invoke path must not fall through")

    transport = httpx.ASGITransport(app=InvokeApp(not_invoke, platform))
    async with httpx.AsyncClient(transport=transport) as client:
        return await client.post(URL, content=b'{"a":1}', **kw), invoker


async def test_a_synchronous_outcome_becomes_200_with_lambdas_headers() -> None:
    outcome = InvokeOutcome("sync", "rid-1", "3", b'{"ok":1}', "Unhandled", "bG9n", 1.5, None)
    r, invoker = await call(outcome, params={"Qualifier": "live"},
                            headers={"X-Amz-Log-Type": "Tail", "X-Amz-Invocation-Type": "RequestResponse"})
    assert (r.status_code, r.content) == (200, b'{"ok":1}')
    assert r.headers["x-amz-executed-version"] == "3"
    assert r.headers["x-amz-function-error"] == "Unhandled"
    assert r.headers["x-amz-log-result"] == "bG9n"
    assert r.headers["x-amzn-requestid"] == "rid-1"
    assert invoker.calls[0]["qualifier"] == "live" and invoker.calls[0]["log_type"] == "Tail"


@pytest.mark.parametrize(
    ("outcome", "status", "version"),
    [(InvokeOutcome("accepted", "rid-2"), 202, None), (InvokeOutcome("dry_run", "rid-3", "$LATEST"), 204, "$LATEST")],
)
async def test_accepted_and_dry_run(outcome: InvokeOutcome, status: int, version: str | None) -> None:
    r, _ = await call(outcome)
    assert r.status_code == status and r.content == b""
    assert r.headers.get("x-amz-executed-version") == version
    assert "x-amz-function-error" not in r.headers and r.headers["x-amzn-requestid"] == outcome.request_id


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        (ResourceNotFound("Function not found: fn"), 404, "ResourceNotFoundException"),
        (TooManyRequests("Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded"), 429,
         "TooManyRequestsException"),
        (RuntimeError("boom"), 500, "ServiceException"),
    ],
)
async def test_errors_take_lambdas_shape(error: Exception, status: int, error_type: str) -> None:
    r, _ = await call(error)
    assert r.status_code == status and r.headers["x-amzn-errortype"] == error_type
    body = json.loads(r.content)
    assert set(body) >= {"Type", "message"} and r.headers["x-amzn-requestid"]
