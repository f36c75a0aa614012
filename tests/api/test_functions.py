"""The control-plane routes in-process (Starlette httpx.AsyncClient over a real registry): request parsing and
Lambda's error shape for malformed requests."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from nimbus.api import errors, functions
from nimbus.config import Settings
from nimbus.control.codestore import CodeStore
from nimbus.control.db import make_engine, migrate
from nimbus.control.registry import Registry
from nimbus.errors import LambdaError
from tests.conftest import RUNTIME

ROLE = "arn:aws:iam::000000000000:role/lambda-role"
F = "/2015-03-31/functions"


def zip_b64() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        # A fixed date: the same zip every call (writestr stamps the current time otherwise).
        zf.writestr(zipfile.ZipInfo("app.py", (2024, 1, 1, 0, 0, 0)), "def handler(e, c):\n    return e\n")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(data_dir=tmp_path, request_body_max_bytes=64 * 1024)
    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    codestore = CodeStore(tmp_path / "code", settings)
    platform = SimpleNamespace(settings=settings, codestore=codestore, registry=Registry(settings, engine, codestore))
    app = Starlette(
        routes=functions.routes,
        exception_handlers={
            LambdaError: errors.on_lambda_error,
            HTTPException: errors.on_http_error,
            Exception: errors.on_unexpected,
        },
    )
    app.state.platform = platform
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://nimbus") as c:
        yield c
    platform.registry.close()


def body(**overrides: object) -> dict[str, object]:
    return {"FunctionName": "fn", "Role": ROLE, "Runtime": RUNTIME, "Handler": "app.handler",
            "Code": {"ZipFile": zip_b64()}, **overrides}


def assert_error(resp: object, status: int, error_type: str) -> dict[str, object]:
    r = resp  # httpx.Response
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["x-amzn-ErrorType"] == error_type  # type: ignore[attr-defined]
    data: dict[str, object] = r.json()  # type: ignore[attr-defined]
    assert data["Type"] in ("User", "Service") and data["message"]
    return data


async def test_create_then_get(client: httpx.AsyncClient) -> None:
    r = await client.post(F, json=body())
    assert r.status_code == 201
    got = (await client.get(F + "/fn")).json()
    assert got["Configuration"]["CodeSha256"] == r.json()["CodeSha256"]
    location = got["Code"]["Location"]
    # Without a configured public URL, Code.Location points where this client reached the server.
    assert location.startswith("http://nimbus/nimbus/v1/code/")
    download = await client.get(location)
    assert download.status_code == 200
    assert base64.b64encode(download.content).decode() == zip_b64()
    assert r.headers.get("x-amzn-requestid") and download.headers.get("content-type") == "application/zip"


async def test_code_location_uses_the_configured_public_url(client: httpx.AsyncClient) -> None:
    await client.post(F, json=body())
    platform = client._transport.app.state.platform  # type: ignore[attr-defined]
    platform.settings.public_url = "https://lambda.example.com/"
    location = (await client.get(F + "/fn")).json()["Code"]["Location"]
    assert location.startswith("https://lambda.example.com/nimbus/v1/code/")


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1, 2]",
        b'"a string"',
        b"\xff\xfe",
        b'{"FunctionName": "fn",',
        b"[" * 50_000,
    ],
)
async def test_bad_json_is_invalid_request_content(client: httpx.AsyncClient, raw: bytes) -> None:
    assert_error(await client.post(F, content=raw), 400, "InvalidRequestContentException")


@pytest.mark.parametrize(
    "overrides",
    [
        {"MemorySize": "128"},
        {"Timeout": 3.5},
        {"Publish": "yes"},
        {"Environment": {"Variables": {"K1": 5}}},
        {"Layers": "arn"},
        {"Tags": ["a"]},
        {"Code": "zip"},
        {"FunctionName": 12},
    ],
)
async def test_wrong_types_are_refused(client: httpx.AsyncClient, overrides: dict[str, object]) -> None:
    assert_error(await client.post(F, json=body(**overrides)), 400, "InvalidParameterValueException")


@pytest.mark.parametrize("missing", ["FunctionName", "Role", "Code"])
async def test_missing_required_fields(client: httpx.AsyncClient, missing: str) -> None:
    b = body()
    del b[missing]
    assert_error(await client.post(F, json=b), 400, "InvalidParameterValueException")


async def test_bad_base64_zip(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(F, json=body(Code={"ZipFile": "%%%"})), 400, "InvalidRequestContentException")


async def test_body_limit(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(F, json=body(Description="x" * 70_000)), 413, "RequestEntityTooLargeException")


async def test_unknown_fields_and_nulls_are_ignored(client: httpx.AsyncClient) -> None:
    r = await client.post(F, json=body(SomethingNew={"x": 1}, Description=None, Timeout=None))
    assert r.status_code == 201, r.text
    assert r.json()["Timeout"] == 3


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/2015-03-31/functions/fn/nothing"), ("PATCH", F + "/fn"), ("GET", "/nope"),
     ("GET", "/nimbus/v1/code/" + "0" * 64), ("GET", "/nimbus/v1/code/../../etc/passwd")],
)
async def test_unknown_paths_and_methods(client: httpx.AsyncClient, method: str, path: str) -> None:
    r = await client.request(method, path)
    assert 400 <= r.status_code < 500
    assert "x-amzn-ErrorType" in r.headers
    json.loads(r.text)


async def test_query_parameters_are_checked(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(F, params={"MaxItems": "abc"}), 400, "ValidationException")
    assert_error(await client.get(F, params={"MaxItems": "0"}), 400, "ValidationException")
    assert_error(await client.get(F, params={"FunctionVersion": "SOME"}), 400, "ValidationException")
    assert_error(await client.get(F, params={"Marker": "!!!"}), 400, "InvalidParameterValueException")
