"""Property-based fuzzing of every operation of the Lambda REST API, from nimbus's published OpenAPI
description (src/nimbus/api/openapi.json, generated from botocore's model by scripts/openapi.py), with
schemathesis against a real server, signed like boto3 signs: whatever the input, the answer is never a 5xx,
and every error is in Lambda's shape (`x-amzn-ErrorType` header, JSON body with `Type` and `message`, or
AWS's bare `{"Message": ...}` where AWS answers so).
The budget is bounded (a few examples per operation) so the suite stays fast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, Phase, given, settings

import nimbus.api
from tests.conftest import NimbusServer

pytestmark = pytest.mark.e2e

OPENAPI = Path(nimbus.api.__file__).parent / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(str(OPENAPI))
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
BUDGET = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


class SigV4(requests.auth.AuthBase):
    """Signs a `requests` request exactly as it will be sent, as botocore does for service `lambda`."""

    def __init__(self, access_key: str, secret: str) -> None:
        self.credentials = Credentials(access_key, secret)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body.encode() if isinstance(r.body, str) else (r.body or b"")
        headers = {k: v for k, v in r.headers.items() if k.lower() not in ("authorization", "x-amz-date")}
        aws = AWSRequest(method=r.method, url=r.url, data=body, headers=headers)
        SigV4Auth(self.credentials, "lambda", "us-east-1").add_auth(aws)
        r.headers.update(dict(aws.headers.items()))
        return r


def test_the_description_covers_the_whole_lambda_api() -> None:
    ids = {op.definition.raw.get("operationId") for op in OPERATIONS}
    assert {"CreateFunction", "Invoke", "GetFunction", "ListFunctions", "PublishLayerVersion",
            "CreateFunctionUrlConfig", "PutFunctionEventInvokeConfig", "CreateAlias"} <= ids
    assert len(OPERATIONS) >= 85


def test_the_server_publishes_its_description(server: NimbusServer) -> None:
    with server.http() as http:
        r = http.get("/nimbus/v1/openapi.json")
    assert r.status_code == 200 and r.json()["paths"] == json.loads(OPENAPI.read_text())["paths"]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: str(op.definition.raw.get("operationId")))
def test_operation_answers_in_lambda_shape(server: NimbusServer, operation: Any) -> None:
    auth = SigV4(*server.credentials)
    session = requests.Session()

    @BUDGET
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=server.endpoint, session=session, auth=auth, timeout=60)
        what = f"{case.method} {case.formatted_path} -> {response.status_code} {response.text[:300]!r}"
        assert response.status_code < 500, what
        if response.status_code >= 400:
            assert response.headers.get("x-amzn-errortype"), what  # (schemathesis lowercases names)
            body = response.json()
            # Lambda's shape ({"Type", "message"}); AWS answers a foreign account's ARN with a bare
            # AccessDeniedException ({"Message": null}), which nimbus copies (tests/e2e/test_conformance_*).
            assert isinstance(body, dict) and (body.get("Type") and "message" in body or "Message" in body), what

    try:
        check()
    finally:
        session.close()
