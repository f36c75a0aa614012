"""HTTP APIs through the real clients: boto3's and the AWS CLI's `apigatewayv2` against a real server, routes
with path parameters, greedy paths, ANY and $default, payload 2.0 and 1.0, stages, CORS, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import NimbusServer, make_zip

ECHO = """
import json
def handler(event, context):
    if event.get("version") == "1.0":
        return {"statusCode": 200, "body": json.dumps({"v": "1.0", "resource": event["resource"],
                "path": event["path"], "method": event["httpMethod"], "params": event["pathParameters"],
                "query": event["queryStringParameters"]})}
    return {"statusCode": 200, "headers": {"x-route": event["routeKey"]},
            "body": json.dumps({"v": event["version"], "route": event["routeKey"], "rawPath": event["rawPath"],
                                "params": event.get("pathParameters"), "stage": event["requestContext"]["stage"],
                                "query": event.get("queryStringParameters"), "body": event.get("body")})}
"""


@pytest.fixture(scope="module")
def echo(server: NimbusServer) -> Iterator[str]:
    lam = server.client("lambda")
    name = f"echo-{uuid.uuid4().hex[:8]}"
    arn = lam.create_function(FunctionName=name, Runtime=f"python3.{sys.version_info.minor}", Handler="app.handler",
                              Role="arn:aws:iam::000000000000:role/r", Code={"ZipFile": make_zip({"app.py": ECHO})}
                              )["FunctionArn"]
    yield arn
    lam.delete_function(FunctionName=name)


def test_api_lifecycle_and_dispatch(server: NimbusServer, echo: str) -> None:
    gw = server.client("apigatewayv2")
    api = gw.create_api(Name="shop", ProtocolType="HTTP", CorsConfiguration={"AllowOrigins": ["https://a.example"]})
    api_id = api["ApiId"]
    assert api["ApiEndpoint"] == f"http://{api_id}.execute-api.localhost:{server.port}"
    v2 = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=echo,
                               PayloadFormatVersion="2.0")
    v1 = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=echo,
                               PayloadFormatVersion="1.0")
    for key, integration in (("GET /items/{id}", v2), ("GET /items/special", v2), ("ANY /files/{path+}", v2),
                             ("$default", v2), ("POST /legacy/{id}", v1)):
        gw.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integration['IntegrationId']}")
    gw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    gw.create_stage(ApiId=api_id, StageName="beta")
    assert sorted(r["RouteKey"] for r in gw.get_routes(ApiId=api_id)["Items"]) == [
        "$default", "ANY /files/{path+}", "GET /items/special", "GET /items/{id}", "POST /legacy/{id}"]
    assert {s["StageName"] for s in gw.get_stages(ApiId=api_id)["Items"]} == {"$default", "beta"}
    assert gw.get_api(ApiId=api_id)["Name"] == "shop"

    base = f"{server.endpoint}/execute-api/{api_id}"
    with httpx.Client(timeout=60) as http:
        got = http.get(f"{base}/items/42?x=1")
        assert got.status_code == 200 and got.headers["x-route"] == "GET /items/{id}"
        assert got.json() == {"v": "2.0", "route": "GET /items/{id}", "rawPath": "/items/42", "params": {"id": "42"},
                              "stage": "$default", "query": {"x": "1"}, "body": None}
        assert http.get(f"{base}/items/special").json()["route"] == "GET /items/special"  # literal wins
        greedy = http.delete(f"{base}/files/a/b/c.txt").json()
        assert greedy["route"] == "ANY /files/{path+}" and greedy["params"] == {"path": "a/b/c.txt"}
        assert http.post(f"{base}/items/42").json()["route"] == "$default"  # no POST route: $default
        staged = http.get(f"{base}/beta/items/7").json()
        assert staged["stage"] == "beta" and staged["params"] == {"id": "7"}
        legacy = http.post(f"{base}/legacy/9?a=b", content=b"{}").json()
        assert legacy == {"v": "1.0", "resource": "/legacy/{id}", "path": "/legacy/9", "method": "POST",
                          "params": {"id": "9"}, "query": {"a": "b"}}
        host = http.get(f"{server.endpoint}/items/5", headers={"Host": f"{api_id}.execute-api.localhost"})
        assert host.json()["params"] == {"id": "5"}
        cors = http.get(f"{base}/items/1", headers={"Origin": "https://a.example"})
        assert cors.headers["access-control-allow-origin"] == "https://a.example"
        assert "access-control-allow-origin" not in http.get(f"{base}/items/1",
                                                             headers={"Origin": "https://b.example"}).headers
        assert http.get(f"{server.endpoint}/execute-api/nosuchapi/x").status_code == 404

    with pytest.raises(ClientError) as caught:
        gw.create_route(ApiId=api_id, RouteKey="GET /items/{id}", Target=f"integrations/{v2['IntegrationId']}")
    assert caught.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ClientError) as caught:
        gw.create_route(ApiId=api_id, RouteKey="FETCH /x")
    assert caught.value.response["Error"]["Code"] == "BadRequestException"
    route = next(r for r in gw.get_routes(ApiId=api_id)["Items"] if r["RouteKey"] == "GET /items/special")
    gw.delete_route(ApiId=api_id, RouteId=route["RouteId"])
    assert httpx.get(f"{base}/items/special", timeout=60).json()["route"] == "GET /items/{id}"
    gw.delete_api(ApiId=api_id)
    with pytest.raises(ClientError) as caught:
        gw.get_api(ApiId=api_id)
    assert caught.value.response["Error"]["Code"] == "NotFoundException"


def test_aws_cli_quick_create(server: NimbusServer, echo: str) -> None:
    def aws(*args: str) -> Any:
        done = subprocess.run([sys.executable, "-m", "awscli", "apigatewayv2", *args, "--endpoint-url",
                               server.endpoint, "--output", "json"], env={**os.environ, **server.cli_env()},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None

    api = aws("create-api", "--name", "quick", "--protocol-type", "HTTP", "--target", echo)
    assert [s["StageName"] for s in aws("get-stages", "--api-id", api["ApiId"])["Items"]] == ["$default"]
    got = httpx.get(f"{server.endpoint}/execute-api/{api['ApiId']}/any/path", timeout=60).json()
    assert got["route"] == "$default" and got["rawPath"] == "/any/path"
    assert any(a["ApiId"] == api["ApiId"] for a in aws("get-apis")["Items"])
    aws("delete-api", "--api-id", api["ApiId"])
