"""The control-plane routes in-process (Starlette httpx.AsyncClient over a real registry): request parsing and
Lambda's error shape for malformed requests."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from nimbus.api.app import create_app
from nimbus.config import Settings
from nimbus.platform import Platform, build_platform
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
def platform(tmp_path: Path) -> Iterator[Platform]:
    # The server's own platform, unstarted (no lifespan): the control plane needs no sandbox.
    platform = build_platform(Settings(data_dir=tmp_path, request_body_max_bytes=64 * 1024, auth="none"))
    yield platform
    platform.registry.close()


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(platform), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://nimbus") as c:
        yield c


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


async def test_code_location_uses_the_configured_public_url(client: httpx.AsyncClient, platform: Platform) -> None:
    await client.post(F, json=body())
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


async def test_the_server_says_which_runtimes_it_runs(client: httpx.AsyncClient) -> None:
    from nimbus.runtimes import available_runtimes

    r = await client.get("/nimbus/v1/runtimes")
    assert r.status_code == 200 and r.json() == {"runtimes": sorted(available_runtimes())}
    assert RUNTIME in r.json()["runtimes"]


@pytest.mark.parametrize(
    ("path", "high"),
    [
        (F, 10000),
        ("/2021-10-31/functions/fn/urls", 50),
        ("/2019-09-30/functions/fn/provisioned-concurrency?List=ALL", 50),
        ("/2019-09-25/functions/fn/event-invoke-config/list", 50),
        ("/2018-10-31/layers", 50),
    ],
)
async def test_max_items_is_checked_alike_everywhere(client: httpx.AsyncClient, path: str, high: int) -> None:
    await client.post(F, json=body())
    sep = "&" if "?" in path else "?"
    for bad in ("abc", "0", "-3", str(high + 1)):
        assert_error(await client.get(f"{path}{sep}MaxItems={bad}"), 400, "ValidationException")
    assert (await client.get(f"{path}{sep}MaxItems={high}")).status_code == 200
