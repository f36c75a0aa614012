"""EventBridge Scheduler end to end with boto3 (and the AWS CLI): schedules and groups with AWS's shapes and
errors, a one-time schedule firing its Lambda target on time with the context keywords substituted, once,
across a restart; a tick missed while the server was down firing once at start-up; ActionAfterCompletion
DELETE; delivery failures going to the dead-letter queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

pytestmark = pytest.mark.e2e

RECORDER = """
import json, time
def handler(event, context):
    print("RECORD " + json.dumps({"event": event, "at": time.time()}))
"""
SCHED_ROLE = "arn:aws:iam::000000000000:role/scheduler-role"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusServer]:
    server = NimbusServer(tmp_path_factory.mktemp("schedules") / "data").start()
    yield server
    server.stop()


def _function(lam: Any) -> tuple[str, str]:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    arn = lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="index.handler",
                              Code={"ZipFile": make_zip({"index.py": RECORDER})})["FunctionArn"]
    return name, arn


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


def _at(seconds: float) -> tuple[str, datetime]:
    when = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
    return f"at({when.strftime('%Y-%m-%dT%H:%M:%S')})", when


def test_api_shapes_and_errors(srv: NimbusServer) -> None:
    sch = srv.client("scheduler")
    group = f"g-{uuid.uuid4().hex[:6]}"
    group_arn = sch.create_schedule_group(Name=group, Tags=[{"Key": "team", "Value": "a"}])["ScheduleGroupArn"]
    assert group_arn == f"arn:aws:scheduler:us-east-1:000000000000:schedule-group/{group}"
    assert sch.get_schedule_group(Name=group)["State"] == "ACTIVE"
    assert sch.list_tags_for_resource(ResourceArn=group_arn)["Tags"] == [{"Key": "team", "Value": "a"}]
    sch.tag_resource(ResourceArn=group_arn, Tags=[{"Key": "env", "Value": "dev"}])
    sch.untag_resource(ResourceArn=group_arn, TagKeys=["team"])
    assert sch.list_tags_for_resource(ResourceArn=group_arn)["Tags"] == [{"Key": "env", "Value": "dev"}]
    assert "default" in [g["Name"] for g in sch.list_schedule_groups()["ScheduleGroups"]]

    target = {"Arn": "arn:aws:lambda:us-east-1:000000000000:function:nothing", "RoleArn": SCHED_ROLE}
    arn = sch.create_schedule(Name="nightly", GroupName=group, ScheduleExpression="cron(0 2 ? * MON-FRI *)",
                              ScheduleExpressionTimezone="Europe/Paris", FlexibleTimeWindow={"Mode": "OFF"},
                              Target={**target, "Input": '{"a": 1}'}, Description="d")["ScheduleArn"]
    assert arn == f"arn:aws:scheduler:us-east-1:000000000000:schedule/{group}/nightly"
    got = sch.get_schedule(Name="nightly", GroupName=group)
    assert got["ScheduleExpressionTimezone"] == "Europe/Paris" and got["State"] == "ENABLED"
    assert got["Target"]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
    assert isinstance(got["CreationDate"], datetime) and got["ActionAfterCompletion"] == "NONE"
    # UpdateSchedule replaces: the Description not sent is gone.
    sch.update_schedule(Name="nightly", GroupName=group, ScheduleExpression="rate(5 minutes)",
                        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 10}, Target=target,
                        State="DISABLED")
    got = sch.get_schedule(Name="nightly", GroupName=group)
    assert "Description" not in got and got["State"] == "DISABLED"
    assert got["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 10}
    listed = sch.list_schedules(GroupName=group)["Schedules"]
    assert [(s["Name"], s["Target"]) for s in listed] == [("nightly", {"Arn": target["Arn"]})]
    assert sch.list_schedules(GroupName=group, State="ENABLED")["Schedules"] == []

    def error(call: Callable[[], Any]) -> tuple[str, str, int]:
        with pytest.raises(ClientError) as err:
            call()
        e = err.value.response
        return e["Error"]["Code"], e["Error"]["Message"], e["ResponseMetadata"]["HTTPStatusCode"]

    for bad in ("cron(0 1 * * * *)", "rate(10 seconds)", "at(2021-12-31T23:59:59Z)", "rate( 10 minutes )",
                "cron(71 8 1 * ? *)"):
        assert error(lambda b=bad: sch.create_schedule(Name="x", ScheduleExpression=b,
                                                       FlexibleTimeWindow={"Mode": "OFF"}, Target=target)) == (
            "ValidationException", f"Invalid Schedule Expression {bad}.", 400)
    assert error(lambda: sch.create_schedule(Name="nightly", GroupName=group, ScheduleExpression="rate(1 hour)",
                                             FlexibleTimeWindow={"Mode": "OFF"}, Target=target))[::2] == (
        "ConflictException", 409)
    assert error(lambda: sch.create_schedule(Name="y", GroupName="nope", ScheduleExpression="rate(1 hour)",
                                             FlexibleTimeWindow={"Mode": "OFF"}, Target=target))[::2] == (
        "ResourceNotFoundException", 404)
    assert error(lambda: sch.get_schedule(Name="missing"))[::2] == ("ResourceNotFoundException", 404)
    assert error(lambda: sch.create_schedule(Name="z", ScheduleExpression="rate(1 hour)",
                                             FlexibleTimeWindow={"Mode": "OFF"},
                                             Target={**target, "RoleArn": "not-a-role"}))[::2] == (
        "ValidationException", 400)
    # Deleting a group deletes its schedules.
    sch.delete_schedule_group(Name=group)
    assert error(lambda: sch.get_schedule(Name="nightly", GroupName=group))[0] == "ResourceNotFoundException"


def test_at_schedule_fires_on_time_once_across_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    data = tmp_path_factory.mktemp("schedules-restart") / "data"
    server = NimbusServer(data).start()
    try:
        lam, sch, logs = server.client("lambda"), server.client("scheduler"), server.client("logs")
        name, fn_arn = _function(lam)
        expression, when = _at(3)
        arn = sch.create_schedule(
            Name="once", ScheduleExpression=expression, FlexibleTimeWindow={"Mode": "OFF"},
            ActionAfterCompletion="DELETE",
            Target={"Arn": fn_arn, "RoleArn": SCHED_ROLE,
                    "Input": json.dumps({"arn": "<aws.scheduler.schedule-arn>",
                                         "time": "<aws.scheduler.scheduled-time>",
                                         "attempt": "<aws.scheduler.attempt-number>"})})["ScheduleArn"]
        (rec,) = wait_for(lambda: records(logs, name), 30, "the schedule's invocation")
        assert rec["event"] == {"arn": arn, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "attempt": "1"}
        assert rec["at"] >= when.timestamp()  # not early
        # ActionAfterCompletion DELETE: the schedule is gone after its one run.
        wait_for(lambda: not sch.list_schedules()["Schedules"], 10, "the schedule deleted after completion")
    finally:
        server.stop()
    server = NimbusServer(data, port=server.port).start()
    try:
        time.sleep(2)
        assert len(records(server.client("logs"), name)) == 1  # not again after the restart
    finally:
        server.stop()


def test_tick_missed_while_down_fires_once_at_start(tmp_path_factory: pytest.TempPathFactory) -> None:
    data = tmp_path_factory.mktemp("schedules-missed") / "data"
    server = NimbusServer(data).start()
    try:
        lam, sch = server.client("lambda"), server.client("scheduler")
        name, fn_arn = _function(lam)
        expression, when = _at(2)
        sch.create_schedule(Name="missed", ScheduleExpression=expression, FlexibleTimeWindow={"Mode": "OFF"},
                            Target={"Arn": fn_arn, "RoleArn": SCHED_ROLE})
    finally:
        server.stop(signal.SIGKILL)
    time.sleep(max(0.0, when.timestamp() - time.time() + 1))
    server = NimbusServer(data, port=server.port).start()
    try:
        logs = server.client("logs")
        (rec,) = wait_for(lambda: records(logs, name), 30, "the missed tick")
        event = rec["event"]  # no Input: Scheduler's default notification, detail the string "{}"
        assert event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"
        assert event["detail"] == "{}" and event["time"] == when.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert event["resources"] == ["arn:aws:scheduler:us-east-1:000000000000:schedule/default/missed"]
        time.sleep(1.5)
        assert len(records(logs, name)) == 1
    finally:
        server.stop()


def test_failed_delivery_goes_to_dead_letter_queue(srv: NimbusServer) -> None:
    sch, sqs = srv.client("scheduler"), srv.client("sqs")
    dlq_url = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    missing = "arn:aws:lambda:us-east-1:000000000000:function:does-not-exist"
    expression, _when = _at(1)
    sch.create_schedule(Name=f"dl-{uuid.uuid4().hex[:6]}", ScheduleExpression=expression,
                        FlexibleTimeWindow={"Mode": "OFF"},
                        Target={"Arn": missing, "RoleArn": SCHED_ROLE, "Input": '{"k": "v"}',
                                "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
                                "DeadLetterConfig": {"Arn": dlq_arn}})

    def received() -> list[dict[str, Any]]:
        return sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1,
                                   MessageAttributeNames=["All"]).get("Messages", [])

    (msg,) = wait_for(received, 30, "the dead-lettered tick")
    assert json.loads(msg["Body"]) == {"k": "v"}
    assert msg["MessageAttributes"]["TARGET_ARN"]["StringValue"] == missing
    assert msg["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "ResourceNotFoundException"


def test_cron_example_with_the_aws_cli(srv: NimbusServer) -> None:
    env = {**os.environ, **srv.cli_env()}
    base = [sys.executable, "-m", "awscli", "--endpoint-url", srv.endpoint, "--output", "json", "scheduler"]
    out = subprocess.run([*base, "create-schedule", "--name", "weekday-report",
                          "--schedule-expression", "cron(30 8 ? * MON-FRI *)",
                          "--schedule-expression-timezone", "America/New_York",
                          "--flexible-time-window", "Mode=OFF",
                          "--target", json.dumps({"Arn": "arn:aws:lambda:us-east-1:000000000000:function:report",
                                                  "RoleArn": SCHED_ROLE})],
                         env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["ScheduleArn"].endswith(":schedule/default/weekday-report")
    out = subprocess.run([*base, "get-schedule", "--name", "weekday-report"], env=env, capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout)["ScheduleExpression"] == "cron(30 8 ? * MON-FRI *)"
    with srv.http() as http:
        rows = http.get("/nimbus/v1/schedules").json()["Schedules"]
    (row,) = [r for r in rows if r["Name"] == "weekday-report"]
    fire = datetime.fromtimestamp(row["NextFireTime"], UTC).astimezone(__import__("zoneinfo").ZoneInfo(
        "America/New_York"))
    assert (fire.hour, fire.minute) == (8, 30) and fire.weekday() < 5
    shown = subprocess.run([sys.executable, "-m", "nimbus", "schedules"], env={**env, "COLUMNS": "200"},
                           capture_output=True, text=True, check=True).stdout
    assert "weekday-report" in shown and "cron(30 8 ? * MON-FRI *)" in shown and "America/New_York" in shown
    assert datetime.fromtimestamp(row["NextFireTime"], UTC).strftime("%Y-%m-%d %H:%M:%SZ") in shown
    subprocess.run([*base, "delete-schedule", "--name", "weekday-report"], env=env, check=True, capture_output=True)
