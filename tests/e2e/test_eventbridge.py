"""EventBridge end to end with boto3: rules with event patterns on the default and a custom bus, targets, and
PutEvents delivering AWS's event document to a Lambda function (asynchronously) and to an SQS queue; rule and
bus operations with their errors; scheduled rules."""

from __future__ import annotations

import json
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
    print("RECORD " + json.dumps(event))
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusServer]:
    server = NimbusServer(tmp_path_factory.mktemp("eventbridge") / "data").start()
    yield server
    server.stop()


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def records(logs: Any, name: str) -> list[dict[str, Any]]:
    try:
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{name}")
        lines = [e["message"] for page in pages for e in page["events"]]
    except ClientError:
        return []
    return [json.loads(m.split("RECORD ", 1)[1]) for m in lines if "RECORD " in m]


def test_put_events_rule_to_function_and_queue(srv: NimbusServer) -> None:
    lam, ev, sqs, logs = srv.client("lambda"), srv.client("events"), srv.client("sqs"), srv.client("logs")
    name = f"fn-{uuid.uuid4().hex[:8]}"
    fn_arn = lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="index.handler",
                                 Code={"ZipFile": make_zip({"index.py": RECORDER})})["FunctionArn"]
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["com.shop"], "detail-type": ["Order Placed"], "detail": {"total": [{"numeric": [">", 10]}]}}
    rule_arn = ev.put_rule(Name="orders", EventPattern=json.dumps(pattern))["RuleArn"]
    assert rule_arn == "arn:aws:events:us-east-1:000000000000:rule/orders"
    put = ev.put_targets(Rule="orders", Targets=[{"Id": "fn", "Arn": fn_arn}, {"Id": "q", "Arn": q_arn},
                                                 {"Id": "shaped", "Arn": q_arn, "InputPath": "$.detail"}])
    assert put["FailedEntryCount"] == 0
    assert {t["Id"] for t in ev.list_targets_by_rule(Rule="orders")["Targets"]} == {"fn", "q", "shaped"}

    result = ev.put_events(Entries=[
        {"Source": "com.shop", "DetailType": "Order Placed", "Detail": json.dumps({"total": 42}),
         "Resources": ["arn:aws:s3:::b"]},
        {"Source": "com.shop", "DetailType": "Order Placed", "Detail": json.dumps({"total": 5})},
        {"Source": "com.shop", "DetailType": "Order Placed"},
    ])
    assert result["FailedEntryCount"] == 1
    assert "EventId" in result["Entries"][0] and "EventId" in result["Entries"][1]
    assert result["Entries"][2]["ErrorCode"] == "InvalidArgument"

    (event,) = wait_for(lambda: records(logs, name), 30, "the rule's invocation")
    assert event["id"] == result["Entries"][0]["EventId"]
    assert {k: event[k] for k in ("version", "detail-type", "source", "account", "region", "resources", "detail")} == {
        "version": "0", "detail-type": "Order Placed", "source": "com.shop", "account": "000000000000",
        "region": "us-east-1", "resources": ["arn:aws:s3:::b"], "detail": {"total": 42}}
    bodies = []
    while len(bodies) < 2:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
        assert got, "the queue targets got nothing"
        bodies += [json.loads(m["Body"]) for m in got]
    assert {"total": 42} in bodies
    full = next(b for b in bodies if "detail" in b)
    assert full["id"] == event["id"]

    # DeleteRule refuses while targets remain; Disable stops matching.
    with pytest.raises(ClientError) as err:
        ev.delete_rule(Name="orders")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    ev.disable_rule(Name="orders")
    assert ev.describe_rule(Name="orders")["State"] == "DISABLED"
    ev.put_events(Entries=[{"Source": "com.shop", "DetailType": "Order Placed", "Detail": '{"total": 99}'}])
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []
    ev.remove_targets(Rule="orders", Ids=["fn", "q", "shaped"])
    ev.delete_rule(Name="orders")
    assert [r["Name"] for r in ev.list_rules()["Rules"]] == []


def test_custom_bus_and_errors(srv: NimbusServer) -> None:
    ev, sqs = srv.client("events"), srv.client("sqs")
    bus_arn = ev.create_event_bus(Name="orders-bus")["EventBusArn"]
    assert bus_arn == "arn:aws:events:us-east-1:000000000000:event-bus/orders-bus"
    assert ev.describe_event_bus(Name="orders-bus")["Arn"] == bus_arn
    assert {b["Name"] for b in ev.list_event_buses()["EventBuses"]} >= {"default", "orders-bus"}
    with pytest.raises(ClientError) as err:
        ev.create_event_bus(Name="orders-bus")
    assert err.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"

    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule_arn = ev.put_rule(Name="all", EventBusName="orders-bus", EventPattern='{"source": [{"prefix": "app."}]}')[
        "RuleArn"]
    assert rule_arn == "arn:aws:events:us-east-1:000000000000:rule/orders-bus/all"
    ev.put_targets(Rule="all", EventBusName="orders-bus", Targets=[{"Id": "q", "Arn": q_arn, "Input": '{"fixed": 1}'}])
    ev.put_events(Entries=[{"Source": "app.web", "DetailType": "x", "Detail": "{}", "EventBusName": bus_arn}])
    ev.put_events(Entries=[{"Source": "app.web", "DetailType": "x", "Detail": "{}"}])  # default bus: no rule
    (msg,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    assert json.loads(msg["Body"]) == {"fixed": 1}
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []

    def code(call: Callable[[], Any]) -> str:
        with pytest.raises(ClientError) as err:
            call()
        return str(err.value.response["Error"]["Code"])

    assert code(lambda: ev.put_rule(Name="bad", EventPattern='{"source": "x"}')) == "InvalidEventPatternException"
    assert code(lambda: ev.put_rule(Name="bad", ScheduleExpression="rate(5 fortnights)")) == "ValidationException"
    assert code(lambda: ev.describe_rule(Name="missing")) == "ResourceNotFoundException"
    assert code(lambda: ev.put_rule(Name="r", EventBusName="no-bus", EventPattern='{"a": ["b"]}')) == (
        "ResourceNotFoundException")
    assert code(lambda: ev.delete_event_bus(Name="orders-bus")) == "ValidationException"  # it has rules

    arn = ev.put_rule(Name="every-5", ScheduleExpression="rate(5 minutes)")["RuleArn"]
    described = ev.describe_rule(Name="every-5")
    assert described["Arn"] == arn and described["ScheduleExpression"] == "rate(5 minutes)"
    assert described["State"] == "ENABLED" and described["EventBusName"] == "default"
    with srv.http() as http:
        text = http.get("/metrics").text
    assert "nimbus_schedules" in text


FAILER = """
def handler(event, context):
    raise ValueError("boom")
"""


def test_async_destinations_to_a_queue_and_a_bus(srv: NimbusServer) -> None:
    lam, ev, sqs = srv.client("lambda"), srv.client("events"), srv.client("sqs")
    ok_fn, bad_fn = f"ok-{uuid.uuid4().hex[:6]}", f"bad-{uuid.uuid4().hex[:6]}"
    for name, code in ((ok_fn, RECORDER), (bad_fn, FAILER)):
        lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="index.handler",
                            Code={"ZipFile": make_zip({"index.py": code})})
    url = sqs.create_queue(QueueName=f"dest-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus_arn = ev.create_event_bus(Name=f"results-{uuid.uuid4().hex[:6]}")["EventBusArn"]
    bus = bus_arn.split("/", 1)[1]
    ev.put_rule(Name="failures", EventBusName=bus, EventPattern=json.dumps(
        {"source": ["lambda"], "detail-type": ["Lambda Function Invocation Result - Failure"]}))
    ev.put_targets(Rule="failures", EventBusName=bus, Targets=[{"Id": "q", "Arn": q_arn}])

    lam.put_function_event_invoke_config(FunctionName=ok_fn, DestinationConfig={"OnSuccess": {"Destination": q_arn}})
    lam.put_function_event_invoke_config(FunctionName=bad_fn, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnFailure": {"Destination": bus_arn}})
    lam.invoke(FunctionName=ok_fn, InvocationType="Event", Payload=b'{"n": 1}')
    lam.invoke(FunctionName=bad_fn, InvocationType="Event", Payload=b'{"n": 2}')

    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(bodies) < 2 and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
        bodies += [json.loads(m["Body"]) for m in got]
    assert len(bodies) == 2, bodies
    success = next(b for b in bodies if "requestContext" in b)
    assert success["requestContext"]["condition"] == "Success"
    assert success["requestPayload"] == {"n": 1} and success["responseContext"]["statusCode"] == 200
    failure = next(b for b in bodies if "detail" in b)
    assert failure["source"] == "lambda" and failure["detail-type"] == "Lambda Function Invocation Result - Failure"
    assert failure["resources"][0] == bus_arn and failure["resources"][1].endswith(f":function:{bad_fn}:$LATEST")
    assert failure["detail"]["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["detail"]["responseContext"]["functionError"] == "Unhandled"
    assert failure["detail"]["responsePayload"]["errorType"] == "ValueError"


def test_function_dead_letter_queue(srv: NimbusServer) -> None:
    lam, sqs = srv.client("lambda"), srv.client("sqs")
    url = sqs.create_queue(QueueName=f"fn-dlq-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = f"dlq-{uuid.uuid4().hex[:6]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="index.handler",
                        Code={"ZipFile": make_zip({"index.py": FAILER})}, DeadLetterConfig={"TargetArn": q_arn})
    assert lam.get_function_configuration(FunctionName=name)["DeadLetterConfig"] == {"TargetArn": q_arn}
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    request_id = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 3}')[
        "ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]

    def received() -> list[dict[str, Any]]:
        return sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, MessageAttributeNames=["All"]).get("Messages", [])

    (msg,) = wait_for(received, 30, "the dead-lettered event")
    assert json.loads(msg["Body"]) == {"n": 3}  # the original event, unchanged
    attrs = msg["MessageAttributes"]
    assert attrs["RequestID"]["StringValue"] == request_id
    assert attrs["ErrorCode"] == {"StringValue": "200", "DataType": "Number"}
    assert attrs["ErrorMessage"]["StringValue"] == "boom"
    with pytest.raises(ClientError) as err:
        lam.update_function_configuration(FunctionName=name, DeadLetterConfig={"TargetArn": "not-an-arn"})
    assert err.value.response["Error"]["Code"] == "ValidationException"
