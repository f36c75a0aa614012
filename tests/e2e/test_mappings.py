"""Event source mappings end to end with boto3: the API's shapes, states and errors; a queue -> function flow
with the SQS event shape; partial batch failures re-delivering only the failed items; a failing handler's
message redriven to the queue's DLQ after maxReceiveCount; a filter dropping (deleting) what it does not
match; and a kill -9 in the middle of a flow losing no message."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

pytestmark = pytest.mark.e2e

RECORDER = """
import json
def handler(event, context):
    for r in event["Records"]:
        print("RECORD " + json.dumps({"body": r["body"], "id": r["messageId"],
                                      "count": r["attributes"]["ApproximateReceiveCount"]}))
    print("BATCH " + json.dumps(event))
    return None
"""

# Fails the items whose body says "fail" (ReportBatchItemFailures); raises on "raise".
PARTIAL = """
import json
def handler(event, context):
    failures = []
    for r in event["Records"]:
        print("RECORD " + json.dumps({"body": r["body"], "id": r["messageId"],
                                      "count": r["attributes"]["ApproximateReceiveCount"]}))
        if r["body"] == "raise":
            raise Exception("boom")
        if r["body"].startswith("fail"):
            failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusServer]:
    server = NimbusServer(tmp_path_factory.mktemp("mappings") / "data").start()
    yield server
    server.stop()


def _function(lam: Any, code: str, timeout: int = 3) -> str:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="index.handler", Timeout=timeout,
                        Code={"ZipFile": make_zip({"index.py": code})})
    return name


def _queue(sqs: Any, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}", Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def messages(logs: Any, name: str) -> list[str]:
    try:
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{name}")
        return [e["message"] for page in pages for e in page["events"]]
    except ClientError:
        return []


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def records(logs: Any, name: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]] | None:
        got = [json.loads(m.split("RECORD ", 1)[1]) for m in messages(logs, name) if "RECORD " in m]
        return got if len(got) >= count else None

    result: list[dict[str, Any]] = wait_for(found, timeout, f"{count} record(s) of {name}")
    return result


def test_api_shapes_states_and_errors(srv: NimbusServer) -> None:
    lam, sqs = srv.client("lambda"), srv.client("sqs")
    fn = _function(lam, RECORDER)
    _url, arn = _queue(sqs)
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=5)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert created["State"] == "Creating"
    assert created["BatchSize"] == 5 and created["MaximumBatchingWindowInSeconds"] == 0
    assert created["FunctionArn"].endswith(f":function:{fn}")
    assert created["EventSourceMappingArn"].endswith(f":event-source-mapping:{created['UUID']}")
    assert created["FunctionResponseTypes"] == [] and created["StateTransitionReason"] == "USER_INITIATED"
    mapping_uuid = created["UUID"]
    wait_for(lambda: lam.get_event_source_mapping(UUID=mapping_uuid)["State"] == "Enabled", 10, "Enabled")
    listed = lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [mapping_uuid]
    assert lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"][0]["UUID"] == mapping_uuid

    with pytest.raises(ClientError) as dup:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn)
    assert dup.value.response["Error"]["Code"] == "ResourceConflictException"
    assert mapping_uuid in dup.value.response["Error"]["Message"]

    updated = lam.update_event_source_mapping(UUID=mapping_uuid, Enabled=False)
    assert updated["State"] == "Disabling"
    wait_for(lambda: lam.get_event_source_mapping(UUID=mapping_uuid)["State"] == "Disabled", 10, "Disabled")
    updated = lam.update_event_source_mapping(UUID=mapping_uuid, Enabled=True, BatchSize=20,
                                              MaximumBatchingWindowInSeconds=1,
                                              FunctionResponseTypes=["ReportBatchItemFailures"],
                                              ScalingConfig={"MaximumConcurrency": 2})
    assert updated["State"] == "Enabling" and updated["BatchSize"] == 20
    assert updated["ScalingConfig"] == {"MaximumConcurrency": 2}
    wait_for(lambda: lam.get_event_source_mapping(UUID=mapping_uuid)["State"] == "Enabled", 10, "Enabled")

    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"BatchSize": 11}, "InvalidParameterValueException", "greater than 0 if maximum batch size"),
        ({"FilterCriteria": {"Filters": [{"Pattern": "{\"body\": 1}"}]}}, "InvalidParameterValueException",
         "Invalid filter pattern definition."),
        ({"ScalingConfig": {"MaximumConcurrency": 1001}}, "InvalidParameterValueException", "maximumConcurrency"),
        ({"FunctionResponseTypes": ["Nope"]}, "InvalidParameterValueException", "functionResponseTypes"),
    ]
    other = _function(lam, RECORDER)
    for extra, code, text in cases:
        with pytest.raises(ClientError) as err:
            lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=other, **extra)
        assert err.value.response["Error"]["Code"] == code, extra
        assert text in err.value.response["Error"]["Message"], extra
    with pytest.raises(ClientError) as err:
        lam.create_event_source_mapping(EventSourceArn=arn + "-missing", FunctionName=other)
    assert "NonExistentQueue" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="no-such-function")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    slow = _function(lam, RECORDER, timeout=60)
    with pytest.raises(ClientError) as err:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=slow)
    assert "Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds" in str(err.value)

    deleted = lam.delete_event_source_mapping(UUID=mapping_uuid)
    assert deleted["State"] == "Deleting"
    wait_for(lambda: not lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"], 10, "gone")
    with pytest.raises(ClientError) as err:
        lam.get_event_source_mapping(UUID=mapping_uuid)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_queue_to_function_event_shape(srv: NimbusServer) -> None:
    lam, sqs, logs = srv.client("lambda"), srv.client("sqs"), srv.client("logs")
    fn = _function(lam, RECORDER)
    url, arn = _queue(sqs)
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10)
    sqs.send_message(QueueUrl=url, MessageBody="hello", MessageAttributes={
        "Author": {"DataType": "String", "StringValue": "John Grisham"},
        "Title": {"DataType": "String", "StringValue": "The Whistler"},
        "WeeksOn": {"DataType": "Number", "StringValue": "6"}})
    records(logs, fn, 1)
    batch = next(json.loads(m.split("BATCH ", 1)[1]) for m in messages(logs, fn) if "BATCH " in m)
    (record,) = batch["Records"]
    assert record["body"] == "hello" and record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn
    assert record["awsRegion"] == "us-east-1"
    assert record["md5OfMessageAttributes"] == "d25a6aea97eb8f585bfa92d314504a92"
    assert record["messageAttributes"]["Author"] == {"stringValue": "John Grisham", "stringListValues": [],
                                                     "binaryListValues": [], "dataType": "String"}
    assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
            "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    # Deleted on success: the queue is empty, nothing in flight.
    wait_for(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
        "ApproximateNumberOfMessagesNotVisible"] == "0", 10, "deleted")


def test_partial_batch_failure_redelivers_only_failed_items(srv: NimbusServer) -> None:
    lam, sqs, logs = srv.client("lambda"), srv.client("sqs"), srv.client("logs")
    fn = _function(lam, PARTIAL)
    # Window + function timeout (1 + 3 s) within the visibility timeout: failed items come back after 4 s
    # (beyond it, Lambda keeps them invisible for window + timeout + 30 s).
    url, arn = _queue(sqs, VisibilityTimeout="4")
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10,
                                    MaximumBatchingWindowInSeconds=1,
                                    FunctionResponseTypes=["ReportBatchItemFailures"])
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "ok-1"}, {"Id": "b", "MessageBody": "fail-1"}, {"Id": "c", "MessageBody": "ok-2"}])
    got = records(logs, fn, 5, timeout=30)  # 3 the first time, then "fail-1" again (at least twice)
    bodies = [r["body"] for r in got]
    assert bodies.count("ok-1") == 1 and bodies.count("ok-2") == 1
    assert bodies.count("fail-1") >= 3
    counts = [int(r["count"]) for r in got if r["body"] == "fail-1"]
    assert counts[:3] == [1, 2, 3]


def test_failed_handler_redriven_to_dlq(srv: NimbusServer) -> None:
    lam, sqs, logs = srv.client("lambda"), srv.client("sqs"), srv.client("logs")
    fn = _function(lam, PARTIAL)
    dlq_url, dlq_arn = _queue(sqs)
    url, arn = _queue(sqs, VisibilityTimeout="3",
                      RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}))
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=1)
    sqs.send_message(QueueUrl=url, MessageBody="raise")
    got = records(logs, fn, 2, timeout=30)
    assert [int(r["count"]) for r in got[:2]] == [1, 2]

    def in_dlq() -> list[dict[str, Any]]:
        return sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages", [])

    (moved,) = wait_for(in_dlq, 30, "the message in the DLQ")
    assert moved["Body"] == "raise"
    time.sleep(1)
    assert len([r for r in records(logs, fn, 2) if r["body"] == "raise"]) == 2  # no third delivery


def test_filter_drops_non_matching_messages(srv: NimbusServer) -> None:
    lam, sqs, logs = srv.client("lambda"), srv.client("sqs"), srv.client("logs")
    fn = _function(lam, RECORDER)
    url, arn = _queue(sqs)
    pattern = {"body": {"kind": ["order"], "amount": [{"numeric": [">", 10]}]}}
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10,
                                    FilterCriteria={"Filters": [{"Pattern": json.dumps(pattern)}]})
    for body in ({"kind": "order", "amount": 5}, "plain text", {"kind": "refund", "amount": 50},
                 {"kind": "order", "amount": 50}):
        sqs.send_message(QueueUrl=url, MessageBody=body if isinstance(body, str) else json.dumps(body))
    got = records(logs, fn, 1)
    assert [json.loads(r["body"]) for r in got] == [{"kind": "order", "amount": 50}]

    def drained() -> bool:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"

    wait_for(drained, 10, "non-matching messages deleted")
    assert len(records(logs, fn, 1)) == 1


def test_kill_9_loses_no_message(tmp_path_factory: pytest.TempPathFactory) -> None:
    data = tmp_path_factory.mktemp("mappings-kill") / "data"
    server = NimbusServer(data).start()
    try:
        lam, sqs = server.client("lambda"), server.client("sqs")
        fn = _function(lam, RECORDER)
        url, arn = _queue(sqs, VisibilityTimeout="5")
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10)
        sent = [f"m-{i}" for i in range(100)]
        for i in range(0, len(sent), 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": b}
                                                          for j, b in enumerate(sent[i:i + 10])])
        time.sleep(0.3)  # some batches are in flight, some done, some still queued
    finally:
        server.stop(signal.SIGKILL)
    server = NimbusServer(data, port=server.port).start()
    try:
        logs = server.client("logs")
        got = records(logs, fn, len(sent), timeout=90)
        assert {r["body"] for r in got} == set(sent)  # at least once: every message reached the function
    finally:
        server.stop()


def test_fifo_order_per_group_cli_and_metrics(srv: NimbusServer) -> None:
    import os
    import subprocess
    import sys

    lam, sqs, logs = srv.client("lambda"), srv.client("sqs"), srv.client("logs")
    fn = _function(lam, RECORDER)
    name = f"f-{uuid.uuid4().hex[:8]}.fifo"
    url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true",
                                                        "ContentBasedDeduplication": "true"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    env = {**os.environ, **srv.cli_env()}
    out = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", srv.endpoint, "--output", "json",
                          "lambda", "create-event-source-mapping", "--function-name", fn, "--event-source-arn", arn,
                          "--batch-size", "3"], env=env, capture_output=True, text=True, check=True)
    mapping_uuid = json.loads(out.stdout)["UUID"]
    for i in range(10):
        for group in ("a", "b"):
            sqs.send_message(QueueUrl=url, MessageBody=f"{group}-{i}", MessageGroupId=group)
    got = records(logs, fn, 20)
    for group in ("a", "b"):
        assert [r["body"] for r in got if r["body"].startswith(group)] == [f"{group}-{i}" for i in range(10)]
    listed = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", srv.endpoint, "--output", "json",
                             "lambda", "list-event-source-mappings", "--function-name", fn], env=env,
                            capture_output=True, text=True, check=True)
    assert [m["UUID"] for m in json.loads(listed.stdout)["EventSourceMappings"]] == [mapping_uuid]
    with srv.http() as http:
        text = http.get("/metrics").text
        stats = http.get(f"/nimbus/v1/event-source-mappings/{mapping_uuid}/stats").json()
    assert f'nimbus_mapping_messages_total{{function="{fn}",mapping="{mapping_uuid}"}} 20.0' in text
    assert stats["Messages"] == 20 and stats["Batches"] >= 7
