"""The async invocation pipeline end to end with boto3: durable acceptance, retries with AWS's semantics
(delays shortened by settings), event age, destinations with AWS's invocation record, reserved concurrency
0 and N, fairness between functions, and crash recovery (kill -9 with events in flight, nothing lost)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nimbus.cli.asyncqueue import format_age
from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

pytestmark = pytest.mark.e2e

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
FAST = {
    "NIMBUS_ASYNC_RETRY_DELAYS": "1,3",
    "NIMBUS_ASYNC_EVENT_AGE_MIN": "1",
    "NIMBUS_ASYNC_POLL_INTERVAL": "0.2",
    "NIMBUS_ASYNC_THROTTLE_BACKOFF_MIN": "0.2",
    "NIMBUS_ASYNC_MAX_CONCURRENCY": "4",
}

RECORDER = """
import json
def handler(event, context):
    print("RECORD " + json.dumps(event))
    return None
"""

FAILER = """
def handler(event, context):
    print("ATTEMPT " + context.aws_request_id)
    raise Exception("boom")
"""

ECHO = """
def handler(event, context):
    return {"ok": True, "echo": event}
"""

SIZER = """
def handler(event, context):
    print("SIZE %s %d" % (context.aws_request_id, len(event["x"])))
"""

SLEEPER = """
import time
def handler(event, context):
    start = time.time()
    time.sleep(event.get("sleep", 0.2))
    print("SPAN %s %.6f %.6f" % (context.aws_request_id, start, time.time()))
    return None
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusServer]:
    server = NimbusServer(tmp_path_factory.mktemp("async") / "data", env=FAST).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lam(srv: NimbusServer) -> Any:
    return srv.client("lambda")


@pytest.fixture(scope="module")
def logs(srv: NimbusServer) -> Any:
    return srv.client("logs")


def deploy(lam: Any, code: str, prefix: str = "async", **config: Any) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": code})}, Timeout=10, **config)
    return name


def event(lam: Any, name: str, payload: Any, **kw: Any) -> str:
    out = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(payload), **kw)
    assert out["StatusCode"] == 202
    rid: str = out["ResponseMetadata"]["RequestId"]
    return rid


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


def records(logs: Any, recorder: str, count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]] | None:
        got = [json.loads(m.split("RECORD ", 1)[1]) for m in messages(logs, recorder) if "RECORD " in m]
        return got if len(got) >= count else None

    result: list[dict[str, Any]] = wait_for(found, timeout, f"{count} record(s) at {recorder}")
    return result


def api(srv: NimbusServer, method: str, path: str, **kw: Any) -> Any:
    with srv.http() as http:
        return http.request(method, path, **kw)


def queue_depth(srv: NimbusServer, name: str) -> int:
    depth: int = api(srv, "GET", f"/nimbus/v1/functions/{name}/async-queue").json()["Depth"]
    return depth


def starts(logs: Any, name: str, rid: str) -> int:
    return sum(m.startswith(f"START RequestId: {rid} ") for m in messages(logs, name))


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def check_record_shape(record: dict[str, Any], *, rid: str, fn: str, condition: str, count: int,
                       request: Any) -> None:
    assert record["version"] == "1.0"
    assert TIMESTAMP.match(record["timestamp"]), record["timestamp"]
    assert record["requestContext"] == {
        "requestId": rid, "functionArn": f"{ARN}{fn}:$LATEST", "condition": condition, "approximateInvokeCount": count,
    }
    assert record["requestPayload"] == request


# ------------------------------------------------------------------------------------------- tests


def test_event_is_delivered_once_with_its_request_id(lam: Any, logs: Any, srv: NimbusServer) -> None:
    name = deploy(lam, ECHO)
    rid = event(lam, name, {"n": 1})
    wait_for(lambda: any(m.startswith(f"REPORT RequestId: {rid}") for m in messages(logs, name)), what="delivery")
    wait_for(lambda: queue_depth(srv, name) == 0, what="an empty queue")
    figures = api(srv, "GET", f"/nimbus/v1/functions/{name}/async-queue").json()
    assert figures["FunctionName"] == name and figures["OldestEventAgeMs"] is None
    assert starts(logs, name, rid) == 1


def test_payload_over_the_async_limit_is_413(lam: Any, srv: NimbusServer) -> None:
    name = deploy(lam, ECHO)
    body = json.dumps({"x": "a" * 1_048_576})
    r = api(srv, "POST", f"/2015-03-31/functions/{name}/invocations", content=body,
            headers={"X-Amz-Invocation-Type": "Event"})
    assert r.status_code == 413
    assert r.headers["x-amzn-ErrorType"] == "RequestTooLargeException"
    assert r.json()["Message"] == "Request must be smaller than 1048576 bytes for the InvokeFunction operation"
    r = api(srv, "POST", f"/2014-11-13/functions/{name}/invoke-async/", content=body)
    assert r.status_code == 413
    assert r.json()["Message"] == "Request must be smaller than 1048576 bytes for the InvokeAsync operation"


def test_a_900_kb_event_is_accepted_and_delivered(lam: Any, logs: Any) -> None:
    """AWS accepts Event payloads up to 1 MB since October 2025 (256 KB before)."""
    name = deploy(lam, SIZER)
    rid = event(lam, name, {"x": "a" * 900_000})
    wait_for(lambda: any(m.startswith(f"SIZE {rid} 900000") for m in messages(logs, name)), what="delivery")


def test_unknown_function_is_404_not_202(lam: Any) -> None:
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=f"missing-{uuid.uuid4().hex[:8]}", InvocationType="Event", Payload=b"{}")


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_function_errors_are_retried_then_sent_to_on_failure(lam: Any, logs: Any, retries: int) -> None:
    recorder = deploy(lam, RECORDER, "rec")
    name = deploy(lam, FAILER)
    lam.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=retries,
        DestinationConfig={"OnFailure": {"Destination": f"{ARN}{recorder}"}},
    )
    payload = {"order": 7, "retries": retries}
    rid = event(lam, name, payload)
    (record,) = records(logs, recorder)
    check_record_shape(record, rid=rid, fn=name, condition="RetriesExhausted", count=retries + 1, request=payload)
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorMessage"] == "boom"
    assert record["responsePayload"]["errorType"] == "Exception"
    assert set(record) == {"version", "timestamp", "requestContext", "requestPayload", "responseContext",
                           "responsePayload"}
    # Every attempt ran with the same request id.
    assert starts(logs, name, rid) == retries + 1
    assert sum(m.startswith(f"ATTEMPT {rid}") for m in messages(logs, name)) == retries + 1


def test_on_success_destination_gets_the_record(lam: Any, logs: Any) -> None:
    recorder = deploy(lam, RECORDER, "rec")
    name = deploy(lam, ECHO)
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": f"{ARN}{recorder}"}}
    )
    payload = {"hello": "world"}
    rid = event(lam, name, payload)
    (record,) = records(logs, recorder)
    check_record_shape(record, rid=rid, fn=name, condition="Success", count=1, request=payload)
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"ok": True, "echo": payload}


def test_version_invocation_record_names_the_executed_version(lam: Any, logs: Any) -> None:
    recorder = deploy(lam, RECORDER, "rec")
    name = deploy(lam, ECHO)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    lam.put_function_event_invoke_config(
        FunctionName=name, Qualifier="live", DestinationConfig={"OnSuccess": {"Destination": f"{ARN}{recorder}"}}
    )
    rid = event(lam, name, {"v": 1}, Qualifier="live")
    (record,) = records(logs, recorder)
    assert record["requestContext"]["requestId"] == rid
    assert record["requestContext"]["functionArn"] == f"{ARN}{name}:{version}"
    assert record["responseContext"]["executedVersion"] == version


def test_event_age_expiry_sends_event_age_exceeded(lam: Any, logs: Any, srv: NimbusServer) -> None:
    recorder = deploy(lam, RECORDER, "rec")
    name = deploy(lam, FAILER)
    lam.invoke(FunctionName=name, Payload=b"{}")  # warm: the first attempt starts well inside the age
    # 2 s is below AWS's 60 s minimum: this server allows it (NIMBUS_ASYNC_EVENT_AGE_MIN=1); boto3 checks the
    # minimum itself, so the raw API is used.
    r = api(srv, "PUT", f"/2019-09-25/functions/{name}/event-invoke-config", json={
        "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 2,
        "DestinationConfig": {"OnFailure": {"Destination": f"{ARN}{recorder}"}},
    })
    assert r.status_code == 200, r.text
    rid = event(lam, name, {"age": True})
    (record,) = records(logs, recorder)
    # Retry delays are 1 s then 3 s: the second retry would start after the event's 2 s are up.
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["requestId"] == rid
    assert 1 <= record["requestContext"]["approximateInvokeCount"] <= 2
    assert record["responseContext"]["functionError"] == "Unhandled"


def test_reserved_concurrency_zero_goes_straight_to_on_failure(lam: Any, logs: Any) -> None:
    recorder = deploy(lam, RECORDER, "rec")
    name = deploy(lam, ECHO)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": f"{ARN}{recorder}"}}
    )
    payload = {"throttled": True}
    rid = event(lam, name, payload)
    (record,) = records(logs, recorder)
    check_record_shape(record, rid=rid, fn=name, condition="ZeroReservedConcurrency", count=0, request=payload)
    assert "responseContext" not in record and "responsePayload" not in record
    assert starts(logs, name, rid) == 0


def spans(logs: Any, name: str) -> list[tuple[float, float]]:
    out = []
    for m in messages(logs, name):
        if m.startswith("SPAN "):
            _, _, start, end = m.split()
            out.append((float(start), float(end)))
    return out


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = level = 0
    for _, step in points:
        level += step
        best = max(best, level)
    return best


def test_reserved_concurrency_caps_async_deliveries(lam: Any, logs: Any) -> None:
    name = deploy(lam, SLEEPER)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    for _ in range(8):
        event(lam, name, {"sleep": 0.3})
    intervals = wait_for(lambda: s if len(s := spans(logs, name)) >= 8 else None, what="8 deliveries")
    assert len(intervals) == 8
    assert max_overlap(intervals) <= 2


def test_a_backlog_does_not_starve_another_function(lam: Any, logs: Any, srv: NimbusServer) -> None:
    busy = deploy(lam, SLEEPER, "busy")
    quiet = deploy(lam, SLEEPER, "quiet")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: event(lam, busy, {"sleep": 0.25}), range(40)))
    for _ in range(3):
        event(lam, quiet, {"sleep": 0.01})
    wait_for(lambda: len(spans(logs, quiet)) >= 3, what="the quiet function's events")
    # 40 events of 0.25 s with at most 4 deliveries at once take >= 2.5 s: the quiet function was served
    # while the busy one still had a backlog.
    assert queue_depth(srv, busy) > 0


def test_config_api_round_trip(lam: Any) -> None:
    recorder = deploy(lam, RECORDER, "rec")
    name = deploy(lam, ECHO)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="prod", FunctionVersion=version)
    put = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1,
                                               MaximumEventAgeInSeconds=3600)
    assert put["FunctionArn"] == f"{ARN}{name}:$LATEST"
    assert put["MaximumRetryAttempts"] == 1 and put["MaximumEventAgeInSeconds"] == 3600
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    assert put["LastModified"].year >= 2024
    got = lam.get_function_event_invoke_config(FunctionName=name)
    assert {k: got[k] for k in ("FunctionArn", "MaximumRetryAttempts", "MaximumEventAgeInSeconds")} == {
        "FunctionArn": f"{ARN}{name}:$LATEST", "MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 3600}
    # Update changes only what it names.
    upd = lam.update_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": f"{ARN}{recorder}"}})
    assert upd["MaximumRetryAttempts"] == 1
    assert upd["DestinationConfig"]["OnFailure"] == {"Destination": f"{ARN}{recorder}"}
    # Put replaces everything.
    again = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    assert "MaximumEventAgeInSeconds" not in again and again["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    lam.put_function_event_invoke_config(FunctionName=f"{name}:prod", MaximumRetryAttempts=2)
    lam.put_function_event_invoke_config(FunctionName=name, Qualifier=version, MaximumEventAgeInSeconds=60)
    listed = lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert [c["FunctionArn"] for c in listed] == [f"{ARN}{name}:$LATEST", f"{ARN}{name}:{version}",
                                                  f"{ARN}{name}:prod"]
    page = lam.list_function_event_invoke_configs(FunctionName=name, MaxItems=2)
    assert len(page["FunctionEventInvokeConfigs"]) == 2 and page["NextMarker"]
    rest = lam.list_function_event_invoke_configs(FunctionName=name, Marker=page["NextMarker"])
    assert [c["FunctionArn"] for c in rest["FunctionEventInvokeConfigs"]] == [f"{ARN}{name}:prod"]
    lam.delete_function_event_invoke_config(FunctionName=name, Qualifier="prod")
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as err:
        lam.get_function_event_invoke_config(FunctionName=name, Qualifier="prod")
    assert err.value.response["Error"]["Message"] == (
        f"The function {ARN}{name}:prod doesn't have an EventInvokeConfig")
    # Deleting the function deletes its configs.
    lam.delete_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.list_function_event_invoke_configs(FunctionName=name)


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"MaximumRetryAttempts": 3}, "ValidationException",
         "1 validation error detected: Value '3' at 'maximumRetryAttempts' failed to satisfy constraint: "
         "Member must have value less than or equal to 2"),
        ({"MaximumEventAgeInSeconds": 21601}, "ValidationException",
         "1 validation error detected: Value '21601' at 'maximumEventAgeInSeconds' failed to satisfy constraint: "
         "Member must have value less than or equal to 21600"),
        ({}, "InvalidParameterValueException",
         "You must specify at least one of error handling or destination setting."),
        ({"DestinationConfig": {"OnFailure": {"Destination": "SELF"}}}, "InvalidParameterValueException",
         "You can't specify the function as a destination for itself."),
        ({"DestinationConfig": {"OnSuccess": {"Destination": f"{ARN}does-not-exist"}}},
         "InvalidParameterValueException", f"The destination ARN {ARN}does-not-exist is invalid."),
        ({"DestinationConfig": {"OnSuccess": {"Destination": "not-an-arn"}}}, "ValidationException", None),
        ({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:q.fifo"}}},
         "InvalidParameterValueException", None),
    ],
)
def test_config_validation_errors(lam: Any, kwargs: dict[str, Any], code: str, message: str | None) -> None:
    name = deploy(lam, ECHO)
    text = json.dumps(kwargs).replace("SELF", f"{ARN}{name}")
    with pytest.raises(ClientError) as err:
        lam.put_function_event_invoke_config(FunctionName=name, **json.loads(text))
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    if message is not None:
        assert err.value.response["Error"]["Message"] == message


def test_config_errors_for_missing_things(lam: Any, srv: NimbusServer) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_event_invoke_config(FunctionName=missing, MaximumRetryAttempts=1)
    name = deploy(lam, ECHO)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_event_invoke_config(FunctionName=name, Qualifier="nope", MaximumRetryAttempts=1)
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as err:
        lam.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    assert "doesn't have an EventInvokeConfig" in err.value.response["Error"]["Message"]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function_event_invoke_config(FunctionName=name)
    # Below AWS's 60 s minimum (the raw API: boto3 refuses it client-side) is refused by default settings:
    # this module's server lowered the minimum to 1 s, so 0 is the out-of-range value here.
    r = api(srv, "PUT", f"/2019-09-25/functions/{name}/event-invoke-config", json={"MaximumEventAgeInSeconds": 0})
    assert r.status_code == 400 and r.headers["x-amzn-ErrorType"] == "ValidationException"


def request_ids_in_logs(logs: Any, name: str) -> list[str]:
    return [m.split()[1] for m in messages(logs, name) if m.startswith("DONE ")]


def test_kill_9_with_events_in_flight_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = NimbusServer(data, env={**FAST, "NIMBUS_ASYNC_MAX_CONCURRENCY": "4"}).start()
    try:
        lam = server.client("lambda")
        name = deploy(lam, "import time\ndef handler(event, context):\n    time.sleep(0.05)\n"
                           "    print('DONE ' + context.aws_request_id)\n")
        with ThreadPoolExecutor(8) as pool:
            accepted = list(pool.map(lambda i: event(lam, name, {"i": i}), range(100)))
        assert len(set(accepted)) == 100
    finally:
        server.stop(signal.SIGKILL)
    restarted = NimbusServer(data, env=FAST).start()
    try:
        wait_for(lambda: queue_depth(restarted, name) == 0, timeout=120, what="the queue to drain after the restart")
        logs = restarted.client("logs")
        delivered = request_ids_in_logs(logs, name)
        assert set(accepted) <= set(delivered), f"lost: {sorted(set(accepted) - set(delivered))[:5]}"
    finally:
        restarted.stop()


def test_nimbus_functions_shows_queue_depth_and_oldest_age(lam: Any, srv: NimbusServer) -> None:
    name = deploy(lam, SLEEPER)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    for _ in range(3):
        event(lam, name, {"sleep": 2})
    out = subprocess.run([sys.executable, "-m", "nimbus", "functions"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **srv.cli_env(), "COLUMNS": "250"})
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split()[-3:] == ["Queued", "Oldest", "event"]
    (row,) = [r for r in rows if r.startswith(name + " ")]
    queued, age = row.split()[-3], " ".join(row.split()[-2:])
    assert int(queued) >= 2  # one runs (2 s), the others wait: reserved concurrency 1
    assert re.fullmatch(r"\d+ ms|\d+\.\d s", age), age


def test_format_age() -> None:
    assert [format_age(v) for v in (None, 850, 12_345, 240_000, 9_000_000)] == ["-", "850 ms", "12.3 s", "4 min",
                                                                               "2.5 h"]


def test_legacy_invoke_async_goes_through_the_queue(lam: Any, logs: Any) -> None:
    name = deploy(lam, RECORDER)
    out = lam.invoke_async(FunctionName=name, InvokeArgs=json.dumps({"legacy": True}))
    assert out["Status"] == 202
    wait_for(lambda: any('"legacy": true' in m for m in messages(logs, name)), what="the legacy event")


def test_a_timeout_is_a_function_error_and_is_retried(lam: Any, logs: Any) -> None:
    recorder = deploy(lam, RECORDER, "rec")
    name = f"async-slow-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler", Timeout=1,
                        Code={"ZipFile": make_zip({"app.py": "import time\ndef handler(e, c):\n    time.sleep(5)\n"})})
    lam.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=1, DestinationConfig={"OnFailure": {"Destination": f"{ARN}{recorder}"}}
    )
    rid = event(lam, name, {"slow": True})
    (record,) = records(logs, recorder)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert sum(f"{rid} Task timed out after 1.00 seconds" in m for m in messages(logs, name)) == 2
