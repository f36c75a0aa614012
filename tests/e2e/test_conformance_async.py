"""Issue 21: an asynchronous invocation that fails is attempted three times by default (one attempt plus two
retries), every attempt under the same request id (AWS Lambda developer guide, invocation-async: "Lambda
retries function errors twice"; LocalStack's event_manager keeps max_retry_attempts=2). The retry delays are
shortened by a setting (AWS waits about 1 and 2 minutes); the count is not."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

FAILER = """
def handler(event, context):
    print("ATTEMPT " + context.aws_request_id)
    raise Exception("boom")
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusServer]:
    server = NimbusServer(tmp_path_factory.mktemp("async21") / "data",
                          env={"NIMBUS_ASYNC_RETRY_DELAYS": "0.3,0.3", "NIMBUS_ASYNC_POLL_INTERVAL": "0.1"}).start()
    yield server
    server.stop()


def attempts(logs: Any, name: str) -> list[str]:
    try:
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{name}")
        return [e["message"].split()[1] for page in pages for e in page["events"] if e["message"].startswith("ATTEMPT")]
    except ClientError:
        return []


def test_failed_event_is_attempted_three_times_with_one_request_id(srv: NimbusServer) -> None:
    lam, logs = srv.client("lambda"), srv.client("logs")
    name = f"fail-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": FAILER})})
    accepted = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    assert accepted["StatusCode"] == 202
    request_id = accepted["ResponseMetadata"]["RequestId"]
    deadline = time.monotonic() + 60
    while len(attempts(logs, name)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # several retry delays more: no fourth attempt comes
    assert attempts(logs, name) == [request_id] * 3
