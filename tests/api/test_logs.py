"""The CloudWatch Logs JSON-protocol handler in-process, with answers parsed by botocore's own JSON
parser against the `logs` service model (what boto3 and the AWS CLI would see)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import botocore.session
import httpx
import pytest
from botocore.parsers import create_parser
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api import logs
from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.observe.logstore import LogStore

MODEL = botocore.session.get_session().get_service_model("logs")
G = "/aws/lambda/fn"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'nimbus.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def store(engine: Engine, tmp_path: Path) -> LogStore:
    return LogStore(Settings(data_dir=tmp_path), engine)


@pytest.fixture
async def client(store: LogStore) -> AsyncIterator[httpx.AsyncClient]:
    async def endpoint(request: Request) -> Response:
        return await logs.handle(request, request.headers["x-amz-target"].removeprefix("Logs_20140328."))

    app = Starlette(routes=[Route("/", endpoint, methods=["POST"])])
    app.state.platform = SimpleNamespace(logstore=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://logs") as http:
        yield http


async def raw(client: httpx.AsyncClient, operation: str, body: bytes | str) -> Any:
    return await client.post(
        "/",
        content=body,
        headers={"X-Amz-Target": f"Logs_20140328.{operation}", "Content-Type": "application/x-amz-json-1.1"},
    )


async def call(client: httpx.AsyncClient, operation: str, **params: Any) -> dict[str, Any]:
    """Call like boto3 does and parse the answer with botocore; errors come back under "Error"."""
    response = await raw(client, operation, json.dumps(params))
    assert response.headers["content-type"].startswith("application/x-amz-json-1.1")
    op = MODEL.operation_model(operation)
    parsed: dict[str, Any] = create_parser("json").parse(
        {"status_code": response.status_code, "headers": dict(response.headers), "body": response.content},
        op.output_shape,
    )
    parsed["status"] = response.status_code
    return parsed


async def put(client: httpx.AsyncClient, stream: str, messages: list[str], start: int | None = None) -> None:
    ts = start if start is not None else int(time.time() * 1000)
    events = [{"timestamp": ts + i, "message": m} for i, m in enumerate(messages)]
    assert (await call(client, "PutLogEvents", logGroupName=G, logStreamName=stream, logEvents=events))["status"] == 200


async def test_create_describe_put_get(client: httpx.AsyncClient) -> None:
    assert (await call(client, "CreateLogGroup", logGroupName=G))["status"] == 200
    assert (await call(client, "CreateLogStream", logGroupName=G, logStreamName="s1"))["status"] == 200
    await put(client, "s1", ["one", "two", "three"])
    groups = await call(client, "DescribeLogGroups", logGroupNamePrefix="/aws/lambda/")
    assert [g["logGroupName"] for g in groups["logGroups"]] == [G]
    assert "nextToken" not in groups
    streams = await call(client, "DescribeLogStreams", logGroupName=G, orderBy="LastEventTime", descending=True)
    assert [s["logStreamName"] for s in streams["logStreams"]] == ["s1"]
    page = await call(client, "GetLogEvents", logGroupName=G, logStreamName="s1", startFromHead=True, limit=2)
    assert [e["message"] for e in page["events"]] == ["one", "two"]
    nxt = await call(client, "GetLogEvents", logGroupName=G, logStreamName="s1", nextToken=page["nextForwardToken"])
    assert [e["message"] for e in nxt["events"]] == ["three"]


async def test_log_group_identifier_accepts_an_arn(client: httpx.AsyncClient) -> None:
    await call(client, "CreateLogGroup", logGroupName=G)
    await call(client, "CreateLogStream", logGroupName=G, logStreamName="s1")
    await put(client, "s1", ["hi"])
    arn = f"arn:aws:logs:us-east-1:000000000000:log-group:{G}:*"
    out = await call(client, "FilterLogEvents", logGroupIdentifier=arn)
    assert [e["message"] for e in out["events"]] == ["hi"]
    both = await call(client, "FilterLogEvents", logGroupIdentifier=arn, logGroupName=G)
    assert both["Error"]["Code"] == "InvalidParameterException"


async def test_appended_lines_are_visible_to_the_next_query(client: httpx.AsyncClient, store: LogStore) -> None:
    store.append(G, "env1", [(int(time.time() * 1000), "START RequestId: x Version: $LATEST")])
    out = await call(client, "FilterLogEvents", logGroupName=G, filterPattern='"START RequestId"', interleaved=True)
    assert [e["message"] for e in out["events"]] == ["START RequestId: x Version: $LATEST"]
    assert out["searchedLogStreams"] == [] and "nextToken" not in out
    assert out["events"][0]["logStreamName"] == "env1" and out["events"][0]["eventId"]


async def test_filter_pagination_tokens(client: httpx.AsyncClient) -> None:
    await call(client, "CreateLogGroup", logGroupName=G)
    await call(client, "CreateLogStream", logGroupName=G, logStreamName="s1")
    await put(client, "s1", [f"m{i}" for i in range(5)])
    first = await call(client, "FilterLogEvents", logGroupName=G, limit=3)
    assert len(first["events"]) == 3 and first["nextToken"]
    rest = await call(client, "FilterLogEvents", logGroupName=G, limit=3, nextToken=first["nextToken"])
    assert [e["message"] for e in rest["events"]] == ["m3", "m4"] and "nextToken" not in rest


async def test_retention_policies(client: httpx.AsyncClient) -> None:
    await call(client, "CreateLogGroup", logGroupName=G)
    assert (await call(client, "PutRetentionPolicy", logGroupName=G, retentionInDays=14))["status"] == 200
    assert (await call(client, "DescribeLogGroups"))["logGroups"][0]["retentionInDays"] == 14
    bad = await call(client, "PutRetentionPolicy", logGroupName=G, retentionInDays=13)
    assert bad["Error"]["Code"] == "InvalidParameterException" and bad["status"] == 400
    assert (await call(client, "DeleteRetentionPolicy", logGroupName=G))["status"] == 200
    assert "retentionInDays" not in (await call(client, "DescribeLogGroups"))["logGroups"][0]


@pytest.mark.parametrize(
    ("operation", "params", "code"),
    [
        ("DescribeLogStreams", {"logGroupName": "/missing"}, "ResourceNotFoundException"),
        ("GetLogEvents", {"logGroupName": "/missing", "logStreamName": "s"}, "ResourceNotFoundException"),
        ("FilterLogEvents", {"logGroupName": "/missing"}, "ResourceNotFoundException"),
        ("DeleteLogGroup", {"logGroupName": "/missing"}, "ResourceNotFoundException"),
        ("GetLogEvents", {"logGroupName": G}, "InvalidParameterException"),
        ("GetLogEvents", {"logStreamName": "s"}, "InvalidParameterException"),
        ("DescribeLogStreams", {"logGroupName": "bad name!"}, "InvalidParameterException"),
        ("DescribeLogGroups", {"limit": 51}, "InvalidParameterException"),
        ("DescribeLogGroups", {"limit": "ten"}, "InvalidParameterException"),
        ("DescribeLogGroups", {"nextToken": "nonsense"}, "InvalidParameterException"),
        ("FilterLogEvents", {"logGroupName": G, "filterPattern": "{ $.a = "}, "InvalidParameterException"),
        ("FilterLogEvents", {"logGroupName": G, "startTime": -1}, "InvalidParameterException"),
        ("FilterLogEvents", {"logGroupName": G, "logStreamNames": "s"}, "InvalidParameterException"),
        ("DescribeLogStreams", {"logGroupName": G, "orderBy": "Size"}, "InvalidParameterException"),
        ("PutLogEvents", {"logGroupName": G, "logStreamName": "s", "logEvents": []}, "InvalidParameterException"),
        ("PutRetentionPolicy", {"logGroupName": G}, "InvalidParameterException"),
    ],
)
async def test_errors_have_the_json_protocol_shape(
    client: httpx.AsyncClient, operation: str, params: dict[str, Any], code: str
) -> None:
    await call(client, "CreateLogGroup", logGroupName=G)
    out = await call(client, operation, **params)
    assert out["status"] == 400
    assert out["Error"]["Code"] == code
    assert out["Error"]["Message"]


async def test_already_exists(client: httpx.AsyncClient) -> None:
    await call(client, "CreateLogGroup", logGroupName=G)
    assert (await call(client, "CreateLogGroup", logGroupName=G))["Error"]["Code"] == "ResourceAlreadyExistsException"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_unparseable_bodies_are_serialization_errors(client: httpx.AsyncClient, body: bytes) -> None:
    response = await raw(client, "DescribeLogGroups", body)
    assert response.status_code == 400
    assert response.json()["__type"] == "SerializationException"


async def test_empty_body_is_an_empty_request(client: httpx.AsyncClient) -> None:
    response = await raw(client, "DescribeLogGroups", b"")
    assert response.status_code == 200 and response.json() == {"logGroups": []}


async def test_unknown_operation(client: httpx.AsyncClient) -> None:
    response = await raw(client, "TailLogs", b"{}")
    assert response.status_code == 400
    assert response.json()["__type"] == "UnknownOperationException"
