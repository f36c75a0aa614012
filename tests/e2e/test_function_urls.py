"""Function URLs end to end: the config API through boto3, and requests to the URLs themselves (by host name
and by path prefix): payload 2.0 events, response mapping and inference, errors, CORS, AWS_IAM and NONE auth."""

from __future__ import annotations

import base64
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

from tests.conftest import ROLE, RUNTIME, BotoSigV4, NimbusServer, make_zip

CODE = r'''
import base64, json

def handler(event, context):
    path = event.get("rawPath", "")
    if path == "/echo":
        return event
    if path == "/structured":
        return {"statusCode": 201, "headers": {"x-custom": "yes", "content-type": "text/plain"},
                "cookies": ["a=1", "b=2; Path=/"], "body": "created"}
    if path == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(b"\x00\x01\xff").decode(), "isBase64Encoded": True}
    if path == "/string":
        return "Hello, world!"
    if path == "/fail":
        raise RuntimeError("boom")
    return {"hello": "world"}
'''


def create(lam: Any, **extra: Any) -> str:
    name = f"url-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": CODE})}, **extra)
    return name


def make_public(lam: Any, name: str, qualifier: str | None = None) -> None:
    extra = {"Qualifier": qualifier} if qualifier else {}
    lam.add_permission(FunctionName=name, StatementId="public-url", Action="lambda:InvokeFunctionUrl",
                       Principal="*", FunctionUrlAuthType="NONE", **extra)


def url_id(url: str) -> str:
    return httpx.URL(url).host.split(".")[0]


@pytest.fixture(scope="module")
def public(lam: Any) -> Iterator[tuple[str, str]]:
    """A function with a public (NONE + policy) URL with CORS: (name, url id)."""
    name = create(lam)
    config = lam.create_function_url_config(
        FunctionName=name, AuthType="NONE",
        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
              "AllowHeaders": ["x-token"], "ExposeHeaders": ["x-custom"], "MaxAge": 600, "AllowCredentials": True})
    make_public(lam, name)
    yield name, url_id(config["FunctionUrl"])
    lam.delete_function(FunctionName=name)


def by_path(server: NimbusServer, uid: str) -> httpx.Client:
    return httpx.Client(base_url=f"{server.endpoint}/lambda-url/{uid}", timeout=60)


def by_host(server: NimbusServer, uid: str) -> httpx.Client:
    host = f"{uid}.lambda-url.us-east-1.localhost:{server.port}"
    return httpx.Client(base_url=server.endpoint, headers={"Host": host}, timeout=60)


# ------------------------------------------------------------------------------------------- config API


def test_config_lifecycle(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    try:
        made = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
        assert made["ResponseMetadata"]["HTTPStatusCode"] == 201
        assert made["AuthType"] == "AWS_IAM" and "InvokeMode" not in made  # as AWS: only when given
        assert made["FunctionArn"].endswith(f":function:{name}")
        uid = url_id(made["FunctionUrl"])
        assert len(uid) == 32
        assert made["FunctionUrl"] == f"http://{uid}.lambda-url.us-east-1.localhost:{server.port}/"
        got = lam.get_function_url_config(FunctionName=name)
        assert got["FunctionUrl"] == made["FunctionUrl"] and got["LastModifiedTime"] and got["InvokeMode"] == "BUFFERED"
        with pytest.raises(ClientError) as err:
            lam.create_function_url_config(FunctionName=name, AuthType="NONE")
        assert err.value.response["Error"]["Code"] == "ResourceConflictException"
        updated = lam.update_function_url_config(FunctionName=name, AuthType="NONE", Cors={"AllowOrigins": ["*"]})
        assert updated["AuthType"] == "NONE" and updated["Cors"] == {"AllowOrigins": ["*"]}
        assert updated["FunctionUrl"] == made["FunctionUrl"]  # a URL never changes

        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="$LATEST")
        on_alias = lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
        assert on_alias["FunctionArn"].endswith(f":function:{name}:live")
        listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
        assert {c["FunctionArn"].rsplit(":", 1)[-1] for c in listed} == {name, "live"}

        lam.delete_function_url_config(FunctionName=name)
        with pytest.raises(ClientError) as err:
            lam.get_function_url_config(FunctionName=name)
        assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        lam.delete_function(FunctionName=name)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"AuthType": "NONE", "Qualifier": "1"}, "ValidationException"),  # versions cannot have URLs
        ({"AuthType": "NONE", "Qualifier": "$LATEST"}, "ValidationException"),
        ({"AuthType": "NONE", "Qualifier": "nope"}, "ResourceNotFoundException"),  # no such alias
        ({"AuthType": "NONE", "Cors": {"MaxAge": 86401}}, "ValidationException"),
    ],
)
def test_config_validation(lam: Any, kwargs: dict[str, Any], code: str) -> None:
    name = create(lam)
    try:
        with pytest.raises(ClientError) as err:
            lam.create_function_url_config(FunctionName=name, **kwargs)
        assert err.value.response["Error"]["Code"] == code
    finally:
        lam.delete_function(FunctionName=name)


def test_unknown_function(lam: Any) -> None:
    with pytest.raises(ClientError) as err:
        lam.create_function_url_config(FunctionName=f"missing-{uuid.uuid4().hex[:8]}", AuthType="NONE")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


# --------------------------------------------------------------------------------------------- serving


def test_event_is_payload_2_0(server: NimbusServer, public: tuple[str, str]) -> None:
    _, uid = public
    with by_host(server, uid) as http:
        r = http.post("/echo?a=1&b=x%20y&a=2", content=b'{"k": "v"}',
                      headers={"content-type": "application/json", "x-multi": "one", "cookie": "c1=1; c2=2",
                               "user-agent": "tester/1.0"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    event = r.json()
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/echo" and event["rawQueryString"] == "a=1&b=x%20y&a=2"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["cookies"] == ["c1=1", "c2=2"]
    assert event["headers"]["x-multi"] == "one" and "cookie" not in event["headers"]
    assert event["body"] == '{"k": "v"}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["apiId"] == uid and ctx["domainPrefix"] == uid and ctx["stage"] == "$default"
    assert ctx["domainName"] == f"{uid}.lambda-url.us-east-1.localhost"
    assert ctx["http"] == {"method": "POST", "path": "/echo", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                           "userAgent": "tester/1.0"}
    assert ctx["requestId"] == r.headers["x-amzn-requestid"]
    assert isinstance(ctx["timeEpoch"], int) and ctx["time"].endswith("+0000")
    assert "authorizer" not in ctx


def test_binary_body_is_base64_and_path_prefix_works(server: NimbusServer, public: tuple[str, str]) -> None:
    _, uid = public
    with by_path(server, uid) as http:
        r = http.post("/echo", content=b"\x00\xff\x10", headers={"content-type": "application/octet-stream"})
    event = r.json()
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x00\xff\x10"
    assert event["rawPath"] == "/echo" and "queryStringParameters" not in event


def test_responses(server: NimbusServer, public: tuple[str, str]) -> None:
    _, uid = public
    with by_path(server, uid) as http:
        r = http.get("/structured")
        assert r.status_code == 201 and r.text == "created"
        assert r.headers["x-custom"] == "yes" and r.headers["content-type"] == "text/plain"
        assert r.headers.get_list("set-cookie") == ["a=1", "b=2; Path=/"]
        r = http.get("/binary")
        assert r.content == b"\x00\x01\xff"
        r = http.get("/string")  # inference: a JSON string is the body itself (AWS, issue 21)
        assert r.status_code == 200 and r.text == "Hello, world!"
        assert r.headers["content-type"] == "application/json"
        assert http.get("/").json() == {"hello": "world"}
        r = http.get("/fail")
        assert r.status_code == 502 and r.text == "Internal Server Error"


def test_cors(server: NimbusServer, public: tuple[str, str]) -> None:
    _, uid = public
    with by_path(server, uid) as http:
        pre = http.options("/fail", headers={"Origin": "https://app.example",  # never reaches the function
                                             "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert pre.headers["access-control-allow-methods"] == "GET,POST"
        assert pre.headers["access-control-allow-headers"] == "x-token"
        assert pre.headers["access-control-max-age"] == "600"
        assert pre.headers["access-control-allow-credentials"] == "true"
        actual = http.get("/structured", headers={"Origin": "https://app.example"})
        assert actual.headers["access-control-allow-origin"] == "https://app.example"
        assert actual.headers["access-control-expose-headers"] == "x-custom"
        other = http.get("/structured", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_none_url_needs_a_public_policy(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    try:
        uid = url_id(lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"])
        with by_path(server, uid) as http:
            r = http.get("/")
            assert r.status_code == 403 and r.json() == {"Message": "Forbidden"}
            make_public(lam, name)
            assert http.get("/").json() == {"hello": "world"}
            lam.remove_permission(FunctionName=name, StatementId="public-url")
            assert http.get("/").status_code == 403
    finally:
        lam.delete_function(FunctionName=name)


def test_aws_iam_url(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    try:
        uid = url_id(lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"])
        with by_path(server, uid) as http:
            assert http.get("/echo").status_code == 403  # unsigned
        with httpx.Client(base_url=f"{server.endpoint}/lambda-url/{uid}",
                          auth=BotoSigV4("NKIAUNKNOWNUNKNOWN00", "x" * 40)) as http:
            assert http.get("/echo").status_code == 403  # a key this server does not know
        with httpx.Client(base_url=f"{server.endpoint}/lambda-url/{uid}", auth=BotoSigV4(*server.credentials),
                          timeout=60) as http:
            r = http.post("/echo", json={"x": 1})
        assert r.status_code == 200, r.text
        iam = r.json()["requestContext"]["authorizer"]["iam"]
        assert iam["accessKey"] == server.credentials[0] and iam["accountId"] == "000000000000"
    finally:
        lam.delete_function(FunctionName=name)


def test_alias_url_and_unknown_url(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    try:
        lam.publish_version(FunctionName=name)
        lam.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
        uid = url_id(lam.create_function_url_config(FunctionName=name, Qualifier="prod",
                                                    AuthType="NONE")["FunctionUrl"])
        make_public(lam, name, "prod")
        with by_path(server, uid) as http:
            assert http.get("/").json() == {"hello": "world"}
        with by_path(server, "0" * 32) as http:
            assert http.get("/").status_code == 404
    finally:
        lam.delete_function(FunctionName=name)


def test_throttled_url_is_429(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    try:
        uid = url_id(lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"])
        make_public(lam, name)
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        with by_path(server, uid) as http:
            assert http.get("/").status_code == 429
    finally:
        lam.delete_function(FunctionName=name)


def test_response_stream_mode(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    try:
        uid = url_id(lam.create_function_url_config(FunctionName=name, AuthType="NONE",
                                                    InvokeMode="RESPONSE_STREAM")["FunctionUrl"])
        make_public(lam, name)
        with by_path(server, uid) as http:
            r = http.get("/")
        assert r.status_code == 200 and json.loads(r.content) == {"hello": "world"}
    finally:
        lam.delete_function(FunctionName=name)


STREAMER = r'''
import json

def handler(event, context):
    def generate():
        yield json.dumps({"statusCode": 207, "headers": {"content-type": "text/plain"}, "cookies": ["s=1"]})
        yield b"\x00" * 8
        for i in range(3):
            yield f"part {i}\n"
    return generate()
'''


def test_response_stream_with_http_prelude(server: NimbusServer, lam: Any) -> None:
    name = f"url-stream-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": STREAMER})})
    try:
        uid = url_id(lam.create_function_url_config(FunctionName=name, AuthType="NONE",
                                                    InvokeMode="RESPONSE_STREAM")["FunctionUrl"])
        make_public(lam, name)
        with by_path(server, uid) as http:
            r = http.get("/")
        assert r.status_code == 207, r.text
        assert r.headers["content-type"] == "text/plain" and r.headers["set-cookie"] == "s=1"
        assert r.text == "part 0\npart 1\npart 2\n"
    finally:
        lam.delete_function(FunctionName=name)


def test_cli_url_commands(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    env = {**os.environ, **server.cli_env()}

    def nimbus(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nimbus", "url", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    try:
        out = nimbus("create", name, "--public", "--cors-origin", "https://a.example")
        assert out.returncode == 0, out.stderr
        url = out.stdout.strip()
        with by_path(server, url_id(url)) as http:
            assert http.get("/").json() == {"hello": "world"}
        assert json.loads(nimbus("get", name).stdout)["Cors"]["AllowOrigins"] == ["https://a.example"]
        assert nimbus("delete", name).returncode == 0
        assert nimbus("get", name).returncode == 1
    finally:
        lam.delete_function(FunctionName=name)
