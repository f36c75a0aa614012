"""Issue 21: function URL responses as AWS gives them, for answers without `statusCode` and for function errors.

Expected answers: LocalStack's AWS-validated `tests/aws/services/lambda_/test_lambda.snapshot.json`
(`localstack/localstack@8b9a79f`), `TestLambdaURL::test_lambda_url_invocation[<id>]` (status, Content-Type,
Content-Length and body recorded against AWS) and `test_lambda_url_invocation_exception` (502, plain-text body)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

CODE = r'''
def handler(event, context):
    kind = event["rawPath"].strip("/")
    if kind == "fail":
        raise RuntimeError("boom")
    return {
        "dict": {"hello": "world"},
        "http-response": {"statusCode": 200, "body": "body123"},
        "http-response-json": {"statusCode": 200, "body": "{\"hello\": \"world\"}"},
        "list-mixed": ["hello", 3, True],
        "string": "hello",
        "integer": 3,
        "float": 3.1,
        "boolean": True,
    }[kind]
'''

# id -> (status, body, Content-Length) as recorded
RECORDED = {
    "dict": (200, b'{"hello":"world"}', "17"),
    "http-response": (200, b"body123", "7"),
    "http-response-json": (200, b'{"hello": "world"}', "18"),
    "list-mixed": (200, b'["hello",3,true]', "16"),
    "string": (200, b"hello", "5"),
    "integer": (200, b"3", "1"),
    "float": (200, b"3.1", "3"),
    "boolean": (200, b"true", "4"),
}


@pytest.fixture(scope="module")
def url(lam: Any, server: NimbusServer) -> Iterator[httpx.Client]:
    name = f"urlconf-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": CODE})})
    config = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    lam.add_permission(FunctionName=name, StatementId="urlPermission", Action="lambda:InvokeFunctionUrl",
                       Principal="*", FunctionUrlAuthType="NONE")
    uid = httpx.URL(config["FunctionUrl"]).host.split(".")[0]
    with httpx.Client(base_url=server.endpoint, timeout=60,
                      headers={"Host": f"{uid}.lambda-url.us-east-1.localhost:{server.port}"}) as client:
        yield client


@pytest.mark.parametrize("kind", list(RECORDED))
def test_answer_without_status_code(url: httpx.Client, kind: str) -> None:
    """[LS TestLambdaURL::test_lambda_url_invocation[<kind>]]: compact JSON, a string as itself,
    Content-Type application/json."""
    status, body, length = RECORDED[kind]
    r = url.post(f"/{kind}", content=b"{'key':'value'}")
    assert (r.status_code, r.content, r.headers["content-length"]) == (status, body, length)
    assert r.headers["content-type"] == "application/json"


def test_unhandled_error_is_502_internal_server_error(url: httpx.Client) -> None:
    """[LS TestLambdaURL::test_lambda_url_invocation_exception]: status 502, body `Internal Server Error`."""
    r = url.post("/fail", content=b"{}")
    assert r.status_code == 502 and r.text == "Internal Server Error"
